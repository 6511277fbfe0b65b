"""Prism's Python SDK over gRPC: PrismClient (sync) and AsyncPrismClient (asyncio).

    from prism_client import PrismClient, NotFound

    with PrismClient("127.0.0.1:8980") as prism:
        kv = prism.keyvalue("default")
        kv.set("user:1", b"Ada", ttl=60)
        print(kv.get("user:1"))          # b"Ada"
"""
from ._proto import METHODS, message
from ._claim_check import AsyncClaimCheck, AsyncPayloadStream, ClaimCheck, PayloadStream
from .aio import AsyncPrismClient, AsyncSubscription
from .client import PrismClient, Subscription
from .errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    PrismError,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
)
from .types import (
    ApplyBackendResult,
    ApplyNamespaceResult,
    BackendHealth,
    BackendInfo,
    BackendInstanceInfo,
    Claim,
    EnumeratePage,
    Health,
    KvItem,
    MulticastResult,
    NamespaceInfo,
    OutboxMessage,
    PatternInfo,
    PatternSlot,
    PubSubMessage,
    PutResult,
    QueueMessage,
    ReadResult,
    RegisterResult,
    RegistryMember,
    ScanItem,
    ScanPage,
    SlotInfo,
    StreamRecord,
    Ttl,
)

__version__ = "0.1.0"

import types as _types

__all__ = [n for n, v in list(globals().items()) if not n.startswith("_") and not isinstance(v, _types.ModuleType)]
