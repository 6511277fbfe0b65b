"""Typed errors. Every failed call raises a PrismError subclass named after its
gRPC status code, carrying the code, Prism's stable reason (the `prism-reason`
trailer, e.g. "PRISM_ERR_UNKNOWN_NAMESPACE"; "" when the server sent none,
e.g. a transport failure) and the server's message, which names the field or
namespace at fault."""
from __future__ import annotations

import re
from typing import Dict, Optional, Type

import grpc

REASON_TRAILER = "prism-reason"
_RETRY_AFTER = re.compile(r"retry after (\d+)s")


class PrismError(Exception):
    """A failed Prism call.

    code    grpc.StatusCode, e.g. grpc.StatusCode.NOT_FOUND
    reason  the stable PRISM_ERR_* reason, or ""
    message the server's message
    """

    def __init__(self, code: grpc.StatusCode, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message

    @property
    def code_name(self) -> str:
        """"NOT_FOUND", as Prism's HTTP errors and the TypeScript SDK spell it."""
        return self.code.name

    @property
    def code_value(self) -> int:
        """The numeric gRPC status code (5 for NOT_FOUND)."""
        return self.code.value[0]

    @property
    def retry_after_seconds(self) -> Optional[int]:
        """Prism's pause hint for a shed or rate-limited call ("…; retry after 2s"), else None."""
        m = _RETRY_AFTER.search(self.message)
        return int(m.group(1)) if m else None

    def __str__(self) -> str:
        reason = f" {self.reason}" if self.reason else ""
        return f"{self.code.name}{reason}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code.name}, reason={self.reason!r}, message={self.message!r})"


class Cancelled(PrismError): pass
class Unknown(PrismError): pass
class InvalidArgument(PrismError): pass
class DeadlineExceeded(PrismError): pass
class NotFound(PrismError): pass
class AlreadyExists(PrismError): pass
class PermissionDenied(PrismError): pass
class ResourceExhausted(PrismError): pass
class FailedPrecondition(PrismError): pass
class Aborted(PrismError): pass
class OutOfRange(PrismError): pass
class Unimplemented(PrismError): pass
class Internal(PrismError): pass
class Unavailable(PrismError): pass
class DataLoss(PrismError): pass
class Unauthenticated(PrismError): pass


_BY_CODE: Dict[grpc.StatusCode, Type[PrismError]] = {
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNKNOWN: Unknown,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRange,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DATA_LOSS: DataLoss,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
}


def error_class(code: grpc.StatusCode) -> Type[PrismError]:
    """The PrismError subclass for a status code (PrismError itself for OK or an unknown code)."""
    return _BY_CODE.get(code, PrismError)


def make_error(code: grpc.StatusCode, reason: str, message: str) -> PrismError:
    return error_class(code)(code, reason, message)


def _reason(metadata) -> str:
    for key, value in metadata or ():
        if key == REASON_TRAILER:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return ""


def from_rpc_error(err: grpc.RpcError) -> PrismError:
    """A grpc.RpcError (sync) or grpc.aio.AioRpcError → the typed PrismError."""
    code = err.code() if callable(getattr(err, "code", None)) else grpc.StatusCode.UNKNOWN
    details = err.details() if callable(getattr(err, "details", None)) else str(err)
    trailers = err.trailing_metadata() if callable(getattr(err, "trailing_metadata", None)) else None
    return make_error(code or grpc.StatusCode.UNKNOWN, _reason(trailers), details or "")
