/**
 * Driver-level checks for memstore with a ManualClock: time moves only when a
 * test advances it, so every TTL / visibility / retention assertion is exact.
 */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { ManualClock } from "../../src/core/clock.js";
import { PrismError } from "../../src/core/errors.js";
import { INTERFACES } from "../../src/core/interfaces.js";
import { DEFAULT_LIMITS } from "../../src/config/schema.js";
import type { NamespaceLimits, PubSubMessage, QueueMessage } from "../../src/backends/driver.js";
import { driver, MemstoreInstance } from "../../src/backends/memstore/index.js";
import { optionsSchema } from "../../src/backends/memstore/options.js";
import { compareUtf8 } from "../../src/backends/memstore/sorted-keys.js";

const enc = (s: string) => Buffer.from(s);
const dec = (b: Uint8Array) => Buffer.from(b).toString();

function open(t: { after(fn: () => Promise<void>): void }, limits: Partial<NamespaceLimits> = {}) {
  const clock = new ManualClock();
  const inst = driver.create({}, { clock, log: () => {} }) as MemstoreInstance;
  t.after(() => inst.close());
  const name = `ns-${randomUUID()}`;
  const stores = inst.namespace(name, { ...DEFAULT_LIMITS, ...limits });
  return { clock, inst, name, stores, kv: stores.keyvalue!, q: stores.queue!, s: stores.stream! };
}

function isReason(reason: string) {
  return (err: unknown) => err instanceof PrismError && err.reason === reason;
}
const stale = isReason("PRISM_ERR_STALE_RECEIPT");
const cas = isReason("PRISM_ERR_CAS_CONFLICT");

const deq = (visibilityTimeoutMs = 1000, maxMessages = 10, waitMs = 0, signal?: AbortSignal) => ({ maxMessages, visibilityTimeoutMs, waitMs, signal });

describe("memstore driver", () => {
  test("claims every interface but keyvalue_outbox (not durable) and validates options", () => {
    assert.deepEqual([...driver.interfaces].sort(), INTERFACES.filter((i) => i !== "keyvalue_outbox").sort());
    assert.ok(optionsSchema.safeParse({}).success);
    assert.ok(optionsSchema.safeParse({ sweep_interval_ms: 500 }).success);
    assert.equal(optionsSchema.safeParse({ bogus: 1 }).success, false);
  });

  test("health is ok until closed", async (t) => {
    const { inst } = open(t);
    assert.equal((await inst.health()).ok, true);
    await inst.close();
    assert.equal((await inst.health()).ok, false);
    await inst.close(); // idempotent
  });
});

describe("memstore keyvalue", () => {
  test("TTL expiry is exact and hides the key from every read", async (t) => {
    const { clock, kv } = open(t);
    await kv.set("k", enc("v"), { ttlMs: 1000 });
    await kv.set("other", enc("o"), {});
    clock.advance(999);
    assert.equal(dec((await kv.get("k"))!.value), "v");
    assert.deepEqual(await kv.ttl!("k"), { ttlMs: 1 });
    clock.advance(1);
    assert.equal(await kv.get("k"), null);
    assert.equal(await kv.exists("k"), false);
    assert.deepEqual(await kv.batchGet!(["k", "other"]).then((r) => r.map((x) => x && dec(x.value))), [null, "o"]);
    assert.deepEqual((await kv.scan!("", "", 100, true)).items.map((i) => i.key), ["other"]);
    assert.equal(await kv.ttl!("k"), null);
    assert.equal(await kv.delete("k"), false);
  });

  test("a write replaces the TTL; expire and persist change it", async (t) => {
    const { clock, kv } = open(t);
    await kv.set("k", enc("1"), { ttlMs: 1000 });
    clock.advance(600);
    await kv.set("k", enc("2"), { ttlMs: 1000 }); // reset: now expires at 1600
    clock.advance(600);
    assert.equal(dec((await kv.get("k"))!.value), "2");
    await kv.set("k", enc("3"), {}); // no ttl: TTL removed
    assert.deepEqual(await kv.ttl!("k"), { ttlMs: null });
    clock.advance(10_000);
    assert.equal(dec((await kv.get("k"))!.value), "3");

    assert.equal(await kv.expire!("k", 500), true);
    assert.equal(await kv.expire!("missing", 500), false);
    assert.deepEqual(await kv.ttl!("k"), { ttlMs: 500 });
    assert.equal(await kv.persist!("k"), true);
    clock.advance(1000);
    assert.equal(await kv.exists("k"), true);
    await kv.expire!("k", 10);
    clock.advance(10);
    assert.equal(await kv.exists("k"), false);
    assert.equal(await kv.persist!("k"), false);
  });

  test("the sweep frees expired keys from memory", async (t) => {
    const { clock, inst, name, kv } = open(t);
    for (let i = 0; i < 100; i++) await kv.set(`t${i}`, enc("x"), { ttlMs: 1000 + i });
    for (let i = 0; i < 10; i++) await kv.set(`p${i}`, enc("x"), {});
    assert.deepEqual(inst.kvStats(name), { keys: 110, indexed: 110, expiring: 100 });
    clock.advance(1050);
    assert.equal(inst.sweep(), 51); // t0..t50 expire at <= 1050
    assert.deepEqual(inst.kvStats(name), { keys: 59, indexed: 59, expiring: 49 });
    clock.advance(1000);
    assert.equal(inst.sweep(), 49);
    assert.deepEqual(inst.kvStats(name), { keys: 10, indexed: 10, expiring: 0 });
    assert.equal(inst.sweep(), 0);
  });

  test("overwritten or persisted keys leave the expiry heap", async (t) => {
    const { clock, inst, name, kv } = open(t);
    for (let i = 0; i < 50; i++) await kv.set("same", enc(String(i)), { ttlMs: 1000 });
    assert.equal(inst.kvStats(name)!.expiring, 1);
    await kv.persist!("same");
    assert.equal(inst.kvStats(name)!.expiring, 0);
    clock.advance(5000);
    assert.equal(inst.sweep(), 0);
    assert.equal(await kv.exists("same"), true);
  });

  test("versions and compare-and-set", async (t) => {
    const { clock, kv } = open(t);
    assert.equal(await kv.set("k", enc("a"), {}), 1);
    assert.equal(await kv.set("k", enc("b"), {}), 2);
    assert.equal(await kv.set("k", enc("c"), { expectedVersion: 2 }), 3);
    await assert.rejects(kv.set("k", enc("d"), { expectedVersion: 2 }), cas);
    await assert.rejects(kv.set("k", enc("d"), { ifAbsent: true }), cas);
    await assert.rejects(kv.set("k", enc("d"), { expectedVersion: 0 }), cas);
    assert.equal(dec((await kv.get("k"))!.value), "c");
    assert.equal((await kv.get("k"))!.version, 3);

    await assert.rejects(kv.set("new", enc("x"), { expectedVersion: 1 }), cas);
    assert.equal(await kv.set("new", enc("x"), { expectedVersion: 0 }), 1);
    assert.equal(await kv.set("new2", enc("x"), { ifAbsent: true }), 1);

    // Documented: a key written again after delete or expiry restarts at 1.
    assert.equal(await kv.delete("k"), true);
    assert.equal(await kv.set("k", enc("e"), { ifAbsent: true }), 1);
    await kv.set("t", enc("x"), { ttlMs: 10 });
    clock.advance(10);
    assert.equal(await kv.set("t", enc("y"), { ifAbsent: true }), 1);
  });

  test("values are copied in and out", async (t) => {
    const { kv } = open(t);
    const buf = enc("hello");
    await kv.set("k", buf, {});
    buf.fill(0);
    const got = (await kv.get("k"))!.value;
    assert.equal(dec(got), "hello");
    got.fill(0);
    assert.equal(dec((await kv.get("k"))!.value), "hello");
  });

  test("batch operations", async (t) => {
    const { kv } = open(t);
    assert.deepEqual(await kv.batchSet!([{ key: "a", value: enc("1") }, { key: "b", value: enc("2") }, { key: "a", value: enc("3") }], undefined), [1, 1, 2]);
    const got = await kv.batchGet!(["a", "zz", "b"]);
    assert.deepEqual(got.map((r) => r && [dec(r.value), r.version]), [["3", 2], null, ["2", 1]]);
    assert.equal(await kv.batchDelete!(["a", "zz", "b", "a"]), 2);
    assert.equal(await kv.exists("a"), false);
  });

  test("scan pages are complete and duplicate-free while keys are inserted between pages", async (t) => {
    const { kv } = open(t);
    const key = (i: number) => `p:${String(i).padStart(4, "0")}`;
    const initial = new Set<string>();
    for (let i = 0; i < 400; i += 2) {
      await kv.set(key(i), enc("v"), {});
      initial.add(key(i));
    }
    await kv.set("o:outside", enc("v"), {});
    await kv.set("q:outside", enc("v"), {});
    await kv.set("p", enc("v"), {}); // the prefix itself is a key with the prefix
    initial.add("p");

    const seen: string[] = [];
    const insertedAfterCursor = new Set<string>();
    let cursor = "";
    let odd = 1;
    for (let page = 0; page < 200; page++) {
      const res = await kv.scan!("p", cursor, 7, false);
      for (const it of res.items) {
        seen.push(it.key);
        assert.equal(dec(it.value!), "v");
      }
      if (!res.nextCursor) break;
      cursor = res.nextCursor;
      // Between pages: one new key behind the cursor, one ahead of it.
      await kv.set(`p:${String(odd).padStart(4, "0")}`, enc("v"), {});
      odd += 2;
      const ahead = key(401 + page * 2);
      await kv.set(ahead, enc("v"), {});
      insertedAfterCursor.add(ahead);
    }
    assert.equal(new Set(seen).size, seen.length, "no duplicates");
    assert.deepEqual([...seen].sort(compareUtf8), seen, "in order");
    for (const k of initial) assert.ok(seen.includes(k), `missing ${k}`);
    for (const k of insertedAfterCursor) assert.ok(seen.includes(k), `missing ${k} inserted ahead of the cursor`);
    assert.ok(seen.every((k) => k.startsWith("p")));
  });

  test("scan matches a reference sort across many index chunks, with deletes", async (t) => {
    const { kv } = open(t);
    // Deterministic pseudo-random keys: enough to split the index's chunks many times.
    let x = 12345;
    const rnd = () => (x = (x * 1103515245 + 12345) % 2 ** 31);
    const live = new Set<string>();
    for (let i = 0; i < 6000; i++) {
      const k = `k:${rnd().toString(36)}${i % 7 === 0 ? "\u00e9" : ""}`;
      await kv.set(k, enc("v"), {});
      live.add(k);
    }
    const all = [...live];
    for (let i = 0; i < all.length; i += 3) {
      assert.equal(await kv.delete(all[i]!), true);
      live.delete(all[i]!);
    }
    const seen: string[] = [];
    let cursor = "";
    do {
      const page = await kv.scan!("k:", cursor, 333, true);
      seen.push(...page.items.map((i) => i.key));
      cursor = page.nextCursor;
    } while (cursor);
    assert.deepEqual(seen, [...live].sort(compareUtf8));
  });

  test("compareUtf8 agrees with comparing the UTF-8 bytes", () => {
    const samples = ["", "a", "ab", "a~", "\u007f", "\u0080", "\u07ff", "\u0800", "\ud7ff", "\ue000", "\uffff", "\u{10000}", "\u{1F600}", "\u{10FFFF}", "a\u{1F600}b", "a\uFFFFb"];
    for (const a of samples) {
      for (const b of samples) {
        assert.equal(Math.sign(compareUtf8(a, b)), Buffer.compare(Buffer.from(a), Buffer.from(b)), `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
      }
    }
  });

  test("scan order is UTF-8 byte order; keysOnly omits values; limit is honoured", async (t) => {
    const { kv } = open(t);
    const keys = ["a\u{1F600}", "a\uFFFF", "a~", "a", "ab"];
    for (const k of keys) await kv.set(k, enc(k), {});
    const page = await kv.scan!("a", "", 100, true);
    assert.deepEqual(page.items.map((i) => i.key), ["a", "ab", "a~", "a\uFFFF", "a\u{1F600}"]);
    assert.equal(page.nextCursor, "");
    assert.ok(page.items.every((i) => i.value === undefined && i.version === 1));
    const first = await kv.scan!("a", "", 2, false);
    assert.deepEqual(first.items.map((i) => i.key), ["a", "ab"]);
    assert.equal(first.nextCursor, "ab");
    const rest = await kv.scan!("a", first.nextCursor, 3, false);
    assert.deepEqual(rest.items.map((i) => i.key), ["a~", "a\uFFFF", "a\u{1F600}"]);
    assert.equal(rest.nextCursor, "");
  });

  test("namespaces are isolated even when one name prefixes the other", async (t) => {
    const clock = new ManualClock();
    const inst = driver.create({}, { clock, log: () => {} });
    t.after(() => inst.close());
    const users = inst.namespace("users", DEFAULT_LIMITS);
    const usersAbc = inst.namespace("usersAbc", DEFAULT_LIMITS);
    await users.keyvalue!.set("k1", enc("u"), {});
    await usersAbc.keyvalue!.set("k1", enc("ua"), {});
    await usersAbc.keyvalue!.set("Abc:k2", enc("ua"), {});
    assert.equal(dec((await users.keyvalue!.get("k1"))!.value), "u");
    assert.equal(dec((await usersAbc.keyvalue!.get("k1"))!.value), "ua");
    assert.deepEqual((await users.keyvalue!.scan!("", "", 100, true)).items.map((i) => i.key), ["k1"]);
    assert.deepEqual((await usersAbc.keyvalue!.scan!("", "", 100, true)).items.map((i) => i.key), ["Abc:k2", "k1"]);
    assert.equal(await users.keyvalue!.exists("Abc:k2"), false);

    await users.queue!.enqueue("jobs", enc("u"), {}, 0);
    assert.deepEqual(await usersAbc.queue!.dequeue("jobs", deq()), []);
    await users.stream!.append("log", enc("u"), {});
    assert.deepEqual(await usersAbc.stream!.read("log", 0, 10), []);

    const got: string[] = [];
    await usersAbc.pubsub!.subscribe(">", { onMessage: (m) => got.push(m.topic), onError: () => {} });
    await users.pubsub!.publish("a.b", enc("x"), {});
    assert.deepEqual(got, []);
  });
});

describe("memstore queue", () => {
  test("an unacked message is redelivered after its visibility timeout with a rising delivery count", async (t) => {
    const { clock, q } = open(t);
    const id = await q.enqueue("jobs", enc("work"), { a: "1" }, 0);
    const [m1] = await q.dequeue("jobs", deq(1000));
    assert.equal(m1!.messageId, id);
    assert.equal(m1!.deliveryCount, 1);
    assert.deepEqual(m1!.attributes, { a: "1" });
    assert.deepEqual(await q.dequeue("jobs", deq(1000)), []);
    clock.advance(999);
    assert.deepEqual(await q.dequeue("jobs", deq(1000)), []);
    clock.advance(1);
    const [m2] = await q.dequeue("jobs", deq(1000));
    assert.equal(m2!.messageId, id);
    assert.equal(m2!.deliveryCount, 2);
    assert.notEqual(m2!.receipt, m1!.receipt);
    assert.equal(dec(m2!.payload), "work");

    await assert.rejects(q.ack("jobs", m1!.receipt), stale);
    await assert.rejects(q.nack("jobs", m1!.receipt, 0), stale);
    await assert.rejects(q.extendVisibility!("jobs", m1!.receipt, 1000), stale);
    await q.ack("jobs", m2!.receipt);
    await assert.rejects(q.ack("jobs", m2!.receipt), stale);
    clock.advance(60_000);
    assert.deepEqual(await q.dequeue("jobs", deq(1000)), []);
    await assert.rejects(q.ack("jobs", "garbage"), isReason("PRISM_ERR_INVALID_ARGUMENT")); // malformed, not stale
    await assert.rejects(q.ack("other", m2!.receipt), stale);
  });

  test("ack after the lease expired but before redelivery is accepted", async (t) => {
    const { clock, q } = open(t);
    await q.enqueue("jobs", enc("x"), {}, 0);
    const [m] = await q.dequeue("jobs", deq(1000));
    clock.advance(5000);
    await q.ack("jobs", m!.receipt);
    assert.deepEqual(await q.dequeue("jobs", deq(1000)), []);
  });

  test("FIFO order and maxMessages", async (t) => {
    const { q } = open(t);
    for (const p of ["a", "b", "c", "d"]) await q.enqueue("jobs", enc(p), {}, 0);
    assert.deepEqual((await q.dequeue("jobs", deq(1000, 3))).map((m) => dec(m.payload)), ["a", "b", "c"]);
    assert.deepEqual((await q.dequeue("jobs", deq(1000, 3))).map((m) => dec(m.payload)), ["d"]);
  });

  test("zero visibility timeout never delivers one message twice in a call", async (t) => {
    const { q } = open(t);
    await q.enqueue("jobs", enc("a"), {}, 0);
    const got = await q.dequeue("jobs", deq(0, 10));
    assert.equal(got.length, 1);
  });

  test("extendVisibility prevents redelivery", async (t) => {
    const { clock, q } = open(t);
    await q.enqueue("jobs", enc("x"), {}, 0);
    const [m] = await q.dequeue("jobs", deq(1000));
    clock.advance(900);
    await q.extendVisibility!("jobs", m!.receipt, 1000);
    clock.advance(900);
    assert.deepEqual(await q.dequeue("jobs", deq(1000)), []);
    clock.advance(100);
    const [again] = await q.dequeue("jobs", deq(1000));
    assert.equal(again!.deliveryCount, 2);
  });

  test("nack makes the message visible again after the delay", async (t) => {
    const { clock, q } = open(t);
    await q.enqueue("jobs", enc("x"), {}, 0);
    const [m1] = await q.dequeue("jobs", deq(30_000));
    await q.nack("jobs", m1!.receipt, 5000);
    await assert.rejects(q.ack("jobs", m1!.receipt), stale);
    clock.advance(4999);
    assert.deepEqual(await q.dequeue("jobs", deq(30_000)), []);
    clock.advance(1);
    const [m2] = await q.dequeue("jobs", deq(30_000));
    assert.equal(m2!.deliveryCount, 2);
    await q.nack("jobs", m2!.receipt, 0);
    const [m3] = await q.dequeue("jobs", deq(30_000));
    assert.equal(m3!.deliveryCount, 3);
  });

  test("delayed enqueue is invisible until its delay passes", async (t) => {
    const { clock, q } = open(t);
    await q.enqueue("jobs", enc("later"), {}, 2000);
    await q.enqueue("jobs", enc("now"), {}, 0);
    assert.deepEqual((await q.dequeue("jobs", deq(60_000))).map((m) => dec(m.payload)), ["now"]);
    clock.advance(1999);
    assert.deepEqual(await q.dequeue("jobs", deq(60_000)), []);
    clock.advance(1);
    assert.deepEqual((await q.dequeue("jobs", deq(60_000))).map((m) => dec(m.payload)), ["later"]);
  });

  test("a message delivered maxDeliveries times moves to <queue>.dlq", async (t) => {
    const { clock, q } = open(t, { maxDeliveries: 3 });
    const id = await q.enqueue("jobs", enc("poison"), { k: "v" }, 0);
    let last: QueueMessage | undefined;
    for (let i = 1; i <= 3; i++) {
      [last] = await q.dequeue("jobs", deq(1000));
      assert.equal(last!.deliveryCount, i);
      if (i < 3) await q.nack("jobs", last!.receipt, 0);
    }
    clock.advance(1000); // third lease expires: due a fourth time
    assert.deepEqual(await q.dequeue("jobs", deq(1000)), []);
    await assert.rejects(q.ack("jobs", last!.receipt), stale);
    const [dead] = await q.dequeue("jobs.dlq", deq(1000));
    assert.ok(dead);
    assert.equal(dead.messageId, id);
    assert.equal(dec(dead.payload), "poison");
    assert.equal(dead.deliveryCount, 1);
    assert.equal(dead.attributes.k, "v");
    assert.equal(dead.attributes["prism-original-queue"], "jobs");
    assert.equal(dead.attributes["prism-delivery-count"], "3");
    assert.equal(dead.attributes["prism-dlq-reason"], "max-deliveries");
    await q.ack("jobs.dlq", dead.receipt);
  });

  test("a long-poll dequeue is woken by an enqueue", async (t) => {
    const { q } = open(t);
    const pending = q.dequeue("jobs", deq(1000, 10, 15_000));
    await new Promise((r) => setImmediate(r));
    await q.enqueue("jobs", enc("wake"), {}, 0);
    const got = await pending;
    assert.deepEqual(got.map((m) => dec(m.payload)), ["wake"]);
  });

  test("two long polls, two enqueues: each poller gets one", async (t) => {
    const { q } = open(t);
    const a = q.dequeue("jobs", deq(1000, 1, 15_000));
    const b = q.dequeue("jobs", deq(1000, 1, 15_000));
    await new Promise((r) => setImmediate(r));
    await q.enqueue("jobs", enc("1"), {}, 0);
    await q.enqueue("jobs", enc("2"), {}, 0);
    const got = [...(await a), ...(await b)].map((m) => dec(m.payload)).sort();
    assert.deepEqual(got, ["1", "2"]);
  });

  test("a long poll wakes when a delayed message becomes due (clock advance)", async (t) => {
    const { clock, q } = open(t);
    await q.enqueue("jobs", enc("delayed"), {}, 5000);
    const pending = q.dequeue("jobs", deq(1000, 10, 15_000));
    await new Promise((r) => setImmediate(r));
    clock.advance(5000);
    assert.deepEqual((await pending).map((m) => dec(m.payload)), ["delayed"]);
  });

  test("a long poll returns [] on abort, on timeout and on close", async (t) => {
    const { inst, q } = open(t);
    const ac = new AbortController();
    const aborted = q.dequeue("jobs", deq(1000, 10, 15_000, ac.signal));
    ac.abort();
    assert.deepEqual(await aborted, []);
    assert.deepEqual(await q.dequeue("jobs", deq(1000, 10, 20)), []);
    const closing = q.dequeue("jobs", deq(1000, 10, 15_000));
    await new Promise((r) => setImmediate(r));
    await inst.close();
    assert.deepEqual(await closing, []);
  });
});

describe("memstore stream", () => {
  test("offsets start at 1; read from 0 and replay from an offset", async (t) => {
    const { s } = open(t);
    for (let i = 1; i <= 10; i++) assert.equal(await s.append("log", enc(`r${i}`), { i: String(i) }), i);
    const all = await s.read("log", 0, 100);
    assert.deepEqual(all.map((r) => r.offset), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.deepEqual(all[3]!.attributes, { i: "4" });
    const mid = await s.read("log", 4, 3);
    assert.deepEqual(mid.map((r) => dec(r.payload)), ["r4", "r5", "r6"]);
    assert.deepEqual(await s.read("log", 11, 10), []);
    assert.deepEqual(await s.read("missing", 0, 10), []);
  });

  test("retention by count", async (t) => {
    const { s } = open(t, { streamMaxCount: 3 });
    for (let i = 1; i <= 5; i++) await s.append("log", enc(`r${i}`), {});
    assert.deepEqual((await s.read("log", 0, 100)).map((r) => r.offset), [3, 4, 5]);
    assert.deepEqual((await s.read("log", 1, 100)).map((r) => r.offset), [3, 4, 5]);
    assert.equal(await s.append("log", enc("r6"), {}), 6);
    assert.deepEqual((await s.read("log", 0, 100)).map((r) => r.offset), [4, 5, 6]);
  });

  test("retention by count keeps offsets addressable across compaction", async (t) => {
    const { s } = open(t, { streamMaxCount: 100 });
    for (let i = 1; i <= 3000; i++) await s.append("log", enc(`r${i}`), {});
    const recs = await s.read("log", 2950, 10);
    assert.deepEqual(recs.map((r) => dec(r.payload)), Array.from({ length: 10 }, (_, i) => `r${2950 + i}`));
    assert.equal((await s.read("log", 0, 1))[0]!.offset, 2901);
  });

  test("retention by age, on append and on read", async (t) => {
    const { clock, s } = open(t, { streamMaxAgeSeconds: 10 });
    await s.append("log", enc("old"), {});
    clock.advance(6000);
    await s.append("log", enc("new"), {});
    clock.advance(4000); // old is exactly 10 s old: kept
    assert.deepEqual((await s.read("log", 0, 10)).map((r) => dec(r.payload)), ["old", "new"]);
    clock.advance(1);
    assert.deepEqual((await s.read("log", 0, 10)).map((r) => dec(r.payload)), ["new"]);
    clock.advance(6000);
    assert.deepEqual(await s.read("log", 0, 10), []);
    assert.equal(await s.append("log", enc("next"), {}), 3);
  });

  test("consumer group: at-least-once, unacked records go to another consumer after the claim timeout", async (t) => {
    const { clock, s } = open(t, { streamClaimTimeoutSeconds: 30 });
    for (let i = 1; i <= 3; i++) await s.append("log", enc(`r${i}`), {});
    const first = await s.readGroup!("log", "g", "c1", 10, 0);
    assert.deepEqual(first.map((r) => [r.offset, r.deliveryCount]), [[1, 1], [2, 1], [3, 1]]);
    assert.equal(await s.ackGroup!("log", "g", [1]), 1);
    assert.equal(await s.ackGroup!("log", "g", [1, 99]), 0);
    assert.deepEqual(await s.readGroup!("log", "g", "c2", 10, 0), []);
    clock.advance(29_999);
    assert.deepEqual(await s.readGroup!("log", "g", "c2", 10, 0), []);
    clock.advance(1);
    await s.append("log", enc("r4"), {});
    const second = await s.readGroup!("log", "g", "c2", 10, 0);
    assert.deepEqual(second.map((r) => [r.offset, r.deliveryCount]), [[2, 2], [3, 2], [4, 1]]);
    assert.equal(dec(second[0]!.payload), "r2");
    assert.equal(await s.ackGroup!("log", "g", [2, 3, 4]), 3);
    clock.advance(120_000);
    assert.deepEqual(await s.readGroup!("log", "g", "c1", 10, 0), []);
  });

  test("groups are independent and start at the oldest retained record", async (t) => {
    const { s } = open(t, { streamMaxCount: 2 });
    for (let i = 1; i <= 5; i++) await s.append("log", enc(`r${i}`), {});
    assert.deepEqual((await s.readGroup!("log", "a", "c", 10, 0)).map((r) => r.offset), [4, 5]);
    assert.deepEqual((await s.readGroup!("log", "b", "c", 1, 0)).map((r) => r.offset), [4]);
    assert.deepEqual((await s.readGroup!("log", "b", "c", 1, 0)).map((r) => r.offset), [5]);
    assert.deepEqual(await s.readGroup!("log", "a", "c", 10, 0), []);
  });

  test("a blocking readGroup is woken by an append and returns [] on abort", async (t) => {
    const { s } = open(t);
    const pending = s.readGroup!("log", "g", "c", 10, 15_000);
    await new Promise((r) => setImmediate(r));
    await s.append("log", enc("hello"), {});
    assert.deepEqual((await pending).map((r) => dec(r.payload)), ["hello"]);
    const ac = new AbortController();
    const aborted = s.readGroup!("log", "g", "c", 10, 15_000, ac.signal);
    ac.abort();
    assert.deepEqual(await aborted, []);
  });
});

describe("memstore pubsub and namespace lifecycle", () => {
  test("wildcard delivery; closing the last stores of a namespace ends its subscriptions, data stays", async (t) => {
    const { inst, name, stores } = open(t);
    const got: PubSubMessage[] = [];
    const errs: Error[] = [];
    await stores.pubsub!.subscribe("orders.*", { onMessage: (m) => got.push(m), onError: (e) => errs.push(e) });
    await stores.pubsub!.publish("orders.eu", enc("1"), { a: "b" });
    await stores.pubsub!.publish("orders.eu.x", enc("2"), {});
    assert.deepEqual(got.map((m) => [m.topic, dec(m.payload), m.attributes.a]), [["orders.eu", "1", "b"]]);
    await stores.keyvalue!.set("k", enc("v"), {});

    // Re-applying opens a new view before closing the old one: subscriptions survive.
    const again = inst.namespace(name, DEFAULT_LIMITS);
    await stores.close!();
    assert.equal(errs.length, 0);
    await again.pubsub!.publish("orders.us", enc("3"), {});
    assert.equal(got.length, 2);
    assert.equal(dec((await again.keyvalue!.get("k"))!.value), "v");

    await again.close!();
    assert.equal(errs.length, 1);
  });
});
