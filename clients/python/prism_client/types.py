"""Results of SDK calls: plain dataclasses with Python values (bytes for
values and payloads, int for versions, offsets and 64-bit counters)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass(frozen=True)
class KvItem:
    """A stored value with its version (the version grows on every write of the key)."""
    value: bytes
    version: int


@dataclass(frozen=True)
class ScanItem:
    """One scanned key; `value` is b"" in a keys-only scan."""
    key: str
    value: bytes
    version: int


@dataclass(frozen=True)
class ScanPage:
    """One page of KeyValue.scan_page; `next_cursor` is "" when the scan is complete."""
    items: List[ScanItem]
    next_cursor: str


@dataclass(frozen=True)
class Ttl:
    """KeyValue.ttl: `ttl_ms` is None when the key has no TTL, or is absent (`found` False)."""
    found: bool
    ttl_ms: Optional[int]


@dataclass(frozen=True)
class PubSubMessage:
    topic: str
    payload: bytes
    attributes: Dict[str, str]
    message_id: str
    publish_time_ms: int


@dataclass(frozen=True)
class QueueMessage:
    """A message leased to this consumer: ack, nack or extend it with `receipt`."""
    message_id: str
    payload: bytes
    attributes: Dict[str, str]
    receipt: str
    delivery_count: int
    enqueued_at_ms: int


@dataclass(frozen=True)
class StreamRecord:
    """One stream record; `delivery_count` is set on records from read_group (0 from read)."""
    offset: int
    payload: bytes
    attributes: Dict[str, str]
    timestamp_ms: int
    delivery_count: int = 0


@dataclass(frozen=True)
class ReadResult:
    """Stream.read: pass `next_offset` as `from_offset` to continue."""
    records: List[StreamRecord]
    next_offset: int


@dataclass(frozen=True)
class RegistryMember:
    identity: str
    metadata: Dict[str, str]
    expires_at_ms: int  # 0: no expiry


@dataclass(frozen=True)
class RegisterResult:
    created: bool  # False: an existing member was refreshed
    expires_at_ms: int


@dataclass(frozen=True)
class EnumeratePage:
    members: List[RegistryMember]
    next_cursor: str  # "": no more


@dataclass(frozen=True)
class MulticastResult:
    total: int
    delivered: int
    failed: int
    failed_identities: List[str]


@dataclass(frozen=True)
class SlotInfo:
    slot: str
    instance: str  # "" for an inline backend
    backend_type: str
    interfaces: List[str]
    auto: bool  # chosen by the namespace's needs


@dataclass(frozen=True)
class NamespaceInfo:
    name: str
    primitives: List[str]
    backend_type: str
    interfaces: List[str]
    config_json: str  # effective config, secrets redacted
    pattern: str  # "" for plain primitives
    slots: List[SlotInfo]
    revision: int
    explanation: List[str]


@dataclass(frozen=True)
class ApplyNamespaceResult:
    namespace: NamespaceInfo
    created: bool  # False: an existing namespace was replaced
    revision: int
    applied: bool  # False: dry run


@dataclass(frozen=True)
class BackendInstanceInfo:
    name: str
    type: str
    options_json: str  # secrets redacted
    namespaces: List[str]
    revision: int


@dataclass(frozen=True)
class ApplyBackendResult:
    backend: BackendInstanceInfo
    created: bool
    revision: int
    applied: bool
    namespaces: List[str]  # re-applied on the new definition


@dataclass(frozen=True)
class PatternSlot:
    name: str
    description: str
    requires: List[str]
    optional: List[str]
    recommended: List[str]


@dataclass(frozen=True)
class PatternInfo:
    name: str
    description: str
    slots: List[PatternSlot]
    serves: List[str]


@dataclass(frozen=True)
class BackendInfo:
    type: str
    interfaces: List[str]
    description: str


@dataclass(frozen=True)
class BackendHealth:
    namespace: str
    backend_type: str
    ok: bool
    latency_ms: float
    message: str
    circuit: str
    slot: str
    instance: str


@dataclass(frozen=True)
class Health:
    status: str  # "SERVING" or "DEGRADED"
    backends: List[BackendHealth]
    version: str
    workers: int
    worker_index: int


@dataclass(frozen=True)
class OutboxMessage:
    """What a KeyValue write in an outbox namespace sends (`topic`: the queue name when it delivers to a queue)."""
    topic: str
    payload: Any  # bytes or str
    attributes: Dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    """A stored Claim Check payload: `sha256` is the hex digest of all its bytes;
    `expires_at_ms` 0: it lives as long as what holds the claim (a key)."""
    id: str
    size: int
    sha256: str
    content_type: str
    created_at_ms: int
    expires_at_ms: int


@dataclass(frozen=True)
class PutResult:
    """ClaimCheck.put_stream: the claim, and where it went: the key's `version`, the
    queue or pubsub `message_id`, or the stream `offset` (None for the others)."""
    claim: Claim
    version: Optional[int] = None
    message_id: Optional[str] = None
    offset: Optional[int] = None
