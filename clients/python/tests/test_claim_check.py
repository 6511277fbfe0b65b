"""Claim Check streaming through the sync and the asyncio client, against a live Prism with
two claim-check namespaces (filesystem payloads; claims fronted by a queue resp. keys):
put_stream from generators, bytes, file objects and async iterables, get_stream checked by
SHA-256 (a payload of 12 MiB: above threshold_bytes, 1 MiB, and inline_max_bytes, 8 MiB),
ranges, head, delete, and the typed errors (unknown namespace, absent payload, digest
mismatch on upload and on disk, a failing body)."""
import asyncio
import hashlib
import io
import json
import os
import threading
import time

import pytest

from prism_client import (
    AsyncPrismClient,
    Claim,
    DataLoss,
    InvalidArgument,
    NotFound,
    PrismClient,
    PutResult,
)

from conftest import CLAIM_PAYLOADS_DIR, NS_CLAIM, NS_CLAIM_KV

pytestmark = pytest.mark.live

MIB = 1 << 20
BIG = 12 * MIB + 5  # above threshold_bytes (1 MiB) and inline_max_bytes (8 MiB)


@pytest.fixture(scope="module", autouse=True)
def claim_namespaces(client):
    for ns in (NS_CLAIM, NS_CLAIM_KV):
        try:
            client.admin.get_namespace(ns)
        except NotFound:
            pytest.skip(f"no claim-check namespace {ns!r} on this Prism (see conftest.py)")


def blocks(total, seed=b""):
    """`total` bytes as 1 MiB blocks (each distinct), made as they are taken; with the SHA-256 once iterated."""
    h = hashlib.sha256()
    state = {}

    def gen():
        sent, n = 0, 0
        while sent < total:
            size = min(MIB, total - sent)
            b = (hashlib.sha256(seed + n.to_bytes(4, "big")).digest() * (size // 32 + 1))[:size]
            h.update(b)
            sent += size
            n += 1
            yield b
        state["sha256"] = h.hexdigest()

    return gen, lambda: state["sha256"]


def sha(chunks):
    h = hashlib.sha256()
    n = 0
    for c in chunks:
        h.update(c)
        n += len(c)
    return h.hexdigest(), n


# ---------------------------------------------------------------- sync


def test_put_stream_big_payload_to_a_queue_and_back(client, uniq):
    cc = client.claim_check(NS_CLAIM)
    gen, digest = blocks(BIG, uniq.encode())
    res = cc.put_stream(gen(), queue=f"{uniq}-jobs", content_type="application/x-test")
    assert isinstance(res, PutResult) and isinstance(res.claim, Claim)
    assert res.claim.size == BIG and res.claim.sha256 == digest()
    assert res.message_id and res.version is None and res.offset is None
    with cc.get_stream(res.claim.id) as body:
        assert body.claim == cc.head(res.claim.id)
        assert body.claim.sha256 == digest() and body.claim.content_type == "application/x-test"
        assert sha(body) == (digest(), BIG), "same bytes back"
    # Above inline_max_bytes the message carries the claim, to stream.
    [job] = client.queue(NS_CLAIM).dequeue(f"{uniq}-jobs", wait=2)
    assert job.payload == b"" and json.loads(job.attributes["prism-claim"])["id"] == res.claim.id
    # Ranges: offset + length, and offset to the end.
    whole = b"".join(blocks(BIG, uniq.encode())[0]())
    assert cc.get_stream(res.claim.id, offset=MIB - 2, length=5).read() == whole[MIB - 2 : MIB + 3]
    assert cc.get_stream(res.claim.id, offset=BIG - 7).read() == whole[-7:]
    # Acking the message deletes its payload (in the background: within a few seconds).
    client.queue(NS_CLAIM).ack(f"{uniq}-jobs", job.receipt)
    end = time.monotonic() + 5
    while True:
        try:
            cc.head(res.claim.id)
        except NotFound:
            break
        assert time.monotonic() < end, "the acked message's payload is still there after 5 s"
        time.sleep(0.05)


def test_put_stream_from_a_file_and_bytes_to_keys(client, uniq, tmp_path):
    cc = client.claim_check(NS_CLAIM_KV)
    data = os.urandom(3 * MIB + 1)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    with open(path, "rb") as f:
        res = cc.put_stream(f, key=f"{uniq}/file", chunk_size=256 * 1024)
    assert res.claim.size == len(data) and res.claim.sha256 == hashlib.sha256(data).hexdigest()
    assert res.version is not None and res.version > 0 and res.message_id is None
    out = io.BytesIO()
    assert cc.get_stream(key=f"{uniq}/file").copy_to(out) == len(data)
    assert out.getvalue() == data
    # One bytes object larger than a gRPC message may be (server.max_message_bytes, 8 MiB): split into chunks.
    big = os.urandom(10 * MIB)
    res2 = cc.put_stream(big, key=f"{uniq}/bytes", ttl=600)
    assert res2.claim.sha256 == hashlib.sha256(big).hexdigest()
    assert cc.head(key=f"{uniq}/bytes").id == res2.claim.id
    # The key reads as the claim's bytes only up to inline_max_bytes (8 MiB): 3 MiB inline.
    assert client.keyvalue(NS_CLAIM_KV).get(f"{uniq}/file") == data


def test_delete_then_absent(client, uniq):
    cc = client.claim_check(NS_CLAIM)
    res = cc.put_stream([b"a" * 1000, b"b" * 1000], queue=f"{uniq}-del")
    assert cc.get_stream(res.claim.id).read() == b"a" * 1000 + b"b" * 1000
    assert cc.delete(res.claim.id) is True
    with pytest.raises(NotFound):
        cc.get_stream(res.claim.id)
    with pytest.raises(NotFound):
        cc.head(res.claim.id)
    assert cc.delete(res.claim.id) is False


def test_errors_are_typed(client, uniq):
    nope = client.claim_check(f"{uniq}-no-such-ns")
    gen, _ = blocks(8 * MIB)
    with pytest.raises(NotFound) as e:  # refused while the client still sends several MiB: answered, not hung
        nope.put_stream(gen(), queue="q")
    assert e.value.reason == "PRISM_ERR_UNKNOWN_NAMESPACE"
    with pytest.raises(NotFound) as e:
        nope.get_stream("0" * 32)
    assert e.value.reason == "PRISM_ERR_UNKNOWN_NAMESPACE"
    cc = client.claim_check(NS_CLAIM)
    with pytest.raises(NotFound):
        cc.get_stream("0" * 32)
    with pytest.raises(NotFound):
        client.claim_check(NS_CLAIM_KV).get_stream(key=f"{uniq}/absent")
    with pytest.raises(InvalidArgument):  # the announced digest is not the bytes'
        cc.put_stream(os.urandom(2 * MIB), queue=f"{uniq}-q", sha256="f" * 64)
    # Caller bugs: before anything is sent.
    with pytest.raises(TypeError):
        cc.put_stream("text", queue="q")
    with pytest.raises(ValueError):
        cc.get_stream()
    with pytest.raises(ValueError):
        cc.get_stream("id", key="k")
    with pytest.raises(ValueError):
        cc.get_stream("id", offset=-1)


def test_a_failing_body_is_raised_and_nothing_is_enqueued(client, uniq):
    cc = client.claim_check(NS_CLAIM)

    class DiskGone(Exception):
        pass

    def failing():
        yield os.urandom(MIB)
        yield os.urandom(MIB)
        raise DiskGone("read failed")

    with pytest.raises(DiskGone):
        cc.put_stream(failing(), queue=f"{uniq}-fail")
    with pytest.raises(TypeError):  # a str chunk in the middle
        cc.put_stream([b"ok", "not bytes"], queue=f"{uniq}-fail")
    assert client.queue(NS_CLAIM).dequeue(f"{uniq}-fail", wait=1) == [], "no claim for a failed upload"


@pytest.mark.skipif(not CLAIM_PAYLOADS_DIR, reason="PRISM_TEST_CLAIM_PAYLOADS_DIR not set")
def test_a_payload_changed_on_disk_raises_data_loss(client, uniq):
    cc = client.claim_check(NS_CLAIM)
    data = os.urandom(2 * MIB)
    res = cc.put_stream(data, queue=f"{uniq}-corrupt")
    with open(os.path.join(CLAIM_PAYLOADS_DIR, NS_CLAIM, f"{res.claim.id}.bin"), "r+b") as f:
        f.seek(MIB)
        f.write(b"\x00" * 16 if data[MIB : MIB + 16] != b"\x00" * 16 else b"\x01" * 16)
    with pytest.raises(DataLoss) as e:
        cc.get_stream(res.claim.id).read()
    assert e.value.reason == "PRISM_ERR_PAYLOAD_CORRUPT"


def test_close_stops_a_download(client, uniq):
    cc = client.claim_check(NS_CLAIM)
    gen, _ = blocks(6 * MIB)
    res = cc.put_stream(gen(), queue=f"{uniq}-close")
    body = cc.get_stream(res.claim.id)
    assert next(body)
    t = threading.Thread(target=body.close)  # from another thread
    t.start()
    t.join()
    list(body)  # what was already received, then the end: no Cancelled raised
    with pytest.raises(StopIteration):
        next(body)


# ---------------------------------------------------------------- asyncio


def run(coro_fn, addr):
    async def main():
        async with AsyncPrismClient(addr, timeout=10) as c:
            await asyncio.wait_for(coro_fn(c), 60)

    asyncio.run(main())


def test_async_put_stream_from_an_async_iterable_and_back(addr, uniq):
    gen, digest = blocks(BIG, uniq.encode())

    async def chunks():
        for b in gen():
            await asyncio.sleep(0)
            yield b

    async def body(c):
        cc = c.claim_check(NS_CLAIM)
        res = await cc.put_stream(chunks(), queue=f"{uniq}-ajobs")
        assert res.claim.size == BIG and res.claim.sha256 == digest() and res.message_id
        async with await cc.get_stream(res.claim.id) as s:
            assert s.claim.id == res.claim.id
            h = hashlib.sha256()
            n = 0
            async for chunk in s:
                h.update(chunk)
                n += len(chunk)
        assert (h.hexdigest(), n) == (digest(), BIG)
        assert (await (await cc.get_stream(res.claim.id, offset=BIG - 3)).read()) == (await (await cc.get_stream(res.claim.id)).read())[-3:]
        assert (await cc.head(res.claim.id)).sha256 == digest()
        assert await cc.delete(res.claim.id) is True

    run(body, addr)


def test_async_file_body_and_errors(addr, uniq, tmp_path):
    data = os.urandom(2 * MIB + 3)
    path = tmp_path / "a.bin"
    path.write_bytes(data)

    async def body(c):
        kv = c.claim_check(NS_CLAIM_KV)
        with open(path, "rb") as f:
            res = await kv.put_stream(f, key=f"{uniq}/afile")
        assert res.claim.sha256 == hashlib.sha256(data).hexdigest() and res.version
        out = io.BytesIO()
        assert await (await kv.get_stream(key=f"{uniq}/afile")).copy_to(out) == len(data)
        assert out.getvalue() == data
        with pytest.raises(NotFound) as e:
            await c.claim_check(f"{uniq}-nope").put_stream([os.urandom(MIB)] * 6, queue="q")
        assert e.value.reason == "PRISM_ERR_UNKNOWN_NAMESPACE"
        with pytest.raises(NotFound):
            await c.claim_check(NS_CLAIM).get_stream("0" * 32)
        with pytest.raises(InvalidArgument):
            await c.claim_check(NS_CLAIM).put_stream(b"x" * 5000, queue=f"{uniq}-aq", sha256="0" * 64)

        class Boom(Exception):
            pass

        async def failing():
            yield b"x" * MIB
            raise Boom()

        with pytest.raises(Boom):
            await c.claim_check(NS_CLAIM).put_stream(failing(), queue=f"{uniq}-afail")
        assert await c.queue(NS_CLAIM).dequeue(f"{uniq}-afail", wait=1) == []

    run(body, addr)
