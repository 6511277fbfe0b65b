"""The same semantics through AsyncPrismClient (grpc.aio). No pytest-asyncio:
each test runs its coroutine with asyncio.run."""
import asyncio

import pytest

from prism_client import AsyncPrismClient, DeadlineExceeded, FailedPrecondition, InvalidArgument, NotFound

from conftest import NS, NS_KVONLY

pytestmark = pytest.mark.live


def run_async(fn):
    """The test's coroutine fn(client, uniq) on a fresh client in a fresh event loop."""

    def wrapper(addr, uniq):
        async def main():
            async with AsyncPrismClient(addr, timeout=10) as c:
                await asyncio.wait_for(fn(c, uniq), 30)

        asyncio.run(main())

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__  # not functools.wraps: pytest would read fn's signature
    return wrapper


@run_async
async def test_async_kv(c, uniq):
    kv = c.keyvalue(NS)
    assert await kv.get(f"{uniq}a") is None
    v = await kv.set(f"{uniq}a", b"1", ttl=60)
    assert (await kv.get_item(f"{uniq}a")).version == v and await kv.exists(f"{uniq}a")
    assert 0 < (await kv.ttl(f"{uniq}a")).ttl_ms <= 60_000
    with pytest.raises(FailedPrecondition):
        await kv.set(f"{uniq}a", b"2", expected_version=v + 1)
    await kv.batch_set({f"{uniq}b": b"2", f"{uniq}c": b"3"})
    assert [i.key async for i in kv.scan(uniq, limit=1)] == [f"{uniq}a", f"{uniq}b", f"{uniq}c"]
    assert await kv.delete(f"{uniq}a") is True and await kv.get(f"{uniq}a") is None


@run_async
async def test_async_subscribe_receives_publish(c, uniq):
    ps = c.pubsub(NS)
    sub = await ps.subscribe(f"{uniq}.*")  # awaiting waits until it is live
    await ps.publish(f"{uniq}.x", b"hello", {"a": "b"})
    async for msg in sub:
        assert (msg.topic, msg.payload, msg.attributes) == (f"{uniq}.x", b"hello", {"a": "b"})
        break
    sub.close()
    assert [m async for m in sub] == []


@run_async
async def test_async_subscribe_as_context_manager(c, uniq):
    ps = c.pubsub(NS)
    async with ps.subscribe(f"{uniq}.>") as sub:
        ids = [await ps.publish(f"{uniq}.{i}.z", str(i)) for i in range(3)]
        got = []
        async for msg in sub:
            got.append(msg.message_id)
            if len(got) == 3:
                break
    assert got == ids and sub.closed


@run_async
async def test_async_subscribe_errors(c, uniq):
    with pytest.raises(NotFound):
        await c.pubsub("py-no-such-namespace").subscribe("a")
    with pytest.raises(FailedPrecondition):
        async for _ in c.pubsub(NS_KVONLY).subscribe("a"):
            pass


@run_async
async def test_async_queue(c, uniq):
    q = c.queue(NS)
    mid = await q.enqueue(uniq, b"job")
    [m] = await q.dequeue(uniq, wait=2)
    assert m.message_id == mid and m.delivery_count == 1
    await q.nack(uniq, m.receipt)
    [m2] = await q.dequeue(uniq, wait=2)
    assert m2.delivery_count == 2
    await q.extend_visibility(uniq, m2.receipt, 10)
    await q.ack(uniq, m2.receipt)
    with pytest.raises(FailedPrecondition):
        await q.ack(uniq, m2.receipt)
    assert await q.dequeue(uniq) == []


@run_async
async def test_async_stream(c, uniq):
    s = c.stream(NS)
    assert [await s.append(uniq, f"r{i}") for i in range(3)] == [1, 2, 3]
    r = await s.read(uniq, from_offset=2)
    assert [x.payload for x in r.records] == [b"r1", b"r2"] and r.next_offset == 4
    g = await s.read_group(uniq, "g", "c1", count=10)
    assert await s.ack(uniq, "g", [x.offset for x in g]) == 3


@run_async
async def test_async_admin(c, uniq):
    assert NS in [n.name for n in await c.admin.list_namespaces()]
    assert (await c.admin.get_namespace(NS)).name == NS
    res = await c.admin.apply_namespace({"name": uniq, "primitives": ["stream"], "backend": {"type": "memstore"}})
    assert res.created and (await c.stream(uniq).append("s", b"x")) == 1
    assert await c.admin.delete_namespace(uniq) is True
    with pytest.raises(NotFound):
        await c.admin.get_namespace(uniq)
    assert (await c.admin.health()).status == "SERVING"


@run_async
async def test_async_errors(c, uniq):
    with pytest.raises(NotFound) as e:
        await c.keyvalue("py-no-such-namespace").get("k")
    assert e.value.reason == "PRISM_ERR_UNKNOWN_NAMESPACE"
    with pytest.raises(InvalidArgument):
        await c.keyvalue(NS).set("", b"x")
    with pytest.raises(DeadlineExceeded):
        await c.queue(NS).dequeue(uniq, wait=10, timeout=0.3)


@run_async
async def test_async_concurrent_calls(c, uniq):
    kv = c.keyvalue(NS)
    await asyncio.gather(*(kv.set(f"{uniq}/{i:02d}", str(i)) for i in range(50)))
    values = await asyncio.gather(*(kv.get(f"{uniq}/{i:02d}") for i in range(50)))
    assert values == [str(i).encode() for i in range(50)]
