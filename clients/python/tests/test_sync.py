"""The acceptance semantics through the sync client, against a live Prism."""
import threading
import time

import pytest

from prism_client import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PrismClient,
    PrismError,
    Unavailable,
)

from conftest import KV_NAMESPACES, NS, NS_KVONLY

pytestmark = pytest.mark.live


# ---------------------------------------------------------------- KeyValue


@pytest.fixture(params=KV_NAMESPACES)
def kv(request, client):
    return client.keyvalue(request.param)


def test_kv_set_get_exists_delete(kv, uniq):
    key = f"{uniq}/user:1"
    assert kv.get(key) is None and kv.get_item(key) is None and kv.exists(key) is False
    v1 = kv.set(key, b"\x00\xffbinary")
    assert kv.get(key) == b"\x00\xffbinary"
    v2 = kv.set(key, "Ada ✓")  # str is stored as UTF-8
    assert v2 > v1
    item = kv.get_item(key)
    assert item.value == "Ada ✓".encode() and item.version == v2
    assert kv.exists(key) is True
    assert kv.delete(key) is True
    assert kv.delete(key) is False
    assert kv.get(key) is None


def test_kv_empty_value_is_a_value(kv, uniq):
    kv.set(f"{uniq}e", b"")
    assert kv.get(f"{uniq}e") == b""


def test_kv_compare_and_set(kv, uniq, interfaces):
    if "keyvalue_cas" not in interfaces(kv.namespace):
        pytest.skip(f"{kv.namespace} does not claim keyvalue_cas")
    key = f"{uniq}cas"
    v1 = kv.set(key, b"a", if_absent=True)
    with pytest.raises(FailedPrecondition) as e:
        kv.set(key, b"b", if_absent=True)
    assert e.value.reason == "PRISM_ERR_CAS_CONFLICT"
    v2 = kv.set(key, b"b", expected_version=v1)
    with pytest.raises(FailedPrecondition):
        kv.set(key, b"c", expected_version=v1)  # stale version
    with pytest.raises(FailedPrecondition):
        kv.set(key, b"c", expected_version=0)  # 0: must be absent
    assert kv.get_item(key).version == v2 and kv.get(key) == b"b"


def test_kv_ttl(kv, uniq, interfaces):
    if "keyvalue_ttl" not in interfaces(kv.namespace):
        pytest.skip(f"{kv.namespace} does not claim keyvalue_ttl")
    key = f"{uniq}ttl"
    assert kv.ttl(key).found is False
    kv.set(key, b"x", ttl=60)
    t = kv.ttl(key)
    assert t.found and 0 < t.ttl_ms <= 60_000
    assert kv.persist(key) is True
    assert kv.ttl(key).ttl_ms is None and kv.ttl(key).found
    assert kv.expire(key, 1) is True
    assert kv.expire(f"{uniq}absent", 5) is False
    deadline = time.monotonic() + 5
    while kv.get(key) is not None:  # expiry, however the backend schedules it
        assert time.monotonic() < deadline, "key did not expire within 5 s of a 1 s TTL"
        time.sleep(0.1)
    assert kv.exists(key) is False


def test_kv_scan_is_complete_ordered_and_paged(kv, uniq):
    keys = [f"{uniq}/s/{i:03d}" for i in range(25)]
    kv.batch_set({k: k.encode() for k in keys})
    kv.set(f"{uniq}/other", b"-")
    items = list(kv.scan(f"{uniq}/s/", limit=10))
    assert [i.key for i in items] == keys
    assert all(i.value == i.key.encode() and i.version > 0 for i in items)
    assert all(i.value == b"" for i in kv.scan(f"{uniq}/s/", keys_only=True))
    page = kv.scan_page(f"{uniq}/s/", limit=10)
    assert len(page.items) == 10 and page.next_cursor
    rest = kv.scan_page(f"{uniq}/s/", cursor=page.next_cursor, limit=100)
    assert [i.key for i in page.items + rest.items] == keys and rest.next_cursor == ""


def test_kv_batches(kv, uniq):
    versions = kv.batch_set([(f"{uniq}b1", b"1"), (f"{uniq}b2", "2")])
    assert len(versions) == 2 and all(v > 0 for v in versions)
    assert kv.batch_get([f"{uniq}b2", f"{uniq}nope", f"{uniq}b1"]) == [b"2", None, b"1"]
    assert kv.batch_delete([f"{uniq}b1", f"{uniq}b2", f"{uniq}nope"]) == 2


def test_kv_idempotent_set(kv, uniq, interfaces):
    if "keyvalue_idempotent" not in interfaces(kv.namespace):
        pytest.skip(f"{kv.namespace} does not claim keyvalue_idempotent")
    key = f"{uniq}idem"
    v1 = kv.set(key, b"once", idempotency_key=f"{uniq}-k")
    assert kv.set(key, b"once", idempotency_key=f"{uniq}-k") == v1  # the retry: the first result, no second write
    assert kv.get_item(key).version == v1
    assert kv.set(key, b"once") > v1  # without a key: a new write
    assert kv.delete(key, idempotency_key=f"{uniq}-d") is True
    assert kv.delete(key, idempotency_key=f"{uniq}-d") is True  # the first call's result, though the key is gone now
    assert kv.delete(key) is False


# ---------------------------------------------------------------- PubSub


def test_subscribe_receives_publish(client, uniq):
    ps = client.pubsub(NS)
    with ps.subscribe(f"{uniq}.orders.*") as sub:  # returns once live
        ps.publish(f"{uniq}.orders.a.deep", b"not matched by *")
        mid = ps.publish(f"{uniq}.orders.created", b"order 1", {"source": "test"})
        msg = next(sub)
        assert (msg.topic, msg.payload, msg.attributes, msg.message_id) == (f"{uniq}.orders.created", b"order 1", {"source": "test"}, mid)
        assert msg.publish_time_ms > 0
    assert list(sub) == []  # closed: iteration ends


def test_subscribe_wildcard_rest(client, uniq):
    ps = client.pubsub(NS)
    sub = ps.subscribe(f"{uniq}.>")
    try:
        for topic in (f"{uniq}.a", f"{uniq}.a.b.c"):
            ps.publish(topic, topic)
        assert [next(sub).topic for _ in range(2)] == [f"{uniq}.a", f"{uniq}.a.b.c"]
    finally:
        sub.close()


def test_subscribe_close_from_another_thread(client, uniq):
    sub = client.pubsub(NS).subscribe(f"{uniq}.quiet")
    timer = threading.Timer(0.2, sub.close)
    timer.start()
    assert list(sub) == []  # a blocked iteration ends when closed


def test_idempotent_publish(client, uniq, interfaces):
    if "pubsub_idempotent" not in interfaces(NS):
        pytest.skip(f"{NS} does not claim pubsub_idempotent")
    ps = client.pubsub(NS)
    with ps.subscribe(f"{uniq}.*") as sub:
        first = ps.publish(f"{uniq}.t", b"once", idempotency_key=f"{uniq}-k")
        assert ps.publish(f"{uniq}.t", b"once", idempotency_key=f"{uniq}-k") == first
        ps.publish(f"{uniq}.end", b"sentinel")
        assert [next(sub).message_id, next(sub).topic] == [first, f"{uniq}.end"]  # the retry delivered nothing


def test_subscribe_errors(client):
    with pytest.raises(NotFound):
        client.pubsub("py-no-such-namespace").subscribe("a.b")
    with pytest.raises(FailedPrecondition):
        client.pubsub(NS_KVONLY).subscribe("a.b")


# ---------------------------------------------------------------- Queue


def test_queue_enqueue_dequeue_ack(client, uniq):
    q = client.queue(NS)
    mid = q.enqueue(uniq, b"job 1", attributes={"kind": "mail"})
    [m] = q.dequeue(uniq, wait=2)
    assert (m.message_id, m.payload, m.attributes, m.delivery_count) == (mid, b"job 1", {"kind": "mail"}, 1)
    assert m.receipt and m.enqueued_at_ms > 0
    q.ack(uniq, m.receipt)
    assert q.dequeue(uniq) == []
    with pytest.raises(FailedPrecondition) as e:
        q.ack(uniq, m.receipt)  # acked: the receipt is stale
    assert e.value.reason == "PRISM_ERR_STALE_RECEIPT"


def test_queue_enqueue_many_and_ack_many(client, uniq):
    q = client.queue(NS)
    ids = q.enqueue_many(uniq, [b"a", "b", {"data": b"c", "attributes": {"k": "v"}}])
    assert len(ids) == 3 and all(isinstance(i, str) and i for i in ids)
    got = q.dequeue(uniq, max_messages=10)
    assert [m.payload for m in got] == [b"a", b"b", b"c"]
    assert [m.message_id for m in got] == ids
    assert got[2].attributes == {"k": "v"}
    q.ack(uniq, got[1].receipt)
    res = q.ack_many(uniq, [m.receipt for m in got])
    assert res[0] is None and res[2] is None
    assert isinstance(res[1], FailedPrecondition) and res[1].reason == "PRISM_ERR_STALE_RECEIPT"
    assert q.dequeue(uniq) == []
    with pytest.raises(InvalidArgument):
        q.ack_many(uniq, ["not-a-receipt"])  # every entry failed: the call raises


def test_queue_max_messages(client, uniq):
    q = client.queue(NS)
    for i in range(3):
        q.enqueue(uniq, str(i))
    got = q.dequeue(uniq, max_messages=10)
    assert sorted(m.payload for m in got) == [b"0", b"1", b"2"]


def test_queue_redelivery_after_visibility_timeout_and_extend(client, uniq):
    q = client.queue(NS)
    q.enqueue(uniq, b"a")
    q.enqueue(uniq, b"b")
    leased = {m.payload: m for m in q.dequeue(uniq, max_messages=2, visibility_timeout=1)}
    assert set(leased) == {b"a", b"b"}
    q.extend_visibility(uniq, leased[b"b"].receipt, 30)
    [again] = q.dequeue(uniq, max_messages=10, wait=5)  # "a" comes back once its 1 s lease ends
    assert again.payload == b"a" and again.delivery_count == 2 and again.receipt != leased[b"a"].receipt
    # "b"'s lease ended at the same moment as "a"'s, but was extended: it stays leased.
    assert q.dequeue(uniq, max_messages=10) == []
    with pytest.raises(FailedPrecondition):
        q.ack(uniq, leased[b"a"].receipt)  # redelivered: the old receipt is stale
    q.ack(uniq, again.receipt)
    q.ack(uniq, leased[b"b"].receipt)


def test_queue_nack_and_dead_letter(client, uniq):
    # NS has max_deliveries 2: a message nacked twice goes to <queue>.dlq.
    q = client.queue(NS)
    mid = q.enqueue(uniq, b"poison")
    [m1] = q.dequeue(uniq)
    q.nack(uniq, m1.receipt)  # visible again at once
    [m2] = q.dequeue(uniq, wait=2)
    assert m2.message_id == mid and m2.delivery_count == 2
    q.nack(uniq, m2.receipt)
    assert q.dequeue(uniq) == []  # nacked with no delay, it would be visible at once had it stayed
    [dead] = q.dequeue(f"{uniq}.dlq", wait=2)
    assert dead.payload == b"poison"
    q.ack(f"{uniq}.dlq", dead.receipt)


def test_queue_idempotent_enqueue(client, uniq, interfaces):
    if "queue_idempotent" not in interfaces(NS):
        pytest.skip(f"{NS} does not claim queue_idempotent")
    q = client.queue(NS)
    first = q.enqueue(uniq, b"once", idempotency_key=f"{uniq}-k")
    assert q.enqueue(uniq, b"once", idempotency_key=f"{uniq}-k") == first
    assert [m.message_id for m in q.dequeue(uniq, max_messages=10)] == [first]


# ---------------------------------------------------------------- Stream


def test_stream_append_read(client, uniq):
    s = client.stream(NS)
    offsets = [s.append(uniq, f"r{i}", {"i": str(i)}) for i in range(5)]
    assert offsets == sorted(offsets) and offsets[0] == 1
    r = s.read(uniq, limit=3)
    assert [x.payload for x in r.records] == [b"r0", b"r1", b"r2"] and r.records[1].attributes == {"i": "1"}
    rest = s.read(uniq, from_offset=r.next_offset)
    assert [x.offset for x in rest.records] == offsets[3:]
    assert all(x.timestamp_ms > 0 for x in rest.records)


def test_idempotent_append(client, uniq, interfaces):
    if "stream_idempotent" not in interfaces(NS):
        pytest.skip(f"{NS} does not claim stream_idempotent")
    s = client.stream(NS)
    first = s.append(uniq, b"once", idempotency_key=f"{uniq}-k")
    assert s.append(uniq, b"once", idempotency_key=f"{uniq}-k") == first
    assert [r.payload for r in s.read(uniq).records] == [b"once"]


def test_stream_consumer_group(client, uniq):
    # NS has stream_claim_timeout_seconds 1: unacked records are redelivered after it.
    s = client.stream(NS)
    for i in range(4):
        s.append(uniq, f"e{i}")
    a = s.read_group(uniq, "billing", "worker-a", count=2)
    b = s.read_group(uniq, "billing", "worker-b", count=10)
    assert [r.payload for r in a + b] == [b"e0", b"e1", b"e2", b"e3"] and all(r.delivery_count == 1 for r in a + b)
    assert s.ack(uniq, "billing", [r.offset for r in a + b[1:]]) == 3
    again = s.read_group(uniq, "billing", "worker-c", count=10, block_ms=5000)  # b[0] was never acked
    assert [(r.offset, r.delivery_count) for r in again] == [(b[0].offset, 2)]
    assert s.ack(uniq, "billing", [b[0].offset]) == 1
    # another group starts at the oldest record
    assert len(s.read_group(uniq, "audit", "x", count=10)) == 4


# ---------------------------------------------------------------- Admin


def test_admin_list_get(client):
    names = [n.name for n in client.admin.list_namespaces()]
    assert NS in names and NS_KVONLY in names
    info = client.admin.get_namespace(NS)
    assert info.name == NS and set(info.primitives) == {"keyvalue", "pubsub", "queue", "stream"}
    assert info.backend_type and "keyvalue_basic" in info.interfaces and info.revision > 0
    assert [s.slot for s in info.slots] == ["keyvalue", "pubsub", "queue", "stream"]
    assert client.admin.get_namespace(NS_KVONLY).primitives == ["keyvalue"]
    with pytest.raises(NotFound) as e:
        client.admin.get_namespace("py-no-such-namespace")
    assert e.value.reason == "PRISM_ERR_UNKNOWN_NAMESPACE"


def test_admin_apply_and_delete_namespace(client, uniq):
    entry = {"name": uniq, "primitives": ["keyvalue"], "backend": {"type": "memstore"}}
    dry = client.admin.apply_namespace(entry, dry_run=True)
    assert dry.applied is False and dry.namespace.name == uniq
    with pytest.raises(NotFound):
        client.admin.get_namespace(uniq)
    res = client.admin.apply_namespace(entry)
    assert res.applied and res.created and res.revision > 0
    client.keyvalue(uniq).set("k", b"v")  # served without restart
    assert client.keyvalue(uniq).get("k") == b"v"
    again = client.admin.apply_namespace(f"name: {uniq}\nprimitives: [keyvalue, queue]\nbackend: {{ type: memstore }}\n")  # YAML text form
    assert again.created is False and again.revision > res.revision and "queue" in again.namespace.primitives
    assert uniq in [n.name for n in client.admin.list_namespaces()]
    assert client.admin.delete_namespace(uniq) is True
    assert client.admin.delete_namespace(uniq) is False
    with pytest.raises(NotFound):
        client.keyvalue(uniq).get("k")


def test_admin_apply_invalid_namespace(client, uniq):
    with pytest.raises(InvalidArgument) as e:
        client.admin.apply_namespace({"name": uniq, "backend": {"type": "no-such-driver"}})
    assert "no-such-driver" in e.value.message


def test_admin_backends_patterns_health(client, uniq):
    assert "memstore" in [b.type for b in client.admin.list_backends()]
    assert "keyvalue" in [p.name for p in client.admin.list_patterns()]
    res = client.admin.apply_backend(uniq, {"type": "memstore"})
    assert res.applied and res.backend.name == uniq and res.backend.type == "memstore"
    assert uniq in [b.name for b in client.admin.list_backend_instances()]
    assert client.admin.delete_backend(uniq) is True
    h = client.admin.health()
    assert h.status == "SERVING" and h.version and any(b.namespace == NS for b in h.backends)


def test_low_level_call(client, uniq):
    client.keyvalue(NS).set(uniq, b"raw")
    assert client.call("KeyValue", "Get", {"namespace": NS, "key": uniq}) == {"found": True, "value": b"raw", "version": 1}


# ---------------------------------------------------------------- errors


def test_unknown_namespace_is_not_found(client):
    with pytest.raises(NotFound) as e:
        client.keyvalue("py-no-such-namespace").get("k")
    err = e.value
    assert isinstance(err, PrismError) and err.code_name == "NOT_FOUND" and err.code_value == 5
    assert err.reason == "PRISM_ERR_UNKNOWN_NAMESPACE" and "py-no-such-namespace" in err.message


def test_bad_argument_is_invalid_argument(client):
    with pytest.raises(InvalidArgument) as e:
        client.keyvalue(NS).set("", b"x")
    assert e.value.message.startswith("key")
    with pytest.raises(InvalidArgument):
        client.keyvalue(NS).expire("k", 0)  # ttl_seconds must be > 0
    with pytest.raises(TypeError):
        client.keyvalue(NS).set("k", 42)  # refused before any call


def test_primitive_not_served_is_failed_precondition(client):
    with pytest.raises(FailedPrecondition) as e:
        client.queue(NS_KVONLY).enqueue("q", b"x")
    assert e.value.reason == "PRISM_ERR_PRIMITIVE_NOT_SERVED"


def test_deadline(client, uniq):
    t0 = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        client.queue(NS).dequeue(uniq, wait=10, timeout=0.3)
    assert time.monotonic() - t0 < 5


def test_unreachable_is_unavailable():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # A Get is retried once the channel is back: here it never is, so after the deadline it is Unavailable.
    with PrismClient(f"127.0.0.1:{port}", timeout=1) as c:
        with pytest.raises(Unavailable) as e:
            c.keyvalue(NS).get("k")
        assert "not reachable again" in str(e.value)
    with PrismClient(f"127.0.0.1:{port}", timeout=5, retry=False) as c:
        with pytest.raises(Unavailable):
            c.keyvalue(NS).get("k")
