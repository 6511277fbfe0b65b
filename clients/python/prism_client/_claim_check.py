"""Claim Check payloads (namespaces with `pattern: claim-check`) over the gRPC
ClaimCheck service: put_stream uploads a payload of any size (up to the
namespace's max_payload_bytes, 5 GiB by default) as it is produced
(client-streaming Put), get_stream streams one back (server-streaming Get),
head reads a claim, delete removes a payload's bytes. Neither side holds a
payload in memory: each chunk waits for gRPC flow control to take the previous
ones. The TypeScript SDK's putStream / getStream, in Python.

Transfers take no deadline unless given `timeout=`: the client's default
timeout is for unary calls, and a transfer lasts as long as its bytes.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Any, AsyncIterable, AsyncIterator, BinaryIO, Iterable, Iterator, Optional, Union

import grpc
import grpc.aio

from . import types as t
from ._proto import message
from .errors import _reason, from_rpc_error, make_error

#: Bytes per gRPC message of an upload; larger chunks of the body are split (Prism's unary
#: limit server.max_message_bytes, 8 MiB by default, applies to each message).
CHUNK_SIZE = 1 << 20

BytesLike = Union[bytes, bytearray, memoryview]
#: What put_stream uploads: bytes, a binary file object (read chunk by chunk), or an iterable of
#: bytes chunks (a generator, a list; with AsyncPrismClient an async iterable too).
Body = Union[BytesLike, BinaryIO, Iterable[BytesLike], AsyncIterable[BytesLike]]

_PUT = "ClaimCheck/Put"
_GET = "ClaimCheck/Get"


def _claim(m: Any) -> t.Claim:
    return t.Claim(m.id, int(m.size), m.sha256, m.content_type, int(m.created_at_ms), int(m.expires_at_ms))


def _header(namespace: str, key: Optional[str], queue: Optional[str], topic: Optional[str], stream: Optional[str],
            ttl: Optional[int], sha256: Optional[str], if_absent: bool, content_type: Optional[str]) -> Any:
    if ttl is not None and (not isinstance(ttl, int) or ttl < 0):
        raise ValueError(f"ttl must be a whole number of seconds >= 0, got {ttl!r}")
    return message("PutPayloadRequest")(
        namespace=namespace, key=key or "", queue=queue or "", topic=topic or "", stream=stream or "",
        ttl_seconds=ttl or 0, sha256=sha256 or "", if_absent=bool(if_absent), content_type=content_type or "",
    )


def _put_result(res: Any, key: Optional[str], queue: Optional[str], topic: Optional[str], stream: Optional[str]) -> t.PutResult:
    return t.PutResult(
        _claim(res.claim),
        version=int(res.version) if key else None,
        message_id=res.message_id if (queue or topic) else None,
        offset=int(res.offset) if stream else None,
    )


def _get_request(namespace: str, claim_id: Optional[str], key: Optional[str], offset: int = 0, length: int = 0) -> Any:
    if (claim_id is None) == (key is None):
        raise ValueError("pass a claim id, or key= for the claim a key holds (one of them)")
    for name, v in (("offset", offset), ("length", length)):
        if not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be a whole number >= 0, got {v!r}")
    return message("GetPayloadRequest")(namespace=namespace, claim_id=claim_id or "", key=key or "", offset=offset, length=length)


def _check_chunk_size(chunk_size: int) -> None:
    if not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"chunk_size must be a whole number of bytes > 0, got {chunk_size!r}")


def _pieces(data: Any, size: int) -> Iterator[bytes]:
    """One chunk of the body as gRPC messages of at most `size` bytes."""
    if isinstance(data, str):
        raise TypeError("body chunks must be bytes, not str (encode it, or open the file in binary mode)")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"body chunks must be bytes, not {type(data).__name__}")
    if len(data) <= size:
        if data:
            yield bytes(data)
        return
    mv = memoryview(data)
    for i in range(0, len(mv), size):
        yield bytes(mv[i : i + size])


def _kind(body: Any) -> str:
    if isinstance(body, str):
        raise TypeError("body must be bytes, a binary file object or an iterable of bytes, not str")
    if isinstance(body, (bytes, bytearray, memoryview)):
        return "bytes"
    if callable(getattr(body, "read", None)):
        return "file"
    if hasattr(body, "__aiter__"):
        return "aiter"
    if hasattr(body, "__iter__"):
        return "iter"
    raise TypeError(f"body must be bytes, a binary file object or an iterable of bytes, not {type(body).__name__}")


def _chunks(body: Any, size: int) -> Iterator[bytes]:
    kind = _kind(body)
    if kind == "aiter":
        raise TypeError("an async iterable body needs AsyncPrismClient")
    if kind == "bytes":
        yield from _pieces(body, size)
    elif kind == "file":
        while True:
            b = body.read(size)
            if not b:
                return
            yield from _pieces(b, size)
    else:
        for c in body:
            yield from _pieces(c, size)


async def _achunks(body: Any, size: int) -> AsyncIterator[bytes]:
    kind = _kind(body)
    if kind == "bytes":
        for p in _pieces(body, size):
            yield p
    elif kind == "file":
        loop = asyncio.get_running_loop()
        while True:
            b = await loop.run_in_executor(None, body.read, size)  # a blocking read off the event loop
            if not b:
                return
            for p in _pieces(b, size):
                yield p
    elif kind == "aiter":
        async for c in body:
            for p in _pieces(c, size):
                yield p
    else:
        for c in body:
            for p in _pieces(c, size):
                yield p


class _Pump:
    """The request iterator of a sync upload (grpc consumes it on its own thread, one message
    per flow-control credit). A failure of the body cancels the call, never ends it as if the
    payload were complete; the body's own exception is what put_stream raises."""

    def __init__(self, header: Any, chunks: Iterator[bytes]) -> None:
        self._header = header
        self._chunks = chunks
        self.error: Optional[BaseException] = None
        self._call: Any = None
        self._attached = threading.Event()

    def attach(self, call: Any) -> None:
        self._call = call
        self._attached.set()

    def __iter__(self) -> Iterator[Any]:
        yield self._header
        Chunk = message("PutPayloadRequest")
        try:
            for c in self._chunks:
                yield Chunk(chunk=c)
        except Exception as e:  # noqa: BLE001 - the caller's body failed: cancel, and re-raise it from put_stream
            self.error = e
            self._attached.wait(10)
            if self._call is None:
                raise  # grpc cancels the call itself (and logs it); never end the upload as if complete
            # Cancelled, the call sends no end of stream: nothing is stored. (Raising would make grpc log it.)
            self._call.cancel()


class _ClaimCheckBase:
    __slots__ = ("_t", "namespace")

    def __init__(self, transport: Any, namespace: str) -> None:
        self._t = transport
        self.namespace = namespace

    def head(self, claim_id: Optional[str] = None, *, key: Optional[str] = None, timeout: Optional[float] = None):
        """The claim of a stored payload (by id, or the claim `key` holds) → Claim; NotFound when absent."""
        return self._t.unary("ClaimCheck/Head", _get_request(self.namespace, claim_id, key), _claim, timeout)

    def delete(self, claim_id: str, *, timeout: Optional[float] = None):
        """Deletes a payload's bytes → True when there were some. A key or message still
        holding the claim then reads as NotFound (delete a key with KeyValue.delete instead)."""
        return self._t.unary("ClaimCheck/Delete", _get_request(self.namespace, claim_id, None), lambda r: bool(r.deleted), timeout)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.namespace!r})"


# ---------------------------------------------------------------- sync


class PayloadStream:
    """A payload being downloaded: `claim` (read before get_stream returned), then iterate it
    for the bytes chunks. A whole read is checked against the claim's SHA-256 by Prism: a
    mismatch raises DataLoss (PRISM_ERR_PAYLOAD_CORRUPT) once the last chunk went by, so read
    to the end before trusting the bytes. close() (from any thread) stops the download."""

    def __init__(self, call: Any, claim: t.Claim, first: bytes) -> None:
        self._call = call
        self.claim = claim
        self._first = first
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._first:
            b, self._first = self._first, b""
            return b
        while True:
            try:
                msg = next(self._call)
            except grpc.RpcError as e:
                if self._closed:
                    raise StopIteration from None
                raise from_rpc_error(e) from None
            if msg.data:
                return msg.data

    def read(self) -> bytes:
        """The rest of the payload as one bytes object (for payloads that fit in memory)."""
        return b"".join(self)

    def copy_to(self, file: BinaryIO) -> int:
        """Writes the rest of the payload to a binary file object → the number of bytes written."""
        n = 0
        for chunk in self:
            file.write(chunk)
            n += len(chunk)
        return n

    def close(self) -> None:
        self._closed = True
        self._call.cancel()

    def __enter__(self) -> "PayloadStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class ClaimCheck(_ClaimCheckBase):
    """Streamed payloads of one claim-check namespace (PrismClient.claim_check(ns)).

        cc = prism.claim_check("uploads")
        with open("video.mp4", "rb") as f:
            res = cc.put_stream(f, queue="transcode")          # PutResult(claim=Claim(id, size, sha256, …), message_id=…)
        with cc.get_stream(res.claim.id) as body, open("copy.mp4", "wb") as out:
            body.copy_to(out)
    """

    __slots__ = ()

    def put_stream(
        self,
        body: Body,
        *,
        key: Optional[str] = None,
        queue: Optional[str] = None,
        topic: Optional[str] = None,
        stream: Optional[str] = None,
        ttl: Optional[int] = None,
        sha256: Optional[str] = None,
        if_absent: bool = False,
        content_type: Optional[str] = None,
        chunk_size: int = CHUNK_SIZE,
        timeout: Optional[float] = None,
    ) -> t.PutResult:
        """Uploads `body` (bytes, a binary file object, or an iterable of bytes chunks, taken as
        gRPC accepts them) and writes its claim to at most one of key, queue, topic, stream.

        ttl: the key's TTL, or the payload's life for messages (seconds). sha256: the expected hex
        digest (InvalidArgument when the bytes differ). if_absent: key only. timeout: none by default.
        A failure of the body itself cancels the upload (nothing is stored) and is raised as is."""
        _check_chunk_size(chunk_size)
        if _kind(body) == "aiter":  # TypeError now, not from grpc's thread
            raise TypeError("an async iterable body needs AsyncPrismClient")
        pump = _Pump(_header(self.namespace, key, queue, topic, stream, ttl, sha256, if_absent, content_type), _chunks(body, chunk_size))
        call = self._t.stubs(_PUT).future(iter(pump), timeout=timeout, metadata=self._t.metadata, wait_for_ready=self._t.wait_for_ready)
        pump.attach(call)
        try:
            res = call.result()
        except (grpc.RpcError, grpc.FutureCancelledError) as e:
            if pump.error is not None:
                raise pump.error from None
            if isinstance(e, grpc.FutureCancelledError):
                raise make_error(grpc.StatusCode.CANCELLED, "", "ClaimCheck/Put: the upload was cancelled") from None
            raise from_rpc_error(e) from None
        except BaseException:  # KeyboardInterrupt: stop the upload too
            call.cancel()
            raise
        return _put_result(res, key, queue, topic, stream)

    def get_stream(
        self,
        claim_id: Optional[str] = None,
        *,
        key: Optional[str] = None,
        offset: int = 0,
        length: int = 0,
        timeout: Optional[float] = None,
    ) -> PayloadStream:
        """Starts streaming a payload (by claim id, or key= for the claim a key holds); offset /
        length (0: to the end) for a range, which is not digest-checked. Raises NotFound & co.
        here, before any byte; the returned PayloadStream carries the claim and yields the bytes."""
        req = _get_request(self.namespace, claim_id, key, offset, length)
        call = self._t.stubs(_GET)(req, timeout=timeout, metadata=self._t.metadata, wait_for_ready=self._t.wait_for_ready)
        try:
            first = next(call)
        except StopIteration:
            raise make_error(grpc.StatusCode.INTERNAL, "PRISM_ERR_MALFORMED", "ClaimCheck/Get: the stream ended before the claim") from None
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        if not first.HasField("claim"):
            call.cancel()
            raise make_error(grpc.StatusCode.INTERNAL, "PRISM_ERR_MALFORMED", "ClaimCheck/Get: the stream did not start with the claim")
        return PayloadStream(call, _claim(first.claim), first.data)


# ---------------------------------------------------------------- asyncio


class AsyncPayloadStream:
    """PayloadStream for AsyncPrismClient: `async for chunk in body`; `await body.read()`,
    `await body.copy_to(file)`; close() stops the download."""

    def __init__(self, call: Any, claim: t.Claim, first: bytes) -> None:
        self._call = call
        self.claim = claim
        self._first = first
        self._closed = False

    def __aiter__(self) -> "AsyncPayloadStream":
        return self

    async def __anext__(self) -> bytes:
        if self._first:
            b, self._first = self._first, b""
            return b
        while True:
            try:
                msg = await self._call.read()
            except asyncio.CancelledError:
                if self._closed:
                    raise StopAsyncIteration from None
                raise
            except grpc.RpcError as e:
                if self._closed:
                    raise StopAsyncIteration from None
                raise from_rpc_error(e) from None
            if msg is grpc.aio.EOF:
                code = await self._call.code()
                if code != grpc.StatusCode.OK and not self._closed:
                    raise make_error(code, _reason(await self._call.trailing_metadata()), await self._call.details() or "")
                raise StopAsyncIteration
            if msg.data:
                return msg.data

    async def read(self) -> bytes:
        return b"".join([c async for c in self])

    async def copy_to(self, file: BinaryIO) -> int:
        n = 0
        async for chunk in self:
            file.write(chunk)
            n += len(chunk)
        return n

    def close(self) -> None:
        self._closed = True
        self._call.cancel()

    async def __aenter__(self) -> "AsyncPayloadStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()


class AsyncClaimCheck(_ClaimCheckBase):
    """ClaimCheck for AsyncPrismClient: the same methods as coroutines; put_stream also takes
    an async iterable (a file object is read off the event loop).

        cc = prism.claim_check("uploads")
        res = await cc.put_stream(chunks(), queue="transcode")
        async with await cc.get_stream(res.claim.id) as body:
            async for chunk in body: ...
    """

    __slots__ = ()

    async def put_stream(
        self,
        body: Body,
        *,
        key: Optional[str] = None,
        queue: Optional[str] = None,
        topic: Optional[str] = None,
        stream: Optional[str] = None,
        ttl: Optional[int] = None,
        sha256: Optional[str] = None,
        if_absent: bool = False,
        content_type: Optional[str] = None,
        chunk_size: int = CHUNK_SIZE,
        timeout: Optional[float] = None,
    ) -> t.PutResult:
        """ClaimCheck.put_stream, awaitable."""
        _check_chunk_size(chunk_size)
        _kind(body)
        header = _header(self.namespace, key, queue, topic, stream, ttl, sha256, if_absent, content_type)
        Chunk = message("PutPayloadRequest")
        call = self._t.stubs(_PUT)(timeout=timeout, metadata=self._t.metadata, wait_for_ready=self._t.wait_for_ready)
        chunks = _achunks(body, chunk_size).__aiter__()
        try:
            try:
                await call.write(header)
                while True:
                    try:
                        c = await chunks.__anext__()
                    except StopAsyncIteration:
                        break
                    except BaseException:  # the body's own failure (or this task cancelled): nothing is stored
                        call.cancel()
                        raise
                    await call.write(Chunk(chunk=c))
                await call.done_writing()
            except (asyncio.InvalidStateError, grpc.RpcError):
                pass  # the call ended early (refused): its status, awaited below, says why
            res = await call
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        finally:
            await chunks.aclose()
        return _put_result(res, key, queue, topic, stream)

    async def get_stream(
        self,
        claim_id: Optional[str] = None,
        *,
        key: Optional[str] = None,
        offset: int = 0,
        length: int = 0,
        timeout: Optional[float] = None,
    ) -> AsyncPayloadStream:
        """ClaimCheck.get_stream, awaitable → AsyncPayloadStream."""
        req = _get_request(self.namespace, claim_id, key, offset, length)
        call = self._t.stubs(_GET)(req, timeout=timeout, metadata=self._t.metadata, wait_for_ready=self._t.wait_for_ready)
        try:
            first = await call.read()
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
        if first is grpc.aio.EOF:
            code = await call.code()
            if code != grpc.StatusCode.OK:
                raise make_error(code, _reason(await call.trailing_metadata()), await call.details() or "")
            raise make_error(grpc.StatusCode.INTERNAL, "PRISM_ERR_MALFORMED", "ClaimCheck/Get: the stream ended before the claim")
        if not first.HasField("claim"):
            call.cancel()
            raise make_error(grpc.StatusCode.INTERNAL, "PRISM_ERR_MALFORMED", "ClaimCheck/Get: the stream did not start with the claim")
        return AsyncPayloadStream(call, _claim(first.claim), first.data)


__all__ = ["ClaimCheck", "AsyncClaimCheck", "PayloadStream", "AsyncPayloadStream", "CHUNK_SIZE"]
