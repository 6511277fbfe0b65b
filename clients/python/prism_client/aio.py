"""AsyncPrismClient: the asyncio client over grpc.aio. Same facades and
results as PrismClient; calls are awaitables, scans and subscriptions async iterators."""
from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import grpc
import grpc.aio

from . import _convert
from ._facades import Admin, KeyValue, MulticastRegistry, PubSub, Queue, Stream, build_request
from ._options import CHANNEL_OPTIONS, DEFAULT_RETRY_WAIT, TlsArg, call_metadata, connection_lost, deadline, resolve_target, retry_failed, retry_timeout, retryable
from ._claim_check import AsyncClaimCheck
from .client import _Stubs, _unary_method
from .errors import Unavailable, _reason, from_rpc_error, make_error


class AsyncSubscription:
    """A subscription: `async for msg in sub`; `await sub` (or `await sub.ready()`) waits
    until it is live and raises the PrismError when Prism refused it; close() ends it."""

    def __init__(self, call: Any, convert: Callable[[Any], Any]) -> None:
        self._call = call
        self._convert = convert
        self._closed = False

    async def ready(self) -> "AsyncSubscription":
        try:
            await self._call.initial_metadata()
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        if self._call.done() and not self._closed:
            code = await self._call.code()
            if code != grpc.StatusCode.OK:
                raise make_error(code, _reason(await self._call.trailing_metadata()), await self._call.details() or "")
        return self

    def __await__(self):
        return self.ready().__await__()

    def __aiter__(self) -> "AsyncSubscription":
        return self

    async def __anext__(self) -> Any:
        try:
            msg = await self._call.read()
        except asyncio.CancelledError:
            if self._closed:  # our own close(); a cancelled task stays cancelled
                raise StopAsyncIteration from None
            raise
        except grpc.RpcError as e:
            if self._closed:
                raise StopAsyncIteration from None
            raise from_rpc_error(e) from None
        if msg is grpc.aio.EOF:
            raise StopAsyncIteration
        return self._convert(msg)

    def close(self) -> None:
        self._closed = True
        self._call.cancel()

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> "AsyncSubscription":
        return await self.ready()

    async def __aexit__(self, *exc: Any) -> None:
        self.close()


class _AsyncTransport:
    def __init__(self, channel: Any, metadata: Tuple[Tuple[str, str], ...], timeout: Optional[float], wait_for_ready: bool, retry: bool = True, retry_wait: float = DEFAULT_RETRY_WAIT) -> None:
        self.stubs = _Stubs(channel)
        self.metadata = metadata
        self.timeout = timeout
        self.wait_for_ready = wait_for_ready
        self.retry = retry
        self.retry_wait = retry_wait

    async def unary(self, key: str, req: Any, convert: Callable[[Any], Any], timeout: Optional[float] = None, extra: float = 0.0) -> Any:
        t = deadline(timeout, self.timeout, extra)
        end = None if t is None else time.monotonic() + t
        stub = self.stubs(key)
        try:
            res = await stub(req, timeout=t, metadata=self.metadata, wait_for_ready=self.wait_for_ready)
        except grpc.RpcError as e:
            err = from_rpc_error(e)
            left = retry_timeout(end, time.monotonic(), self.retry_wait)
            if not (self.retry and left is not None and connection_lost(err) and retryable(key, req)):
                raise err from None
            # Once the channel is back (wait_for_ready), once more within what is left of the deadline.
            try:
                res = await stub(req, timeout=left, metadata=self.metadata, wait_for_ready=True)
            except grpc.RpcError as e2:
                raise retry_failed(err, from_rpc_error(e2), left) from None
        return convert(res)

    def paginate(self, fetch: Callable[[str], Any]) -> AsyncIterator[Any]:
        async def pages() -> AsyncIterator[Any]:
            cursor = ""
            while True:
                page = await fetch(cursor)
                for item in page.items:
                    yield item
                cursor = page.next_cursor
                if not cursor:
                    return

        return pages()

    def subscribe(self, key: str, req: Any, convert: Callable[[Any], Any]) -> AsyncSubscription:
        return AsyncSubscription(self.stubs(key)(req, metadata=self.metadata, wait_for_ready=self.wait_for_ready), convert)


class AsyncPrismClient:
    """The asyncio Prism client; the arguments are PrismClient's. Create it inside the event loop:

        async with AsyncPrismClient() as prism:
            await prism.keyvalue("default").set("k", b"v")
            async for msg in await prism.pubsub("default").subscribe("orders.*"): ...
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
        self._channel = grpc.aio.secure_channel(self.target, creds, opts) if creds else grpc.aio.insecure_channel(self.target, opts)
        self._t = _AsyncTransport(self._channel, call_metadata(token, api_key, metadata), timeout, wait_for_ready, retry, retry_wait)
        self.admin = Admin(self._t)

    def keyvalue(self, namespace: str) -> KeyValue:
        return KeyValue(self._t, namespace)

    kv = keyvalue

    def pubsub(self, namespace: str) -> PubSub:
        return PubSub(self._t, namespace)

    def queue(self, namespace: str) -> Queue:
        return Queue(self._t, namespace)

    def stream(self, namespace: str) -> Stream:
        return Stream(self._t, namespace)

    def registry(self, namespace: str) -> MulticastRegistry:
        return MulticastRegistry(self._t, namespace)

    def claim_check(self, namespace: str) -> AsyncClaimCheck:
        """Streamed payloads of a claim-check namespace; its methods are coroutines."""
        return AsyncClaimCheck(self._t, namespace)

    async def call(self, service: str, method_name: str, request: Union[None, Mapping[str, Any], Any] = None, *, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Low level: any unary method by name → every response field as a dict."""
        m = _unary_method(service, method_name)
        return await self._t.unary(f"{m.service}/{m.name}", build_request(m.request, request), _convert.plain, timeout)

    async def wait_ready(self, timeout: Optional[float] = None) -> None:
        """Waits until the channel is connected; Unavailable after `timeout` seconds."""
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout)
        except asyncio.TimeoutError:
            raise Unavailable(grpc.StatusCode.UNAVAILABLE, "", f"{self.target}: not reachable within {timeout}s") from None

    async def close(self) -> None:
        """Closes the channel: calls in flight and subscriptions end."""
        await self._channel.close()

    async def __aenter__(self) -> "AsyncPrismClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncPrismClient({self.target!r})"


__all__ = ["AsyncPrismClient", "AsyncSubscription"]
