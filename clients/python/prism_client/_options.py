"""Where and how to connect: address (argument, $PRISM_ADDR, default), TLS and
the credential metadata every call carries."""
from __future__ import annotations

import os
from typing import Any, List, Optional, Sequence, Tuple, Union

import grpc

DEFAULT_ADDR = "127.0.0.1:8980"  # Prism's gRPC port (server.grpc_port)
ENV_ADDR = "PRISM_ADDR"
# Prism's own limit is server.max_message_bytes (8 MiB by default); let the server be the one to refuse.
CHANNEL_OPTIONS: List[Tuple[str, Any]] = [
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
    # The channel reconnects by itself after Prism restarts; cap gRPC's default backoff (up to 120 s) at 2 s.
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
]

TlsArg = Union[None, bool, grpc.ChannelCredentials]


def resolve_target(addr: Optional[str], tls: TlsArg) -> Tuple[str, Optional[grpc.ChannelCredentials]]:
    """(gRPC target, channel credentials or None for plaintext).

    addr: "host:port", "grpc://host:port" or "grpcs://host:port" (TLS); None: $PRISM_ADDR, else 127.0.0.1:8980.
    tls: True (system roots), grpc.ChannelCredentials (e.g. grpc.ssl_channel_credentials(root_ca)), or None/False."""
    raw = addr if addr is not None else os.environ.get(ENV_ADDR) or DEFAULT_ADDR
    target = raw.strip()
    scheme_tls = False
    if "://" in target:
        scheme, rest = target.split("://", 1)
        scheme = scheme.lower()
        if scheme == "grpcs":
            scheme_tls = True
        elif scheme != "grpc":
            raise ValueError(
                f"Prism address {raw!r}: the Python SDK speaks gRPC (default port 8980); "
                "use host:port, grpc://host:port or grpcs://host:port, not a ws:// or http:// address"
            )
        target = rest.rstrip("/")
    if not target:
        raise ValueError(f"Prism address {raw!r} names no host")
    if not target.startswith(("unix:", "dns:", "ipv4:", "ipv6:")) and not _has_port(target):
        target = f"{target}:8980"
    if isinstance(tls, grpc.ChannelCredentials):
        return target, tls
    if tls is True or (tls is None and scheme_tls):
        return target, grpc.ssl_channel_credentials()
    return target, None


def _has_port(target: str) -> bool:
    if target.startswith("["):  # [::1]:8980
        return "]:" in target
    return target.count(":") == 1  # a bare IPv6 address has several


def call_metadata(token: Optional[str], api_key: Optional[str], extra: Sequence[Tuple[str, str]]) -> Tuple[Tuple[str, str], ...]:
    md: List[Tuple[str, str]] = []
    if token:
        md.append(("authorization", f"Bearer {token}"))
    if api_key:
        md.append(("x-api-key", api_key))
    md.extend((k.lower(), v) for k, v in extra)
    return tuple(md)


def deadline(timeout: Optional[float], default: Optional[float], extra: float) -> Optional[float]:
    """The call's timeout in seconds: a per-call timeout as given; else the client's default,
    extended by a long poll's wait (so a default of 5 s still allows dequeue(wait=20))."""
    if timeout is not None:
        return timeout
    return None if default is None else default + extra


# Which calls may be sent again after the connection dropped or Prism was unreachable (the first
# attempt may or may not have reached the server): the TypeScript SDK's table (clients/typescript/src/retry.ts).
# "always": reads and calls whose repetition has no further effect; "keyed": writes carrying an
# idempotency key (the server applies the key once and answers a retry with the first result).
# Absent: never (Dequeue and ReadGroup lease, Ack/Nack act on a lease, batch writes carry no key).
RETRY = {
    "KeyValue/Get": "always",
    "KeyValue/Exists": "always",
    "KeyValue/BatchGet": "always",
    "KeyValue/Scan": "always",
    "KeyValue/GetTtl": "always",
    "KeyValue/Persist": "always",
    "KeyValue/Set": "keyed",
    "KeyValue/Delete": "keyed",
    "PubSub/Publish": "keyed",
    "Queue/Enqueue": "keyed",
    "Stream/Append": "keyed",
    "Stream/Read": "always",
    "MulticastRegistry/Enumerate": "always",
    "Admin/ListNamespaces": "always",
    "Admin/GetNamespace": "always",
    "Admin/ListBackends": "always",
    "Admin/ListBackendInstances": "always",
    "Admin/ListPatterns": "always",
    "Admin/Health": "always",
    "Admin/MigrationStatus": "always",
}

# A retried call without a deadline waits at most this long for the connection to come back.
DEFAULT_RETRY_WAIT = 30.0


def retryable(key: str, req: Any) -> bool:
    kind = RETRY.get(key)
    if kind == "always":
        return True
    return kind == "keyed" and bool(getattr(req, "idempotency_key", ""))


def connection_lost(err: Any) -> bool:
    """UNAVAILABLE from the transport (no Prism reason): the call may not have reached Prism, or its
    answer was lost with the connection. Prism's own UNAVAILABLE (a backend down, shutting down)
    carries a reason and is not retried here."""
    return err.code == grpc.StatusCode.UNAVAILABLE and not err.reason


def retry_timeout(end: Optional[float], now: float, retry_wait: float) -> Optional[float]:
    """The retry's timeout: what is left of the call's deadline, else retry_wait; None when nothing is left."""
    left = retry_wait if end is None else end - now
    return left if left > 0 else None


def retry_failed(first: Any, again: Any, waited: float) -> Any:
    """The error of a retried call: its own, unless it ran out of time waiting for the connection,
    which is still the first attempt's Unavailable (the server was never reached again)."""
    if again.code == grpc.StatusCode.DEADLINE_EXCEEDED:
        first.message = f"{first.message} (not reachable again within {waited:.1f} s)"
        first.args = (first.message,)
        return first
    return again
