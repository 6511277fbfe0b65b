"""The namespaced facades, shared by the sync and the asyncio client.

Each method builds the request and names the converter of the response; the
transport runs the call. With PrismClient a method returns its result, with
AsyncPrismClient it returns an awaitable of the same result (iterators are
plain iterators resp. async iterators)."""
from __future__ import annotations

from typing import Any, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import grpc

from . import _convert as c
from . import types as t
from ._proto import message
from .errors import make_error

Bytes = Union[bytes, bytearray, memoryview, str]
Timeout = Optional[float]

_M = message  # request classes by name


def _outbox(m: Union[t.OutboxMessage, Mapping[str, Any]]) -> Any:
    if isinstance(m, Mapping):
        m = t.OutboxMessage(m["topic"], m.get("payload", b""), dict(m.get("attributes") or {}))
    out = _M("OutboxMessage")(topic=m.topic, payload=c.to_bytes(m.payload, "message.payload"))
    c.set_attributes(out.attributes, m.attributes)
    return out


class _Facade:
    __slots__ = ("_t", "namespace")

    def __init__(self, transport: Any, namespace: str) -> None:
        self._t = transport
        self.namespace = namespace

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.namespace!r})"


class KeyValue(_Facade):
    """Key-value calls on one namespace."""

    def set(
        self,
        key: str,
        value: Bytes,
        *,
        ttl: Optional[int] = None,
        if_absent: bool = False,
        expected_version: Optional[int] = None,
        message: Union[t.OutboxMessage, Mapping[str, Any], None] = None,
        idempotency_key: Optional[str] = None,
        timeout: Timeout = None,
    ):
        """Writes `value` (str is stored as UTF-8) → the key's new version (int).

        ttl: seconds (default: the namespace's default TTL, none by default).
        if_absent / expected_version (0: must be absent): compare-and-set,
        FailedPrecondition when refused. message: outbox namespaces only.
        idempotency_key: a retry with the same key returns the first result."""
        req = _M("SetRequest")(namespace=self.namespace, key=key, value=c.to_bytes(value), if_absent=if_absent)
        if ttl is not None:
            req.ttl_seconds = ttl
        if expected_version is not None:
            req.expected_version = expected_version
        if message is not None:
            req.message.CopyFrom(_outbox(message))
        if idempotency_key:
            req.idempotency_key = idempotency_key
        return self._t.unary("KeyValue/Set", req, lambda r: r.version, timeout)

    def get(self, key: str, *, timeout: Timeout = None):
        """The value (bytes), or None when the key is absent (b"" is a real empty value)."""
        req = _M("GetRequest")(namespace=self.namespace, key=key)
        return self._t.unary("KeyValue/Get", req, lambda r: bytes(r.value) if r.found else None, timeout)

    def get_item(self, key: str, *, timeout: Timeout = None):
        """The value and its version (KvItem), or None when the key is absent."""
        req = _M("GetRequest")(namespace=self.namespace, key=key)
        return self._t.unary("KeyValue/Get", req, lambda r: t.KvItem(bytes(r.value), r.version) if r.found else None, timeout)

    def delete(
        self,
        key: str,
        *,
        message: Union[t.OutboxMessage, Mapping[str, Any], None] = None,
        idempotency_key: Optional[str] = None,
        timeout: Timeout = None,
    ):
        """Deletes the key → False when it was absent."""
        req = _M("DeleteRequest")(namespace=self.namespace, key=key)
        if message is not None:
            req.message.CopyFrom(_outbox(message))
        if idempotency_key:
            req.idempotency_key = idempotency_key
        return self._t.unary("KeyValue/Delete", req, lambda r: r.deleted, timeout)

    def exists(self, key: str, *, timeout: Timeout = None):
        req = _M("ExistsRequest")(namespace=self.namespace, key=key)
        return self._t.unary("KeyValue/Exists", req, lambda r: r.exists, timeout)

    def batch_get(self, keys: Sequence[str], *, timeout: Timeout = None):
        """Values in the order of `keys`; None for absent keys."""
        req = _M("BatchGetRequest")(namespace=self.namespace, keys=list(keys))
        return self._t.unary("KeyValue/BatchGet", req, lambda r: [bytes(i.value) if i.found else None for i in r.items], timeout)

    def batch_set(
        self,
        entries: Union[Mapping[str, Bytes], Iterable[Tuple[str, Bytes]]],
        *,
        ttl: Optional[int] = None,
        timeout: Timeout = None,
    ):
        """Writes all entries (a dict or (key, value) pairs) → their new versions, in order."""
        pairs = entries.items() if isinstance(entries, Mapping) else entries
        req = _M("BatchSetRequest")(namespace=self.namespace)
        for k, v in pairs:
            req.entries.add(key=k, value=c.to_bytes(v))
        if ttl is not None:
            req.ttl_seconds = ttl
        return self._t.unary("KeyValue/BatchSet", req, lambda r: list(r.versions), timeout)

    def batch_delete(self, keys: Sequence[str], *, timeout: Timeout = None):
        """Deletes the keys → how many existed."""
        req = _M("BatchDeleteRequest")(namespace=self.namespace, keys=list(keys))
        return self._t.unary("KeyValue/BatchDelete", req, lambda r: r.deleted, timeout)

    def scan_page(self, prefix: str = "", *, cursor: str = "", limit: int = 0, keys_only: bool = False, timeout: Timeout = None):
        """One page (ScanPage) of keys in lexicographic order; pass `next_cursor` back as `cursor`."""
        req = _M("ScanRequest")(namespace=self.namespace, prefix=prefix, cursor=cursor, limit=limit, keys_only=keys_only)
        return self._t.unary(
            "KeyValue/Scan",
            req,
            lambda r: t.ScanPage([t.ScanItem(i.key, bytes(i.value), i.version) for i in r.items], r.next_cursor),
            timeout,
        )

    def scan(self, prefix: str = "", *, limit: int = 0, keys_only: bool = False, timeout: Timeout = None):
        """Every key with `prefix` (ScanItem), page by page (`limit`: page size); complete and
        without duplicates even while keys are written. An iterator (async iterator in the async client)."""
        return self._t.paginate(lambda cursor: self.scan_page(prefix, cursor=cursor, limit=limit, keys_only=keys_only, timeout=timeout))

    def expire(self, key: str, ttl_seconds: int, *, timeout: Timeout = None):
        """Sets the key's TTL (seconds, > 0) → False when the key is absent."""
        req = _M("ExpireRequest")(namespace=self.namespace, key=key, ttl_seconds=ttl_seconds)
        return self._t.unary("KeyValue/Expire", req, lambda r: r.found, timeout)

    def ttl(self, key: str, *, timeout: Timeout = None):
        """Remaining time to live (Ttl): ttl_ms None when the key has none or is absent."""
        req = _M("GetTtlRequest")(namespace=self.namespace, key=key)
        return self._t.unary("KeyValue/GetTtl", req, lambda r: t.Ttl(r.found, r.ttl_ms if r.found and r.has_ttl else None), timeout)

    def persist(self, key: str, *, timeout: Timeout = None):
        """Removes the key's TTL → False when the key is absent."""
        req = _M("PersistRequest")(namespace=self.namespace, key=key)
        return self._t.unary("KeyValue/Persist", req, lambda r: r.found, timeout)


class PubSub(_Facade):
    """Publish/subscribe on one namespace."""

    def publish(
        self,
        topic: str,
        data: Bytes,
        attributes: Optional[Mapping[str, str]] = None,
        *,
        idempotency_key: Optional[str] = None,
        timeout: Timeout = None,
    ):
        """Publishes to `topic` (dot-separated tokens) → the message id."""
        req = _M("PublishRequest")(namespace=self.namespace, topic=topic, payload=c.to_bytes(data, "data"))
        c.set_attributes(req.attributes, attributes)
        if idempotency_key:
            req.idempotency_key = idempotency_key
        return self._t.unary("PubSub/Publish", req, lambda r: r.message_id, timeout)

    def subscribe(self, pattern: str):
        """Messages (PubSubMessage) on topics matching `pattern` (`*` one token, trailing `>` the rest).

        Sync client: returns once the subscription is live, an iterator.
        Async client: an async iterator; `await` it to wait until it is live."""
        req = _M("SubscribeRequest")(namespace=self.namespace, pattern=pattern)
        return self._t.subscribe("PubSub/Subscribe", req, c.pubsub_message)


_STATUS_BY_NUMBER = {s.value[0]: s for s in grpc.StatusCode}


def _entry_results(n: int, errors, value) -> list:
    """A batch call's answer → one result per entry: value(i), or the entry's PrismError."""
    out = [value(i) for i in range(n)]
    for e in errors:
        if e.index < n:
            out[e.index] = make_error(_STATUS_BY_NUMBER.get(e.code, grpc.StatusCode.UNKNOWN), e.reason, e.message)
    return out


class Queue(_Facade):
    """Work queues on one namespace."""

    def enqueue(
        self,
        queue: str,
        data: Bytes,
        *,
        attributes: Optional[Mapping[str, str]] = None,
        delay_seconds: int = 0,
        idempotency_key: Optional[str] = None,
        timeout: Timeout = None,
    ):
        """Enqueues → the message id. delay_seconds keeps it invisible that long."""
        req = _M("EnqueueRequest")(namespace=self.namespace, queue=queue, payload=c.to_bytes(data, "data"), delay_seconds=delay_seconds)
        c.set_attributes(req.attributes, attributes)
        if idempotency_key:
            req.idempotency_key = idempotency_key
        return self._t.unary("Queue/Enqueue", req, lambda r: r.message_id, timeout)

    def dequeue(
        self,
        queue: str,
        *,
        max_messages: int = 0,
        visibility_timeout: int = 0,
        wait: int = 0,
        timeout: Timeout = None,
    ):
        """Leases up to `max_messages` (0: 1) for `visibility_timeout` seconds (0: the namespace's);
        `wait` long-polls up to that many seconds (the client's default timeout is extended by it)."""
        req = _M("DequeueRequest")(
            namespace=self.namespace, queue=queue, max_messages=max_messages, visibility_timeout_seconds=visibility_timeout, wait_seconds=wait
        )
        return self._t.unary("Queue/Dequeue", req, lambda r: [c.queue_message(m) for m in r.messages], timeout, float(wait))

    def ack(self, queue: str, receipt: str, *, timeout: Timeout = None):
        """Removes a leased message. A stale receipt (redelivered, acked) → FailedPrecondition."""
        req = _M("AckRequest")(namespace=self.namespace, queue=queue, receipt=receipt)
        return self._t.unary("Queue/Ack", req, lambda r: None, timeout)

    def enqueue_many(self, queue: str, entries: Sequence[Union[Bytes, Mapping[str, Any]]], *, timeout: Timeout = None):
        """Enqueues up to 1000 messages in one call (Queue/EnqueueBatch), in order. An entry is the
        data, or a mapping {"data", "attributes", "delay_seconds"}. → one result per entry: its message
        id, or the PrismError of that entry alone (e.g. InvalidArgument for an oversized payload).
        The call raises when every entry failed."""
        req = _M("EnqueueBatchRequest")(namespace=self.namespace, queue=queue)
        for i, e in enumerate(entries):
            spec = e if isinstance(e, Mapping) else {"data": e}
            entry = req.entries.add(payload=c.to_bytes(spec.get("data", b""), f"entries[{i}].data"), delay_seconds=int(spec.get("delay_seconds", 0)))
            c.set_attributes(entry.attributes, spec.get("attributes"))
        return self._t.unary("Queue/EnqueueBatch", req, lambda r: _entry_results(len(req.entries), r.errors, lambda i: r.message_ids[i]), timeout)

    def ack_many(self, queue: str, receipts: Sequence[str], *, timeout: Timeout = None):
        """Acks up to 1000 leased messages in one call (Queue/AckBatch). → one result per receipt:
        None, or the PrismError of that receipt alone (FailedPrecondition for a stale one)."""
        req = _M("AckBatchRequest")(namespace=self.namespace, queue=queue, receipts=list(receipts))
        return self._t.unary("Queue/AckBatch", req, lambda r: _entry_results(len(receipts), r.errors, lambda i: None), timeout)

    def nack(self, queue: str, receipt: str, *, requeue_after: int = 0, timeout: Timeout = None):
        """Returns a leased message, visible again after `requeue_after` seconds."""
        req = _M("NackRequest")(namespace=self.namespace, queue=queue, receipt=receipt, requeue_after_seconds=requeue_after)
        return self._t.unary("Queue/Nack", req, lambda r: None, timeout)

    def extend_visibility(self, queue: str, receipt: str, seconds: int, *, timeout: Timeout = None):
        """The lease now ends `seconds` from now."""
        req = _M("ExtendVisibilityRequest")(namespace=self.namespace, queue=queue, receipt=receipt, seconds=seconds)
        return self._t.unary("Queue/ExtendVisibility", req, lambda r: None, timeout)


class Stream(_Facade):
    """Append-only streams on one namespace."""

    def append(
        self,
        stream: str,
        data: Bytes,
        attributes: Optional[Mapping[str, str]] = None,
        *,
        idempotency_key: Optional[str] = None,
        timeout: Timeout = None,
    ):
        """Appends a record → its offset (increasing; the first is 1)."""
        req = _M("AppendRequest")(namespace=self.namespace, stream=stream, payload=c.to_bytes(data, "data"))
        c.set_attributes(req.attributes, attributes)
        if idempotency_key:
            req.idempotency_key = idempotency_key
        return self._t.unary("Stream/Append", req, lambda r: r.offset, timeout)

    def read(self, stream: str, *, from_offset: int = 0, limit: int = 0, timeout: Timeout = None):
        """Records with offset >= from_offset (0: the oldest retained) → ReadResult."""
        req = _M("ReadRequest")(namespace=self.namespace, stream=stream, from_offset=from_offset, limit=limit)
        return self._t.unary("Stream/Read", req, lambda r: t.ReadResult([c.stream_record(x) for x in r.records], r.next_offset), timeout)

    def read_group(
        self, stream: str, group: str, consumer: str, *, count: int = 0, block_ms: int = 0, timeout: Timeout = None
    ):
        """Consumer-group read: up to `count` records (0: 10) for `consumer`, each pending until ack;
        `block_ms` waits that long for records (the client's default timeout is extended by it)."""
        req = _M("ReadGroupRequest")(namespace=self.namespace, stream=stream, group=group, consumer=consumer, count=count, block_ms=block_ms)
        return self._t.unary("Stream/ReadGroup", req, lambda r: [c.stream_record(x) for x in r.records], timeout, block_ms / 1000)

    def ack(self, stream: str, group: str, offsets: Iterable[int], *, timeout: Timeout = None):
        """Acknowledges records of a group → how many were pending."""
        req = _M("AckGroupRequest")(namespace=self.namespace, stream=stream, group=group, offsets=list(offsets))
        return self._t.unary("Stream/AckGroup", req, lambda r: r.acked, timeout)


class MulticastRegistry(_Facade):
    """A `pattern: multicast-registry` namespace: members with metadata, multicast by filter."""

    def register(self, identity: str, metadata: Optional[Mapping[str, str]] = None, *, ttl: int = 0, timeout: Timeout = None):
        """Registers (or refreshes) `identity` → RegisterResult. ttl 0: no expiry."""
        req = _M("RegisterRequest")(namespace=self.namespace, identity=identity, ttl_seconds=ttl)
        c.set_attributes(req.metadata, metadata)
        return self._t.unary("MulticastRegistry/Register", req, lambda r: t.RegisterResult(r.created, r.expires_at_ms), timeout)

    def unregister(self, identity: str, *, timeout: Timeout = None):
        req = _M("UnregisterRequest")(namespace=self.namespace, identity=identity)
        return self._t.unary("MulticastRegistry/Unregister", req, lambda r: r.removed, timeout)

    def enumerate(self, filter: str = "", *, cursor: str = "", limit: int = 0, timeout: Timeout = None):
        """One page (EnumeratePage) of live members matching `filter` ("" all)."""
        req = _M("EnumerateRequest")(namespace=self.namespace, filter=filter, cursor=cursor, limit=limit)
        return self._t.unary(
            "MulticastRegistry/Enumerate",
            req,
            lambda r: t.EnumeratePage([t.RegistryMember(m.identity, dict(m.metadata), m.expires_at_ms) for m in r.members], r.next_cursor),
            timeout,
        )

    def multicast(self, filter: str, data: Bytes, attributes: Optional[Mapping[str, str]] = None, *, timeout: Timeout = None):
        """Sends `data` to every live member matching `filter` → MulticastResult."""
        req = _M("MulticastRequest")(namespace=self.namespace, filter=filter, payload=c.to_bytes(data, "data"))
        c.set_attributes(req.attributes, attributes)
        return self._t.unary(
            "MulticastRegistry/Multicast",
            req,
            lambda r: t.MulticastResult(r.total, r.delivered, r.failed, list(r.failed_identities)),
            timeout,
        )

    def subscribe(self, identity: str):
        """What is multicast to `identity` (which must be registered); like PubSub.subscribe."""
        req = _M("MemberSubscribeRequest")(namespace=self.namespace, identity=identity)
        return self._t.subscribe("MulticastRegistry/Subscribe", req, c.pubsub_message)


_MIGRATION_OPS = {
    "status": "MigrationStatus",
    "start": "StartMigration",
    "advance": "AdvanceMigration",
    "rollback": "RollbackMigration",
    "finish": "FinishMigration",
}


class Admin:
    """Control-plane calls: namespaces, backend instances, patterns, health, migrations."""

    __slots__ = ("_t",)

    def __init__(self, transport: Any) -> None:
        self._t = transport

    def list_namespaces(self, *, timeout: Timeout = None):
        """Every configured namespace (NamespaceInfo)."""
        return self._t.unary("Admin/ListNamespaces", _M("ListNamespacesRequest")(), lambda r: [c.namespace_info(n) for n in r.namespaces], timeout)

    def get_namespace(self, name: str, *, timeout: Timeout = None):
        """The namespace (NamespaceInfo); NotFound when it is not configured."""
        return self._t.unary("Admin/GetNamespace", _M("GetNamespaceRequest")(name=name), c.namespace_info, timeout)

    def apply_namespace(self, config: Union[str, Mapping[str, Any]], *, dry_run: bool = False, timeout: Timeout = None):
        """Validates, stores and applies one namespace without restart → ApplyNamespaceResult.

        config: a dict of the shape of a prism.yaml `namespaces:` entry, or its YAML/JSON text.
        dry_run: only the validation and the backend choice."""
        req = _M("ApplyNamespaceRequest")(dry_run=dry_run)
        if isinstance(config, str):
            req.config = config
        else:
            req.namespace.CopyFrom(c.to_struct(config))
        return self._t.unary(
            "Admin/ApplyNamespace",
            req,
            lambda r: t.ApplyNamespaceResult(c.namespace_info(r.namespace), r.created, r.revision, r.applied),
            timeout,
        )

    def delete_namespace(self, name: str, *, timeout: Timeout = None):
        """Removes the namespace → False when it did not exist."""
        return self._t.unary("Admin/DeleteNamespace", _M("DeleteNamespaceRequest")(name=name), lambda r: r.deleted, timeout)

    def apply_backend(self, name: str, backend: Mapping[str, Any], *, dry_run: bool = False, timeout: Timeout = None):
        """Declares or changes a named backend instance ({"type": "redis", "url": …}) → ApplyBackendResult."""
        req = _M("ApplyBackendRequest")(name=name, dry_run=dry_run)
        req.backend.CopyFrom(c.to_struct(backend))
        return self._t.unary(
            "Admin/ApplyBackend",
            req,
            lambda r: t.ApplyBackendResult(c.instance_info(r.backend), r.created, r.revision, r.applied, list(r.namespaces)),
            timeout,
        )

    def delete_backend(self, name: str, *, timeout: Timeout = None):
        """Removes a backend instance; FailedPrecondition while namespaces use it."""
        return self._t.unary("Admin/DeleteBackend", _M("DeleteBackendRequest")(name=name), lambda r: r.deleted, timeout)

    def list_backend_instances(self, *, timeout: Timeout = None):
        return self._t.unary(
            "Admin/ListBackendInstances", _M("ListBackendInstancesRequest")(), lambda r: [c.instance_info(b) for b in r.backends], timeout
        )

    def list_patterns(self, *, timeout: Timeout = None):
        return self._t.unary("Admin/ListPatterns", _M("ListPatternsRequest")(), lambda r: [c.pattern_info(p) for p in r.patterns], timeout)

    def list_backends(self, *, timeout: Timeout = None):
        """Backend types (drivers) and their interface claims (BackendInfo)."""
        return self._t.unary(
            "Admin/ListBackends",
            _M("ListBackendsRequest")(),
            lambda r: [t.BackendInfo(b.type, list(b.interfaces), b.description) for b in r.backends],
            timeout,
        )

    def health(self, *, timeout: Timeout = None):
        """Health of the gateway and of each namespace's backend."""
        return self._t.unary("Admin/Health", _M("HealthRequest")(), c.health, timeout)

    def migration(self, namespace: str, op: str = "status", reason: str = "", *, timeout: Timeout = None):
        """A namespace's migration: op "status", "start", "advance", "rollback" or "finish" →
        the MigrationInfo fields as a dict."""
        if op not in _MIGRATION_OPS:
            raise ValueError(f"op must be one of {', '.join(_MIGRATION_OPS)}, not {op!r}")
        req = _M("MigrationRequest")(namespace=namespace, reason=reason)
        return self._t.unary(f"Admin/{_MIGRATION_OPS[op]}", req, c.plain, timeout)


def build_request(method_request_class: Any, request: Union[None, Mapping[str, Any], Any]) -> Any:
    """The low-level `call`: a dict of snake_case fields (bytes as bytes) or a ready message."""
    if request is None:
        return method_request_class()
    if isinstance(request, Mapping):
        return method_request_class(**request)
    return request


__all__: List[str] = ["KeyValue", "PubSub", "Queue", "Stream", "MulticastRegistry", "Admin"]
