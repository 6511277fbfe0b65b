// Driver-level tests for the sqlite backend: real SQLite files under os.tmpdir(), ManualClock for time.
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ManualClock } from "../../src/core/clock.js";
import { PrismError } from "../../src/core/errors.js";
import type { BackendInstance, NamespaceLimits, NamespaceStores, PubSubMessage } from "../../src/backends/driver.js";
import { driver } from "../../src/backends/sqlite/index.js";
import { optionsSchema } from "../../src/backends/sqlite/options.js";
import { prefixUpperBound } from "../../src/backends/sqlite/keyvalue.js";
import { SqliteInstance } from "../../src/backends/sqlite/instance.js";
import Database from "better-sqlite3";

const dir = mkdtempSync(join(tmpdir(), "prism-sqlite-test-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let fileSeq = 0;
const newPath = (): string => join(dir, `db-${process.pid}-${++fileSeq}.sqlite`);

const LIMITS: NamespaceLimits = {
  maxKeyBytes: 1024,
  maxValueBytes: 1 << 20,
  defaultTtlSeconds: 0,
  maxDeliveries: 3,
  visibilityTimeoutSeconds: 30,
  streamMaxCount: 0,
  streamMaxAgeSeconds: 0,
  streamClaimTimeoutSeconds: 10,
};

const logs: string[] = [];
function open(path: string, clock: ManualClock): BackendInstance {
  const opts = optionsSchema.parse({ path });
  return driver.create(opts, { clock, log: (l, m) => logs.push(`${l} ${m}`) });
}

/** A fresh file, instance and namespace; closes the instance after the test. */
async function withNs(
  t: { after: (fn: () => Promise<void>) => void },
  limits: Partial<NamespaceLimits> = {},
  ns = "ns1",
): Promise<{ s: Required<Omit<NamespaceStores, "close">>; clock: ManualClock; inst: BackendInstance; path: string }> {
  const clock = new ManualClock();
  const path = newPath();
  const inst = open(path, clock);
  t.after(() => inst.close());
  const s = inst.namespace(ns, { ...LIMITS, ...limits }) as Required<Omit<NamespaceStores, "close">>;
  return { s, clock, inst, path };
}

const b = (s: string): Buffer => Buffer.from(s);
const str = (u: Uint8Array | undefined): string => Buffer.from(u ?? []).toString();

async function rejectsWith(p: Promise<unknown>, reason: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof PrismError && e.reason === reason);
}

describe("sqlite driver: options and claims", () => {
  test("claims every interface and validates options", () => {
    assert.ok(driver.interfaces.includes("queue_dead_letter"));
    assert.equal(driver.interfaces.length, 19); // every interface, keyvalue_outbox and the four *_idempotent included
    assert.equal(optionsSchema.safeParse({ path: "/tmp/x.db", busy_timeout_ms: 100 }).success, true);
    assert.equal(optionsSchema.safeParse({}).success, false);
    assert.equal(optionsSchema.safeParse({ path: "/tmp/x.db", bogus: 1 }).success, false);
    assert.equal(optionsSchema.safeParse({ path: "/tmp/x.db", synchronous: "off" }).success, false);
  });

  test("prefixUpperBound increments the last code point", () => {
    assert.equal(prefixUpperBound(""), null);
    assert.equal(prefixUpperBound("ab"), "ac");
    assert.equal(prefixUpperBound("a\u{10FFFF}"), "b");
    assert.equal(prefixUpperBound("\u{10FFFF}"), null);
    assert.equal(prefixUpperBound("a\uD7FF"), "a\uE000");
  });
});

describe("sqlite driver: keyvalue", () => {
  test("set/get/delete/exists with rising versions", async (t) => {
    const { s } = await withNs(t);
    assert.equal(await s.keyvalue.get("k"), null);
    assert.equal(await s.keyvalue.set("k", b("v1"), {}), 1);
    assert.equal(await s.keyvalue.set("k", b("v2"), {}), 2);
    const r = await s.keyvalue.get("k");
    assert.equal(str(r?.value), "v2");
    assert.equal(r?.version, 2);
    assert.equal(await s.keyvalue.exists("k"), true);
    assert.equal(await s.keyvalue.delete("k"), true);
    assert.equal(await s.keyvalue.delete("k"), false);
    assert.equal(await s.keyvalue.exists("k"), false);
    assert.equal(await s.keyvalue.set("empty", new Uint8Array(0), {}), 1);
    assert.equal((await s.keyvalue.get("empty"))?.value.length, 0);
  });

  test("TTL: expired keys are invisible everywhere; a write replaces the TTL", async (t) => {
    const { s, clock, inst } = await withNs(t);
    const kv = s.keyvalue;
    await kv.set("t:a", b("a"), { ttlMs: 1000 });
    await kv.set("t:b", b("b"), {});
    assert.deepEqual(await kv.ttl!("t:a"), { ttlMs: 1000 });
    assert.deepEqual(await kv.ttl!("t:b"), { ttlMs: null });
    clock.advance(999);
    assert.equal(str((await kv.get("t:a"))?.value), "a");
    clock.advance(1);
    assert.equal(await kv.get("t:a"), null);
    assert.equal(await kv.exists("t:a"), false);
    assert.equal(await kv.ttl!("t:a"), null);
    assert.deepEqual(await kv.batchGet!(["t:a", "t:b"]).then((r) => r.map((x) => x && str(x.value))), [null, "b"]);
    assert.deepEqual((await kv.scan!("t:", "", 10, true)).items.map((i) => i.key), ["t:b"]);
    assert.equal(await kv.delete("t:a"), false);
    assert.equal(await kv.expire!("t:a", 1000), false);
    assert.equal(await kv.persist!("t:a"), false);
    // Writing over an expired key starts a fresh key.
    assert.equal(await kv.set("t:a", b("again"), {}), 1);

    // Overwrite without TTL removes it; overwrite with a TTL restarts it.
    await kv.set("t:c", b("c"), { ttlMs: 1000 });
    await kv.set("t:c", b("c2"), {});
    clock.advance(5000);
    assert.equal(str((await kv.get("t:c"))?.value), "c2");
    await kv.set("t:d", b("d"), { ttlMs: 1000 });
    clock.advance(800);
    await kv.set("t:d", b("d2"), { ttlMs: 1000 });
    clock.advance(800);
    assert.equal(str((await kv.get("t:d"))?.value), "d2");
    clock.advance(200);
    assert.equal(await kv.get("t:d"), null);

    // expire / persist
    assert.equal(await kv.expire!("t:b", 500), true);
    assert.deepEqual(await kv.ttl!("t:b"), { ttlMs: 500 });
    assert.equal(await kv.persist!("t:b"), true);
    clock.advance(1000);
    assert.equal(await kv.exists("t:b"), true);
    assert.equal(await kv.expire!("t:b", 10), true);
    clock.advance(10);
    assert.equal(await kv.exists("t:b"), false);

    // The sweeper physically removes expired rows.
    assert.ok((inst as SqliteInstance).sweep() >= 1);
  });

  test("CAS: ifAbsent and expectedVersion conflict atomically", async (t) => {
    const { s, clock } = await withNs(t);
    const kv = s.keyvalue;
    assert.equal(await kv.set("c", b("1"), { ifAbsent: true }), 1);
    await rejectsWith(kv.set("c", b("x"), { ifAbsent: true }), "PRISM_ERR_CAS_CONFLICT");
    await rejectsWith(kv.set("c", b("x"), { expectedVersion: 0 }), "PRISM_ERR_CAS_CONFLICT");
    await rejectsWith(kv.set("c", b("x"), { expectedVersion: 2 }), "PRISM_ERR_CAS_CONFLICT");
    assert.equal(await kv.set("c", b("2"), { expectedVersion: 1 }), 2);
    await rejectsWith(kv.set("c", b("3"), { expectedVersion: 1 }), "PRISM_ERR_CAS_CONFLICT");
    assert.equal(str((await kv.get("c"))?.value), "2");
    assert.equal(await kv.set("fresh", b("1"), { expectedVersion: 0 }), 1);
    await rejectsWith(kv.set("missing", b("1"), { expectedVersion: 3 }), "PRISM_ERR_CAS_CONFLICT");
    // An expired key counts as absent.
    await kv.set("e", b("1"), { ttlMs: 10 });
    clock.advance(10);
    assert.equal(await kv.set("e", b("2"), { ifAbsent: true }), 1);
    // Concurrent CAS on one version: exactly one wins.
    const results = await Promise.allSettled([1, 2, 3, 4].map((i) => kv.set("c", b(`w${i}`), { expectedVersion: 2 })));
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
  });

  test("batch get/set/delete", async (t) => {
    const { s, clock } = await withNs(t);
    const kv = s.keyvalue;
    assert.deepEqual(await kv.batchSet!([{ key: "x", value: b("1") }, { key: "y", value: b("2") }], 1000), [1, 1]);
    assert.deepEqual(await kv.batchSet!([{ key: "x", value: b("3") }], undefined), [2]);
    assert.deepEqual((await kv.batchGet!(["x", "y", "z"])).map((r) => r && [str(r.value), r.version]), [["3", 2], ["2", 1], null]);
    clock.advance(1000);
    assert.equal(await kv.exists("y"), false);
    assert.equal(await kv.exists("x"), true);
    assert.equal(await kv.batchDelete!(["x", "y", "z"]), 1);
  });

  test("scan: byte order, prefix bounds, keysOnly", async (t) => {
    const { s } = await withNs(t);
    const kv = s.keyvalue;
    const keys = ["p/\u{1F600}", "p/\uFFFF", "p/z", "p/é", "p/a", "p", "q", "o/x", "p0"];
    for (const k of keys) await kv.set(k, b(k), {});
    const page = await kv.scan!("p/", "", 100, false);
    // UTF-8 byte order (= code point order), not UTF-16 order.
    assert.deepEqual(page.items.map((i) => i.key), ["p/a", "p/z", "p/é", "p/\uFFFF", "p/\u{1F600}"]);
    assert.equal(page.nextCursor, "");
    assert.equal(str(page.items[0]!.value), "p/a");
    const ko = await kv.scan!("", "", 100, true);
    assert.equal(ko.items.length, keys.length);
    assert.equal(ko.items[0]!.value, undefined);
    assert.equal(ko.items[0]!.version, 1);
  });

  test("scan pagination is complete and duplicate-free under concurrent inserts", async (t) => {
    const { s } = await withNs(t);
    const kv = s.keyvalue;
    const original: string[] = [];
    for (let i = 0; i < 60; i++) original.push(`s:${String(i * 10).padStart(4, "0")}`);
    await kv.batchSet!(original.map((key) => ({ key, value: b(key) })), undefined);
    await kv.set("other", b("x"), {});
    const seen: string[] = [];
    const inserted: string[] = [];
    let cursor = "";
    let round = 0;
    for (;;) {
      const page = await kv.scan!("s:", cursor, 7, true);
      seen.push(...page.items.map((i) => i.key));
      if (!page.nextCursor) break;
      cursor = page.nextCursor;
      // Insert behind and ahead of the cursor while scanning, and overwrite seen keys.
      const k = Number(cursor.slice(2));
      const behind = `s:${String(k - 5).padStart(4, "0")}`;
      const ahead = `s:${String(k + 5).padStart(4, "0")}`;
      await kv.set(behind, b("new"), {});
      await kv.set(ahead, b("new"), {});
      await kv.set(cursor, b("overwritten"), {});
      inserted.push(ahead);
      assert.ok(++round < 100);
    }
    assert.equal(new Set(seen).size, seen.length, "no duplicates");
    assert.deepEqual([...seen].sort((x, y) => Buffer.compare(b(x), b(y))), seen, "in byte order");
    for (const k of original) assert.ok(seen.includes(k), `missing ${k}`);
    for (const k of inserted) assert.ok(seen.includes(k), `missing inserted-ahead ${k}`);
    assert.ok(!seen.includes("other"));
  });

  test("namespaces are isolated, including a name that prefixes another", async (t) => {
    const clock = new ManualClock();
    const inst = open(newPath(), clock);
    t.after(() => inst.close());
    const users = inst.namespace("users", LIMITS);
    const usersAbc = inst.namespace("usersAbc", LIMITS);
    await users.keyvalue!.set("k", b("u"), {});
    await usersAbc.keyvalue!.set("k", b("ua"), {});
    await usersAbc.keyvalue!.set("Abc:k", b("ua2"), {});
    assert.equal(str((await users.keyvalue!.get("k"))?.value), "u");
    assert.equal(str((await usersAbc.keyvalue!.get("k"))?.value), "ua");
    assert.deepEqual((await users.keyvalue!.scan!("", "", 100, true)).items.map((i) => i.key), ["k"]);
    assert.equal(await users.keyvalue!.exists("Abc:k"), false);
    assert.equal(await users.keyvalue!.batchDelete!(["Abc:k"]), 0);

    await usersAbc.queue!.enqueue("q", b("m"), {}, 0);
    assert.deepEqual(await users.queue!.dequeue("q", { maxMessages: 10, visibilityTimeoutMs: 1000, waitMs: 0 }), []);
    const [m] = await usersAbc.queue!.dequeue("q", { maxMessages: 10, visibilityTimeoutMs: 1000, waitMs: 0 });
    await rejectsWith(users.queue!.ack("q", m!.receipt), "PRISM_ERR_STALE_RECEIPT");
    await usersAbc.queue!.ack("q", m!.receipt);

    await usersAbc.stream!.append("s", b("r"), {});
    assert.deepEqual(await users.stream!.read("s", 0, 10), []);
    assert.equal(await users.stream!.append("s", b("r"), {}), 1);
    assert.deepEqual(await users.stream!.readGroup!("s", "g", "c", 10, 0).then((r) => r.map((x) => str(x.payload))), ["r"]);

    const got: string[] = [];
    await users.pubsub!.subscribe("t.>", { onMessage: (msg) => got.push(str(msg.payload)), onError: () => {} });
    await usersAbc.pubsub!.publish("t.x", b("abc"), {});
    await users.pubsub!.publish("t.x", b("users"), {});
    assert.deepEqual(got, ["users"]);
  });
});

describe("sqlite driver: queue", () => {
  const opts = (visibilityTimeoutMs = 1000, maxMessages = 10) => ({ maxMessages, visibilityTimeoutMs, waitMs: 0 });

  test("enqueue/dequeue/ack in order with attributes", async (t) => {
    const { s } = await withNs(t);
    const q = s.queue;
    const id1 = await q.enqueue("jobs", b("one"), { a: "1" }, 0);
    const id2 = await q.enqueue("jobs", b("two"), {}, 0);
    assert.notEqual(id1, id2);
    const msgs = await q.dequeue("jobs", opts(1000, 1));
    assert.equal(msgs.length, 1);
    assert.equal(msgs[0]!.messageId, id1);
    assert.equal(str(msgs[0]!.payload), "one");
    assert.deepEqual(msgs[0]!.attributes, { a: "1" });
    assert.equal(msgs[0]!.deliveryCount, 1);
    const rest = await q.dequeue("jobs", opts());
    assert.deepEqual(rest.map((m) => m.messageId), [id2]);
    await q.ack("jobs", msgs[0]!.receipt);
    await rejectsWith(q.ack("jobs", msgs[0]!.receipt), "PRISM_ERR_STALE_RECEIPT");
    await rejectsWith(q.ack("jobs", "garbage"), "PRISM_ERR_INVALID_ARGUMENT"); // malformed, not stale
    await rejectsWith(q.ack("other", rest[0]!.receipt), "PRISM_ERR_STALE_RECEIPT");
    await q.ack("jobs", rest[0]!.receipt);
    assert.deepEqual(await q.dequeue("jobs", opts()), []);
  });

  test("visibility timeout redelivers with a rising delivery count; the old receipt is stale", async (t) => {
    const { s, clock } = await withNs(t, { maxDeliveries: 10 });
    const q = s.queue;
    await q.enqueue("v", b("m"), {}, 0);
    const [a] = await q.dequeue("v", opts(1000));
    clock.advance(999);
    assert.deepEqual(await q.dequeue("v", opts()), []);
    clock.advance(1);
    const [b2] = await q.dequeue("v", opts(1000));
    assert.equal(b2!.messageId, a!.messageId);
    assert.equal(b2!.deliveryCount, 2);
    assert.notEqual(b2!.receipt, a!.receipt);
    await rejectsWith(q.ack("v", a!.receipt), "PRISM_ERR_STALE_RECEIPT");
    await rejectsWith(q.nack("v", a!.receipt, 0), "PRISM_ERR_STALE_RECEIPT");
    await rejectsWith(q.extendVisibility!("v", a!.receipt, 1000), "PRISM_ERR_STALE_RECEIPT");
    clock.advance(1000);
    const [c] = await q.dequeue("v", opts(1000));
    assert.equal(c!.deliveryCount, 3);
    // The lease expired but nobody took the message again: ack is still accepted.
    clock.advance(5000);
    await q.ack("v", c!.receipt);
    assert.deepEqual(await q.dequeue("v", opts()), []);
  });

  test("extendVisibility moves the lease end", async (t) => {
    const { s, clock } = await withNs(t);
    const q = s.queue;
    await q.enqueue("x", b("m"), {}, 0);
    const [m] = await q.dequeue("x", opts(1000));
    clock.advance(800);
    await q.extendVisibility!("x", m!.receipt, 1000);
    clock.advance(999);
    assert.deepEqual(await q.dequeue("x", opts()), []);
    clock.advance(1);
    const [again] = await q.dequeue("x", opts());
    assert.equal(again!.messageId, m!.messageId);
  });

  test("nack with and without delay", async (t) => {
    const { s, clock } = await withNs(t);
    const q = s.queue;
    await q.enqueue("n", b("m"), {}, 0);
    const [m] = await q.dequeue("n", opts(30_000));
    await q.nack("n", m!.receipt, 2000);
    await rejectsWith(q.ack("n", m!.receipt), "PRISM_ERR_STALE_RECEIPT");
    clock.advance(1999);
    assert.deepEqual(await q.dequeue("n", opts()), []);
    clock.advance(1);
    const [m2] = await q.dequeue("n", opts(30_000));
    assert.equal(m2!.deliveryCount, 2);
    await q.nack("n", m2!.receipt, 0);
    const [m3] = await q.dequeue("n", opts(30_000));
    assert.equal(m3!.deliveryCount, 3);
  });

  test("delayed enqueue", async (t) => {
    const { s, clock } = await withNs(t);
    await s.queue.enqueue("d", b("later"), {}, 5000);
    await s.queue.enqueue("d", b("now"), {}, 0);
    assert.deepEqual((await s.queue.dequeue("d", opts(60_000))).map((m) => str(m.payload)), ["now"]);
    clock.advance(4999);
    assert.deepEqual(await s.queue.dequeue("d", opts(60_000)), []);
    clock.advance(1);
    assert.deepEqual((await s.queue.dequeue("d", opts(60_000))).map((m) => str(m.payload)), ["later"]);
  });

  test("dead letter after maxDeliveries, readable via <queue>.dlq", async (t) => {
    const { s, clock } = await withNs(t, { maxDeliveries: 2 });
    const q = s.queue;
    const id = await q.enqueue("work", b("poison"), { k: "v" }, 0);
    await q.enqueue("work", b("fine"), {}, 5000);
    for (let i = 1; i <= 2; i++) {
      const [m] = await q.dequeue("work", opts(1000, 1));
      assert.equal(m!.deliveryCount, i);
      clock.advance(1000);
    }
    clock.advance(3000);
    // The poison message moves to the DLQ, and its slot goes to the next message.
    const msgs = await q.dequeue("work", opts(1000, 1));
    assert.deepEqual(msgs.map((m) => str(m.payload)), ["fine"]);
    const dl = await q.dequeue("work.dlq", opts(1000));
    assert.equal(dl.length, 1);
    assert.equal(dl[0]!.messageId, id);
    assert.equal(str(dl[0]!.payload), "poison");
    assert.equal(dl[0]!.deliveryCount, 1);
    assert.equal(dl[0]!.attributes["k"], "v");
    assert.equal(dl[0]!.attributes["prism-original-queue"], "work");
    assert.equal(dl[0]!.attributes["prism-delivery-count"], "2");
    assert.ok(dl[0]!.attributes["prism-dlq-reason"]);
    assert.ok(Number(dl[0]!.attributes["prism-original-enqueued-at"]) > 0);
    // A dead-letter queue is the end of the line: redelivered there, never moved on.
    for (let i = 2; i <= 4; i++) {
      clock.advance(1000);
      const [again] = await q.dequeue("work.dlq", opts(1000));
      assert.equal(again!.deliveryCount, i);
      dl[0] = again!;
    }
    await q.ack("work.dlq", dl[0]!.receipt);
    assert.deepEqual(await q.dequeue("work.dlq.dlq", opts()), []);
  });

  test("long poll wakes on enqueue, on a clock advance, and on abort", async (t) => {
    const { s, clock } = await withNs(t);
    const q = s.queue;
    const waiting = q.dequeue("lp", { maxMessages: 1, visibilityTimeoutMs: 1000, waitMs: 15_000 });
    await q.enqueue("lp", b("hello"), {}, 0);
    assert.deepEqual((await waiting).map((m) => str(m.payload)), ["hello"]);

    await q.enqueue("lp2", b("delayed"), {}, 1000);
    const waiting2 = q.dequeue("lp2", { maxMessages: 1, visibilityTimeoutMs: 1000, waitMs: 15_000 });
    clock.advance(1000);
    assert.deepEqual((await waiting2).map((m) => str(m.payload)), ["delayed"]);

    const ac = new AbortController();
    const waiting3 = q.dequeue("lp3", { maxMessages: 1, visibilityTimeoutMs: 1000, waitMs: 15_000, signal: ac.signal });
    ac.abort();
    assert.deepEqual(await waiting3, []);

    // The wait ends when waitMs passes on the injected clock.
    const waiting4 = q.dequeue("lp4", { maxMessages: 1, visibilityTimeoutMs: 1000, waitMs: 2000 });
    clock.advance(2000);
    assert.deepEqual(await waiting4, []);
  });

  test("close wakes long polls and later calls are UNAVAILABLE", async () => {
    const clock = new ManualClock();
    const inst = open(newPath(), clock);
    const s = inst.namespace("n", LIMITS);
    const waiting = s.queue!.dequeue("q", { maxMessages: 1, visibilityTimeoutMs: 1000, waitMs: 15_000 });
    const rs = s.stream!.readGroup!("s", "g", "c", 1, 15_000);
    await inst.close();
    await inst.close();
    assert.deepEqual(await waiting, []);
    assert.deepEqual(await rs, []);
    await rejectsWith(s.keyvalue!.get("k"), "PRISM_ERR_BACKEND_UNAVAILABLE");
    await rejectsWith(s.queue!.enqueue("q", b("x"), {}, 0), "PRISM_ERR_BACKEND_UNAVAILABLE");
    assert.equal((await inst.health()).ok, false);
  });
});

describe("sqlite driver: stream", () => {
  test("append/read/replay with offsets from 1", async (t) => {
    const { s, clock } = await withNs(t);
    const st = s.stream;
    for (let i = 1; i <= 5; i++) {
      assert.equal(await st.append("log", b(`r${i}`), i === 1 ? { first: "yes" } : {}), i);
      clock.advance(1);
    }
    const all = await st.read("log", 0, 100);
    assert.deepEqual(all.map((r) => r.offset), [1, 2, 3, 4, 5]);
    assert.deepEqual(all[0]!.attributes, { first: "yes" });
    assert.equal(all[1]!.timestampMs, all[0]!.timestampMs + 1);
    assert.deepEqual((await st.read("log", 3, 2)).map((r) => str(r.payload)), ["r3", "r4"]);
    assert.deepEqual(await st.read("log", 6, 10), []);
    assert.deepEqual(await st.read("other", 0, 10), []);
  });

  test("retention by count and by age; offsets never repeat", async (t) => {
    const { s, clock } = await withNs(t, { streamMaxCount: 3, streamMaxAgeSeconds: 10 });
    const st = s.stream;
    for (let i = 1; i <= 5; i++) await st.append("r", b(`r${i}`), {});
    assert.deepEqual((await st.read("r", 0, 100)).map((r) => r.offset), [3, 4, 5]);
    clock.advance(5000);
    await st.append("r", b("r6"), {});
    assert.deepEqual((await st.read("r", 0, 100)).map((r) => r.offset), [4, 5, 6]);
    clock.advance(5001);
    assert.equal(await st.append("r", b("r7"), {}), 7);
    assert.deepEqual((await st.read("r", 0, 100)).map((r) => r.offset), [6, 7]);
    clock.advance(60_000);
    assert.equal(await st.append("r", b("r8"), {}), 8);
    assert.deepEqual((await st.read("r", 0, 100)).map((r) => r.offset), [8]);
  });

  test("consumer groups: each record once per group, redelivered after the claim timeout until acked", async (t) => {
    const { s, clock } = await withNs(t, { streamClaimTimeoutSeconds: 10 });
    const st = s.stream;
    for (let i = 1; i <= 4; i++) await st.append("g", b(`r${i}`), {});
    const a = await st.readGroup!("g", "grp", "alice", 2, 0);
    assert.deepEqual(a.map((r) => [r.offset, r.deliveryCount]), [[1, 1], [2, 1]]);
    const bob = await st.readGroup!("g", "grp", "bob", 10, 0);
    assert.deepEqual(bob.map((r) => r.offset), [3, 4]);
    // Another group sees everything independently.
    assert.deepEqual((await st.readGroup!("g", "other", "x", 10, 0)).map((r) => r.offset), [1, 2, 3, 4]);
    assert.equal(await st.ackGroup!("g", "grp", [1, 3, 99]), 2);
    assert.equal(await st.ackGroup!("g", "grp", [1]), 0);
    assert.deepEqual(await st.readGroup!("g", "grp", "carol", 10, 0), []);
    clock.advance(9_999);
    assert.deepEqual(await st.readGroup!("g", "grp", "carol", 10, 0), []);
    clock.advance(1);
    await st.append("g", b("r5"), {});
    const c = await st.readGroup!("g", "grp", "carol", 10, 0);
    // Unacked 2 and 4 come back (count 2) before the new record 5.
    assert.deepEqual(c.map((r) => [r.offset, r.deliveryCount]), [[2, 2], [4, 2], [5, 1]]);
    assert.equal(str(c[0]!.payload), "r2");
    assert.equal(await st.ackGroup!("g", "grp", [2, 4, 5]), 3);
    clock.advance(60_000);
    assert.deepEqual(await st.readGroup!("g", "grp", "carol", 10, 0), []);
  });

  test("readGroup blockMs wakes on append", async (t) => {
    const { s } = await withNs(t);
    const waiting = s.stream.readGroup!("b", "g", "c", 10, 15_000);
    await s.stream.append("b", b("x"), {});
    assert.deepEqual((await waiting).map((r) => r.offset), [1]);
  });
});

describe("sqlite driver: pubsub", () => {
  test("exact and wildcard subscriptions; re-applied namespace keeps subscribers", async (t) => {
    const clock = new ManualClock();
    const inst = open(newPath(), clock);
    t.after(() => inst.close());
    const first = inst.namespace("ps", LIMITS);
    const got: PubSubMessage[] = [];
    const errs: Error[] = [];
    const sink = { onMessage: (m: PubSubMessage) => got.push(m), onError: (e: Error) => errs.push(e) };
    const sub = await first.pubsub!.subscribe("orders.created", sink);
    await first.pubsub!.subscribe("orders.*", sink);
    const id = await first.pubsub!.publish("orders.created", b("o1"), { a: "b" });
    assert.equal(got.length, 2);
    assert.equal(got[0]!.messageId, id);
    assert.deepEqual(got[0]!.attributes, { a: "b" });
    await sub.close();
    // Re-apply: the new stores are made before the old ones close.
    const second = inst.namespace("ps", LIMITS);
    await first.close!();
    await second.pubsub!.publish("orders.updated", b("o2"), {});
    assert.equal(got.length, 3);
    assert.equal(errs.length, 0);
    await second.close!();
    assert.equal(errs.length, 1);
  });
});

describe("sqlite driver: durability and health", () => {
  test("everything acknowledged survives close and re-open of the file", async () => {
    const clock = new ManualClock();
    const path = newPath();
    let inst = open(path, clock);
    let s = inst.namespace("dur", LIMITS);
    await s.keyvalue!.set("k1", b("v1"), {});
    await s.keyvalue!.set("k1", b("v1b"), {});
    await s.keyvalue!.set("k2", b("v2"), { ttlMs: 60_000 });
    await s.queue!.enqueue("q", b("m1"), { x: "y" }, 0);
    await s.queue!.enqueue("q", b("m2"), {}, 0);
    const [leased] = await s.queue!.dequeue("q", { maxMessages: 1, visibilityTimeoutMs: 1000, waitMs: 0 });
    for (let i = 1; i <= 3; i++) await s.stream!.append("st", b(`r${i}`), {});
    await s.stream!.readGroup!("st", "g", "c", 1, 0);
    await inst.close();

    inst = open(path, clock);
    s = inst.namespace("dur", LIMITS);
    assert.deepEqual(await s.keyvalue!.get("k1").then((r) => r && [str(r.value), r.version]), ["v1b", 2]);
    assert.equal(str((await s.keyvalue!.get("k2"))?.value), "v2");
    assert.deepEqual(await s.keyvalue!.ttl!("k2"), { ttlMs: 60_000 });
    // The leased receipt is still the message's current lease.
    const [m2] = await s.queue!.dequeue("q", { maxMessages: 10, visibilityTimeoutMs: 1000, waitMs: 0 });
    assert.equal(str(m2!.payload), "m2");
    clock.advance(1000);
    const [again] = await s.queue!.dequeue("q", { maxMessages: 10, visibilityTimeoutMs: 1000, waitMs: 0 });
    assert.equal(again!.messageId, leased!.messageId);
    assert.equal(again!.deliveryCount, 2);
    assert.deepEqual(again!.attributes, { x: "y" });
    assert.deepEqual((await s.stream!.read("st", 0, 10)).map((r) => str(r.payload)), ["r1", "r2", "r3"]);
    assert.equal(await s.stream!.append("st", b("r4"), {}), 4);
    // The group's cursor survived: it continues after offset 1.
    assert.deepEqual((await s.stream!.readGroup!("st", "g", "c", 10, 0)).map((r) => r.offset), [2, 3, 4]);
    const h = await inst.health();
    assert.equal(h.ok, true);
    await inst.close();
  });

  test("an unopenable path does not throw at create: health and calls report UNAVAILABLE", async () => {
    // Missing folders are created on first use; a folder under a regular file cannot be.
    writeFileSync(join(dir, "a-file"), "");
    const inst = open(join(dir, "a-file", "x", "db.sqlite"), new ManualClock());
    const s = inst.namespace("n", LIMITS);
    const h = await inst.health();
    assert.equal(h.ok, false);
    assert.match(h.message, /sqlite/);
    await rejectsWith(s.keyvalue!.set("k", b("v"), {}), "PRISM_ERR_BACKEND_UNAVAILABLE");
    await inst.close();
    assert.ok(logs.some((l) => l.startsWith("error") && l.includes("cannot open")));
  });

  test("a second connection on the same file: its writes wake long polls; a held lock is UNAVAILABLE", async () => {
    const clock = new ManualClock();
    const path = newPath();
    const a = open(path, clock);
    const other = open(path, clock);
    const sa = a.namespace("shared", LIMITS);
    const sb = other.namespace("shared", LIMITS);
    // Nothing in this process notifies a's waiters: the periodic poll finds the row.
    const waiting = sa.queue!.dequeue("xq", { maxMessages: 1, visibilityTimeoutMs: 1000, waitMs: 15_000 });
    await sb.queue!.enqueue("xq", b("from-b"), {}, 0);
    assert.deepEqual((await waiting).map((m) => str(m.payload)), ["from-b"]);
    await other.close();

    const impatient = driver.create(optionsSchema.parse({ path, busy_timeout_ms: 0 }), { clock, log: () => {} });
    const si = impatient.namespace("shared", LIMITS);
    const locker = new Database(path);
    locker.exec("BEGIN IMMEDIATE");
    try {
      await rejectsWith(si.keyvalue!.set("k", b("v"), {}), "PRISM_ERR_BACKEND_UNAVAILABLE");
      await rejectsWith(si.queue!.enqueue("q", b("v"), {}, 0), "PRISM_ERR_BACKEND_UNAVAILABLE");
    } finally {
      locker.exec("ROLLBACK");
      locker.close();
    }
    assert.equal(await si.keyvalue!.set("k", b("v"), {}), 1);
    await impatient.close();
    await a.close();
  });

  test(":memory: works", async () => {
    const inst = open(":memory:", new ManualClock());
    const s = inst.namespace("m", LIMITS);
    await s.keyvalue!.set("k", b("v"), {});
    assert.equal(str((await s.keyvalue!.get("k"))?.value), "v");
    await inst.close();
  });
});
