"""PrismClient: the synchronous client over a grpc channel."""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Sequence, Tuple, Union

import grpc

from . import _convert
from ._facades import Admin, KeyValue, MulticastRegistry, PubSub, Queue, Stream, build_request
from ._claim_check import ClaimCheck
from ._options import CHANNEL_OPTIONS, DEFAULT_RETRY_WAIT, TlsArg, call_metadata, connection_lost, deadline, resolve_target, retry_failed, retry_timeout, retryable
from ._proto import method
from .errors import PrismError, Unimplemented, Unavailable, from_rpc_error


class _Stubs:
    """One multicallable per method, made on first use."""

    def __init__(self, channel: Any) -> None:
        self._channel = channel
        self._stubs: Dict[str, Any] = {}

    def __call__(self, key: str) -> Any:
        s = self._stubs.get(key)
        if s is None:
            m = method(key)
            ch = self._channel
            make = {
                (False, False): ch.unary_unary,
                (False, True): ch.unary_stream,
                (True, False): ch.stream_unary,
                (True, True): ch.stream_stream,
            }[(m.client_streaming, m.server_streaming)]
            s = self._stubs[key] = make(m.path, request_serializer=m.request.SerializeToString, response_deserializer=m.response.FromString)
        return s


class Subscription:
    """A live subscription: iterate it for messages; close() (from any thread) ends it.
    A server-side end (namespace deleted, Prism shutting down) raises the PrismError."""

    def __init__(self, call: Any, convert: Callable[[Any], Any]) -> None:
        self._call = call
        self._convert = convert
        self._closed = False

    def wait_ready(self) -> "Subscription":
        """Blocks until the subscription is live (the response headers), raising the PrismError
        when Prism refused it (unknown namespace, pubsub not served, bad pattern)."""
        try:
            self._call.initial_metadata()
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        if self._call.done() and not self._closed and self._call.code() != grpc.StatusCode.OK:
            raise from_rpc_error(self._call)
        return self

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            msg = next(self._call)
        except grpc.RpcError as e:
            if self._closed:
                raise StopIteration from None
            raise from_rpc_error(e) from None
        return self._convert(msg)

    def close(self) -> None:
        self._closed = True
        self._call.cancel()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _SyncTransport:
    def __init__(self, channel: Any, metadata: Tuple[Tuple[str, str], ...], timeout: Optional[float], wait_for_ready: bool, retry: bool = True, retry_wait: float = DEFAULT_RETRY_WAIT) -> None:
        self.stubs = _Stubs(channel)
        self.metadata = metadata
        self.timeout = timeout
        self.wait_for_ready = wait_for_ready
        self.retry = retry
        self.retry_wait = retry_wait

    def unary(self, key: str, req: Any, convert: Callable[[Any], Any], timeout: Optional[float] = None, extra: float = 0.0) -> Any:
        t = deadline(timeout, self.timeout, extra)
        end = None if t is None else time.monotonic() + t
        stub = self.stubs(key)
        try:
            res = stub(req, timeout=t, metadata=self.metadata, wait_for_ready=self.wait_for_ready)
        except grpc.RpcError as e:
            err = from_rpc_error(e)
            left = retry_timeout(end, time.monotonic(), self.retry_wait)
            if not (self.retry and left is not None and connection_lost(err) and retryable(key, req)):
                raise err from None
            # Once the channel is back (wait_for_ready), once more within what is left of the deadline.
            try:
                res = stub(req, timeout=left, metadata=self.metadata, wait_for_ready=True)
            except grpc.RpcError as e2:
                raise retry_failed(err, from_rpc_error(e2), left) from None
        return convert(res)

    def paginate(self, fetch: Callable[[str], Any]) -> Iterator[Any]:
        def pages() -> Iterator[Any]:
            cursor = ""
            while True:
                page = fetch(cursor)
                yield from page.items
                cursor = page.next_cursor
                if not cursor:
                    return

        return pages()

    def subscribe(self, key: str, req: Any, convert: Callable[[Any], Any]) -> Subscription:
        return Subscription(self.stubs(key)(req, metadata=self.metadata, wait_for_ready=self.wait_for_ready), convert).wait_ready()


class PrismClient:
    """A synchronous Prism client over gRPC. Thread-safe; use one per process.

    addr: "host:port" (or grpc:// / grpcs://); default $PRISM_ADDR, else 127.0.0.1:8980.
    token: sent as `authorization: Bearer <token>`; api_key: as `x-api-key`.
    timeout: default deadline of every unary call in seconds (None: none); each call takes `timeout=` too.
    tls: True, or grpc.ChannelCredentials; default plaintext (TLS with a grpcs:// address).
    metadata: extra (key, value) pairs sent with every call; options: extra grpc channel options.
    wait_for_ready: while Prism is unreachable (restarting), calls wait for the channel to
        reconnect, up to their deadline, instead of failing at once with Unavailable.
    retry: (default True) a read, or a write with an idempotency_key, that fails because the
        connection dropped or Prism was unreachable is sent again once the channel reconnects,
        within the call's deadline (without one, waiting at most retry_wait seconds). Other calls
        raise Unavailable: they may have taken effect.

        with PrismClient() as prism:
            prism.keyvalue("default").set("k", b"v")
    """

    def __init__(
        self,
        addr: Optional[str] = None,
        *,
        token: Optional[str] = None,
        api_key: Optional[str] = None,
        timeout: Optional[float] = None,
        tls: TlsArg = None,
        metadata: Sequence[Tuple[str, str]] = (),
        options: Sequence[Tuple[str, Any]] = (),
        wait_for_ready: bool = False,
        retry: bool = True,
        retry_wait: float = DEFAULT_RETRY_WAIT,
    ) -> None:
        self.target, creds = resolve_target(addr, tls)
        opts = [*CHANNEL_OPTIONS, *options]
        self._channel = grpc.secure_channel(self.target, creds, opts) if creds else grpc.insecure_channel(self.target, opts)
        self._t = _SyncTransport(self._channel, call_metadata(token, api_key, metadata), timeout, wait_for_ready, retry, retry_wait)
        self.admin = Admin(self._t)

    def keyvalue(self, namespace: str) -> KeyValue:
        """Key-value calls on `namespace`."""
        return KeyValue(self._t, namespace)

    kv = keyvalue

    def pubsub(self, namespace: str) -> PubSub:
        return PubSub(self._t, namespace)

    def queue(self, namespace: str) -> Queue:
        return Queue(self._t, namespace)

    def stream(self, namespace: str) -> Stream:
        return Stream(self._t, namespace)

    def registry(self, namespace: str) -> MulticastRegistry:
        """The members of a multicast-registry namespace."""
        return MulticastRegistry(self._t, namespace)

    def claim_check(self, namespace: str) -> ClaimCheck:
        """Streamed payloads (put_stream / get_stream, head, delete) of a claim-check namespace."""
        return ClaimCheck(self._t, namespace)

    def call(self, service: str, method_name: str, request: Union[None, Mapping[str, Any], Any] = None, *, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Low level: any unary method by name, e.g. call("KeyValue", "Get", {"namespace": "default", "key": "k"})
        → every response field as a dict (bytes as bytes)."""
        m = _unary_method(service, method_name)
        return self._t.unary(f"{m.service}/{m.name}", build_request(m.request, request), _convert.plain, timeout)

    def wait_ready(self, timeout: Optional[float] = None) -> None:
        """Blocks until the channel is connected; Unavailable after `timeout` seconds."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise Unavailable(grpc.StatusCode.UNAVAILABLE, "", f"{self.target}: not reachable within {timeout}s") from None

    def close(self) -> None:
        """Closes the channel: calls in flight and subscriptions end."""
        self._channel.close()

    def __enter__(self) -> "PrismClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PrismClient({self.target!r})"


def _unary_method(service: str, name: str) -> Any:
    try:
        m = method(f"{service}/{name}")
    except KeyError:
        m = None
    if m is None or m.server_streaming or m.client_streaming:
        raise Unimplemented(grpc.StatusCode.UNIMPLEMENTED, "PRISM_ERR_UNKNOWN_METHOD", f"unknown unary method {service}/{name}")
    return m


__all__ = ["PrismClient", "Subscription", "PrismError"]
