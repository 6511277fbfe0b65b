/**
 * Redis driver, driver level, against the real Redis on 127.0.0.1:6379 (or
 * REDIS_URL). Every run uses its own key prefix and cleans it up. Queue and
 * stream-retention times run on a ManualClock (the driver passes its clock to
 * the scripts); KV TTLs and consumer-group claims use Redis's own clock.
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { Redis } from "ioredis";
import { ManualClock } from "../../src/core/clock.js";
import { DEFAULT_LIMITS } from "../../src/config/schema.js";
import { PrismError } from "../../src/core/errors.js";
import type { BackendInstance, NamespaceLimits, NamespaceStores, PubSubMessage } from "../../src/backends/driver.js";
import { driver } from "../../src/backends/redis/index.js";
import { optionsSchema } from "../../src/backends/redis/options.js";
import { decodeAttrs, decodeEnvelope, encodeAttrs, encodeEnvelope } from "../../src/backends/redis/codec.js";
import { deleteRedisPrefix } from "../helpers/redis-cleanup.js";
import { TcpProxy } from "./tcp-proxy.js";

const url = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const prefix = `prism-unit-${process.pid}-${randomBytes(3).toString("hex")}`;
const limits: NamespaceLimits = { ...DEFAULT_LIMITS, maxDeliveries: 3, visibilityTimeoutSeconds: 30 };
const b = (s: string) => Buffer.from(s);

function code(e: unknown): string {
  return e instanceof PrismError ? e.reason : String(e);
}

async function rejectsWith(p: Promise<unknown>, reason: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.equal(code(e), reason);
    return true;
  });
}

/** A TCP port nothing listens on. */
async function deadPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

describe("redis codec", () => {
  it("round-trips attributes and envelopes as bytes", () => {
    const attrs = { a: "1", "ü-key": "välue", empty: "" };
    assert.deepEqual(decodeAttrs(encodeAttrs(attrs)), attrs);
    assert.equal(encodeAttrs({}).length, 0);
    assert.deepEqual(decodeAttrs(encodeAttrs({})), {});
    const payload = Buffer.from([0, 255, 1, 2]);
    const env = decodeEnvelope(encodeEnvelope(payload, attrs, "id-7", 1234.5))!;
    assert.deepEqual(Buffer.from(env.payload), payload);
    assert.deepEqual(env.attributes, attrs);
    assert.equal(env.messageId, "id-7");
    assert.equal(env.publishTimeMs, 1234.5);
    assert.equal(decodeEnvelope(Buffer.from("plain text from another publisher")), null);
  });
});

describe("redis driver", () => {
  const clock = new ManualClock(Date.now());
  const logs: string[] = [];
  let inst: BackendInstance;
  let raw: Redis;
  const stores = new Map<string, NamespaceStores>();
  const ns = (name: string, l: NamespaceLimits = limits) => {
    const key = `${name}/${JSON.stringify(l)}`;
    let s = stores.get(key);
    if (!s) stores.set(key, (s = inst.namespace(name, l)));
    return s;
  };

  before(async () => {
    inst = driver.create(optionsSchema.parse({ url, key_prefix: prefix }), { clock, log: (l, m) => logs.push(`${l} ${m}`) });
    raw = new Redis(url);
  });

  after(async () => {
    for (const s of stores.values()) await s.close?.();
    await inst.close();
    await inst.close(); // idempotent
    await deleteRedisPrefix(raw, prefix);
    raw.disconnect();
  });

  it("health answers PONG with a latency", async () => {
    const h = await inst.health();
    assert.equal(h.ok, true, h.message);
    assert.ok(h.latencyMs >= 0);
  });

  it("keys of a namespace live under one hash tag", async () => {
    const kv = ns("layout").keyvalue!;
    await kv.set("k", b("v"), {});
    assert.equal(await raw.exists(`${prefix}:{layout}:kv:k`), 1);
    assert.equal(await raw.zscore(`${prefix}:{layout}:kvidx`, "k"), "0");
  });

  it("set/get/delete/exists with increasing versions, binary values", async () => {
    const kv = ns("basic").keyvalue!;
    const v1 = await kv.set("a", Buffer.from([0, 1, 255]), {});
    const v2 = await kv.set("a", b("two"), {});
    assert.ok(v2 > v1);
    assert.deepEqual(await kv.get("a"), { value: b("two"), version: v2 });
    assert.equal(await kv.exists("a"), true);
    assert.equal(await kv.delete("a"), true);
    assert.equal(await kv.delete("a"), false);
    assert.equal(await kv.get("a"), null);
    const v3 = await kv.set("a", b(""), {});
    assert.ok(v3 > v2, "a re-created key gets a higher version than before its delete");
    assert.deepEqual(await kv.get("a"), { value: b(""), version: v3 });
  });

  it("plain Uint8Array values (not Buffers) are stored as their bytes", async () => {
    const s = ns("u8");
    const bytes = new Uint8Array([104, 105, 0, 255]);
    await s.keyvalue!.set("u", bytes.subarray(1), {});
    assert.deepEqual([...(await s.keyvalue!.get("u"))!.value], [105, 0, 255]);
    await s.queue!.enqueue("q", bytes, {}, 0);
    const [m] = await s.queue!.dequeue("q", { maxMessages: 1, visibilityTimeoutMs: 1000, waitMs: 0 });
    assert.deepEqual([...m!.payload], [104, 105, 0, 255]);
    await s.stream!.append("s", bytes, {});
    assert.deepEqual([...(await s.stream!.read("s", 0, 1))[0]!.payload], [104, 105, 0, 255]);
  });

  it("CAS: ifAbsent and expectedVersion conflicts, atomic with the write", async () => {
    const kv = ns("cas").keyvalue!;
    await rejectsWith(kv.set("c", b("x"), { expectedVersion: 5 }), "PRISM_ERR_CAS_CONFLICT");
    const v = await kv.set("c", b("x"), { expectedVersion: 0 });
    await rejectsWith(kv.set("c", b("y"), { ifAbsent: true }), "PRISM_ERR_CAS_CONFLICT");
    await rejectsWith(kv.set("c", b("y"), { expectedVersion: 0 }), "PRISM_ERR_CAS_CONFLICT");
    await rejectsWith(kv.set("c", b("y"), { expectedVersion: v + 1 }), "PRISM_ERR_CAS_CONFLICT");
    const results = await Promise.allSettled([1, 2, 3, 4].map(() => kv.set("c", b("z"), { expectedVersion: v })));
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
  });

  it("TTL: native expiry, ttl/persist/expire, a write replaces the TTL", async () => {
    const kv = ns("ttl").keyvalue!;
    await kv.set("t", b("v"), { ttlMs: 60_000 });
    const t = await kv.ttl!("t");
    assert.ok(t && t.ttlMs !== null && t.ttlMs > 0 && t.ttlMs <= 60_000);
    await kv.set("t", b("v2"), {});
    assert.deepEqual(await kv.ttl!("t"), { ttlMs: null });
    assert.equal(await kv.expire!("t", 60_000), true);
    assert.equal(await kv.persist!("t"), true);
    assert.deepEqual(await kv.ttl!("t"), { ttlMs: null });
    assert.equal(await kv.persist!("absent"), false);
    assert.equal(await kv.expire!("absent", 1000), false);
    assert.equal(await kv.ttl!("absent"), null);
    await kv.set("gone", b("v"), { ttlMs: 30 });
    for (let i = 0; i < 100 && (await kv.exists("gone")); i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(await kv.get("gone"), null);
    assert.equal(await kv.exists("gone"), false);
  });

  it("batch get/set/delete", async () => {
    const kv = ns("batch").keyvalue!;
    const vs = await kv.batchSet!([{ key: "x", value: b("1") }, { key: "y", value: b("2") }], undefined);
    assert.equal(vs.length, 2);
    const got = await kv.batchGet!(["x", "nope", "y"]);
    assert.deepEqual(got.map((g) => g && Buffer.from(g.value).toString()), ["1", null, "2"]);
    assert.equal(await kv.batchDelete!(["x", "y", "nope"]), 2);
  });

  it("Gets of one loop turn share one script call; each caller gets its own key's record", async () => {
    const kv = ns("getbatch").keyvalue!;
    // 300 keys: more than one batch (MAX_BATCH 128) in the same turn.
    const n = 300;
    const versions = await kv.batchSet!(Array.from({ length: n }, (_, i) => ({ key: `k${i}`, value: b(`v${i}`) })), undefined);
    const before = Number((await raw.info("commandstats")).match(/cmdstat_evalsha:calls=(\d+)/)?.[1] ?? 0);
    const got = await Promise.all(Array.from({ length: n + 1 }, (_, i) => kv.get(i === n ? "absent" : `k${i}`)));
    const after = Number((await raw.info("commandstats")).match(/cmdstat_evalsha:calls=(\d+)/)?.[1] ?? 0);
    for (let i = 0; i < n; i++) assert.deepEqual(got[i], { value: b(`v${i}`), version: versions[i] }, `k${i}`);
    assert.equal(got[n], null);
    // Other tests' processes may run scripts too: the bound is loose, but one call per Get would be 301.
    assert.ok(after - before < 50, `${after - before} script calls for ${n + 1} Gets`);
    const many = await kv.batchGet!(Array.from({ length: n }, (_, i) => `k${i}`));
    assert.deepEqual(many.map((r) => r && Buffer.from(r.value).toString()), Array.from({ length: n }, (_, i) => `v${i}`));
  });

  /** A driver instance whose Redis connection runs through a TcpProxy (replies can be held). */
  const behindProxy = async () => {
    const u = new URL(url);
    const proxy = new TcpProxy(u.hostname, Number(u.port || 6379));
    const pport = await proxy.start();
    const viaProxy = driver.create(optionsSchema.parse({ url: `redis://${u.hostname}:${pport}`, key_prefix: prefix }), { clock, log: () => {} });
    return { proxy, viaProxy };
  };
  const closeBehindProxy = async (proxy: TcpProxy, viaProxy: BackendInstance) => {
    proxy.releaseReplies();
    await viaProxy.close();
    await proxy.close();
  };

  it("with a batch of Gets in flight, the Gets that follow wait for its reply and then leave together", { timeout: 15_000 }, async () => {
    const { proxy, viaProxy } = await behindProxy();
    const turn = () => new Promise((r) => setImmediate(r));
    // ioredis sends a script's first call on a connection as EVAL, the next ones as EVALSHA.
    const scriptCalls = () => (proxy.sent.match(/\r\n(\$4\r\neval|\$7\r\nevalsha)\r\n/gi) ?? []).length;
    try {
      const kv = viaProxy.namespace("held", limits).keyvalue!;
      const n = 90;
      const versions = await kv.batchSet!(Array.from({ length: n }, (_, i) => ({ key: `k${i}`, value: b(`v${i}`) })), undefined);
      const before = scriptCalls();
      proxy.holdReplies();
      const first = kv.get("k0");
      for (let i = 0; i < 400 && scriptCalls() === before; i++) await new Promise((r) => setTimeout(r, 5));
      assert.equal(scriptCalls() - before, 1, "a lone Get leaves without waiting for anything");
      // 89 more Gets over three loop turns while the first batch waits for its reply.
      const rest: Promise<unknown>[] = [];
      for (let t = 0; t < 3; t++) {
        for (let i = 1 + t * 30; i < Math.min(n, 31 + t * 30); i++) rest.push(kv.get(`k${i}`));
        await turn();
      }
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(scriptCalls() - before, 1, "nothing else is sent while the batch is in flight");
      proxy.releaseReplies();
      const got = [await first, ...(await Promise.all(rest))];
      for (let i = 0; i < n; i++) assert.deepEqual(got[i], { value: b(`v${i}`), version: versions[i] }, `k${i}`);
      assert.equal(scriptCalls() - before, 2, "the held Gets left in one script call");
    } finally {
      await closeBehindProxy(proxy, viaProxy);
    }
  });

  it("a batch in flight that fails releases the held Gets (UNAVAILABLE), and Gets work again after the outage", { timeout: 15_000 }, async () => {
    const { proxy, viaProxy } = await behindProxy();
    const turn = () => new Promise((r) => setImmediate(r));
    try {
      const kv = viaProxy.namespace("heldfail", limits).keyvalue!;
      const v = await kv.set("a", b("A"), {});
      proxy.holdReplies();
      const sentBefore = proxy.sent.length;
      const first = kv.get("a");
      for (let i = 0; i < 400 && proxy.sent.length === sentBefore; i++) await new Promise((r) => setTimeout(r, 5));
      const held = kv.get("a");
      await turn();
      await proxy.cut();
      await rejectsWith(first, "PRISM_ERR_BACKEND_UNAVAILABLE");
      await rejectsWith(held, "PRISM_ERR_BACKEND_UNAVAILABLE");
      proxy.releaseReplies();
      await proxy.restore();
      let again: unknown;
      for (let i = 0; i < 200; i++) {
        again = await kv.get("a").catch((e: unknown) => e);
        if (!(again instanceof Error)) break;
        await new Promise((r) => setTimeout(r, 25));
      }
      assert.deepEqual(again, { value: b("A"), version: v });
    } finally {
      await closeBehindProxy(proxy, viaProxy);
    }
  });

  it("a Get issued before a write in the same turn reads the value before it", async () => {
    const kv = ns("getorder").keyvalue!;
    const v1 = await kv.set("o", b("old"), {});
    const read = kv.get("o");
    const write = kv.set("o", b("new"), {});
    const readAfter = write.then(() => kv.get("o"));
    assert.deepEqual(await read, { value: b("old"), version: v1 });
    assert.deepEqual(await readAfter, { value: b("new"), version: await write });
  });

  it("scan: byte order, prefix, paging, namespaces that prefix each other stay apart", async () => {
    const users = ns("users").keyvalue!;
    const usersAbc = ns("usersAbc").keyvalue!;
    const keys = ["b", "a", "ab", "a/1", "é", "z", "aé", "A"];
    for (const k of keys) await users.set(k, b(k), {});
    await usersAbc.set("a-other", b("x"), {});
    await usersAbc.set("b", b("x"), {});
    const expected = [...keys].sort((x, y) => Buffer.compare(b(x), b(y)));
    const seen: string[] = [];
    let cursor = "";
    do {
      const page = await users.scan!("", cursor, 3, false);
      for (const it of page.items) {
        seen.push(it.key);
        assert.equal(Buffer.from(it.value!).toString(), it.key);
      }
      cursor = page.nextCursor;
    } while (cursor);
    assert.deepEqual(seen, expected);
    const pa = await users.scan!("a", "", 100, true);
    assert.deepEqual(pa.items.map((i) => i.key), ["a", "a/1", "ab", "aé"]);
    assert.equal(pa.items[0]!.value, undefined);
    assert.equal(pa.nextCursor, "");
    const other = await usersAbc.scan!("", "", 100, true);
    assert.deepEqual(other.items.map((i) => i.key), ["a-other", "b"]);
  });

  it("scan is complete and duplicate-free under concurrent inserts and deletes", async () => {
    const kv = ns("scanconc").keyvalue!;
    const initial = Array.from({ length: 60 }, (_, i) => `k${String(i).padStart(3, "0")}`);
    await kv.batchSet!(initial.map((key) => ({ key, value: b(key) })), undefined);
    const seen: string[] = [];
    let cursor = "";
    let n = 0;
    do {
      const page = await kv.scan!("k", cursor, 7, true);
      seen.push(...page.items.map((i) => i.key));
      // Meanwhile: insert keys before and after the cursor, delete one not yet seen.
      await kv.set(`k${String(n).padStart(3, "0")}x`, b("new"), {});
      await kv.set(`k9${n}`, b("new"), {});
      cursor = page.nextCursor;
      n++;
    } while (cursor);
    assert.equal(new Set(seen).size, seen.length, "no duplicates");
    const sorted = [...seen].sort((x, y) => Buffer.compare(b(x), b(y)));
    assert.deepEqual(seen, sorted, "byte order");
    for (const k of initial) assert.ok(seen.includes(k), `${k} present all along must be returned`);
  });

  it("scan never returns expired keys and drops their index entries", async () => {
    const kv = ns("scanttl").keyvalue!;
    await kv.set("live", b("v"), {});
    await kv.set("short", b("v"), { ttlMs: 20 });
    for (let i = 0; i < 100 && (await kv.exists("short")); i++) await new Promise((r) => setTimeout(r, 20));
    const page = await kv.scan!("", "", 10, false);
    assert.deepEqual(page.items.map((i) => i.key), ["live"]);
    assert.equal(await raw.zscore(`${prefix}:{scanttl}:kvidx`, "short"), null);
  });

  it("pubsub: exact and wildcard subscriptions, filtered by tokens, isolated by namespace", async () => {
    const ps = ns("ps").pubsub!;
    const other = ns("psX").pubsub!;
    const got: Record<string, string[]> = { exact: [], star: [], tail: [], other: [] };
    const sink = (name: string) => ({ onMessage: (m: PubSubMessage) => got[name]!.push(`${m.topic}:${Buffer.from(m.payload).toString()}`), onError: () => {} });
    const subs = [
      await ps.subscribe("o.created", sink("exact")),
      await ps.subscribe("o.*", sink("star")),
      await ps.subscribe("o.>", sink("tail")),
      await other.subscribe(">", sink("other")),
    ];
    const msg: PubSubMessage[] = [];
    const s5 = await ps.subscribe("o.[x]", { onMessage: (m) => msg.push(m), onError: () => {} });
    await ps.publish("o.created", b("1"), { k: "v" });
    await ps.publish("o.eu.created", b("2"), {});
    await ps.publish("ox.created", b("3"), {});
    await ps.publish("o.[x]", b("4"), {});
    await ps.publish("o.x", b("5"), {});
    // One subscriber connection delivers in publish order: once the marker arrives, everything before it has.
    await ps.publish("o.done", b("6"), {});
    for (let i = 0; i < 200 && !got.tail!.includes("o.done:6"); i++) await new Promise((r) => setTimeout(r, 10));
    got.star = got.star!.filter((m) => m !== "o.done:6");
    got.tail = got.tail!.filter((m) => m !== "o.done:6");
    assert.deepEqual(got.exact, ["o.created:1"]);
    assert.deepEqual(got.star, ["o.created:1", "o.[x]:4", "o.x:5"]);
    assert.deepEqual(got.tail, ["o.created:1", "o.eu.created:2", "o.[x]:4", "o.x:5"]);
    assert.deepEqual(got.other, []);
    assert.deepEqual(msg.map((m) => Buffer.from(m.payload).toString()), ["4"]);
    for (const s of [...subs, s5]) await s.close();
  });

  it("pubsub: subscriptions share one Redis subscription per channel", async () => {
    const ps = ns("psref").pubsub!;
    const a: string[] = [];
    const bb: string[] = [];
    const s1 = await ps.subscribe("t", { onMessage: (m) => a.push(m.messageId), onError: () => {} });
    const s2 = await ps.subscribe("t", { onMessage: (m) => bb.push(m.messageId), onError: () => {} });
    const n = (await raw.pubsub("NUMSUB", `${prefix}:{psref}:ps:t`)) as [string, number];
    assert.equal(n[1], 1);
    await s1.close();
    const id = await ps.publish("t", b("x"), {});
    for (let i = 0; i < 200 && bb.length < 1; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(bb, [id]);
    assert.deepEqual(a, []);
    await s2.close();
    const n2 = (await raw.pubsub("NUMSUB", `${prefix}:{psref}:ps:t`)) as [string, number];
    assert.equal(n2[1], 0);
  });

  it("queue: lease, visibility on the injected clock, extend, stale receipts", async () => {
    const q = ns("q").queue!;
    const id = await q.enqueue("jobs", b("p"), { a: "1" }, 0);
    const [m] = await q.dequeue("jobs", { maxMessages: 5, visibilityTimeoutMs: 1000, waitMs: 0 });
    assert.equal(m!.messageId, id);
    assert.deepEqual(m!.attributes, { a: "1" });
    assert.equal(m!.deliveryCount, 1);
    assert.deepEqual(await q.dequeue("jobs", { maxMessages: 5, visibilityTimeoutMs: 1000, waitMs: 0 }), []);
    await q.extendVisibility!("jobs", m!.receipt, 5000);
    clock.advance(2000);
    assert.deepEqual(await q.dequeue("jobs", { maxMessages: 5, visibilityTimeoutMs: 1000, waitMs: 0 }), [], "extended lease holds");
    clock.advance(3000);
    const [m2] = await q.dequeue("jobs", { maxMessages: 5, visibilityTimeoutMs: 1000, waitMs: 0 });
    assert.equal(m2!.messageId, id);
    assert.equal(m2!.deliveryCount, 2);
    await rejectsWith(q.ack("jobs", m!.receipt), "PRISM_ERR_STALE_RECEIPT");
    await rejectsWith(q.ack("other", m2!.receipt), "PRISM_ERR_STALE_RECEIPT");
    await rejectsWith(q.ack("jobs", "garbage"), "PRISM_ERR_INVALID_ARGUMENT"); // malformed, not stale
    clock.advance(1000); // the lease ran out: its receipt is stale even before a redelivery
    await rejectsWith(q.ack("jobs", m2!.receipt), "PRISM_ERR_STALE_RECEIPT");
    const [m3] = await q.dequeue("jobs", { maxMessages: 5, visibilityTimeoutMs: 1000, waitMs: 0 });
    await q.ack("jobs", m3!.receipt);
    await rejectsWith(q.ack("jobs", m3!.receipt), "PRISM_ERR_STALE_RECEIPT");
    assert.equal(await raw.exists(`${prefix}:{q}:q:msg:${id}`), 0, "acked message is deleted");
  });

  it("queue: delays and nack delays follow the injected clock; FIFO among visible", async () => {
    const q = ns("qd").queue!;
    await q.enqueue("d", b("late"), {}, 10_000);
    await q.enqueue("d", b("a"), {}, 0);
    await q.enqueue("d", b("b"), {}, 0);
    const first = await q.dequeue("d", { maxMessages: 10, visibilityTimeoutMs: 60_000, waitMs: 0 });
    assert.deepEqual(first.map((m) => Buffer.from(m.payload).toString()), ["a", "b"]);
    await q.nack("d", first[0]!.receipt, 3000);
    await rejectsWith(q.nack("d", first[0]!.receipt, 0), "PRISM_ERR_STALE_RECEIPT");
    assert.deepEqual(await q.dequeue("d", { maxMessages: 10, visibilityTimeoutMs: 60_000, waitMs: 0 }), []);
    clock.advance(3000);
    const again = await q.dequeue("d", { maxMessages: 10, visibilityTimeoutMs: 60_000, waitMs: 0 });
    assert.deepEqual(again.map((m) => [Buffer.from(m.payload).toString(), m.deliveryCount]), [["a", 2]]);
    clock.advance(7000);
    const late = await q.dequeue("d", { maxMessages: 10, visibilityTimeoutMs: 60_000, waitMs: 0 });
    assert.deepEqual(late.map((m) => Buffer.from(m.payload).toString()), ["late"]);
  });

  it("queue: dead-letters after max deliveries, keeping payload and attributes", async () => {
    const q = ns("qdl").queue!;
    const id = await q.enqueue("w", b("poison"), { why: "test" }, 0);
    for (let i = 1; i <= limits.maxDeliveries; i++) {
      const [m] = await q.dequeue("w", { maxMessages: 1, visibilityTimeoutMs: 1000, waitMs: 0 });
      assert.equal(m!.deliveryCount, i);
      await q.nack("w", m!.receipt, 0);
    }
    assert.deepEqual(await q.dequeue("w", { maxMessages: 1, visibilityTimeoutMs: 1000, waitMs: 0 }), []);
    const [d] = await q.dequeue("w.dlq", { maxMessages: 1, visibilityTimeoutMs: 1000, waitMs: 0 });
    assert.equal(d!.messageId, id);
    assert.equal(Buffer.from(d!.payload).toString(), "poison");
    assert.deepEqual(d!.attributes, { why: "test" });
    assert.equal(d!.deliveryCount, 1);
  });

  it("queue: a long poll returns [] promptly when its signal aborts", async () => {
    const q = ns("qlp").queue!;
    const ac = new AbortController();
    const p = q.dequeue("empty", { maxMessages: 1, visibilityTimeoutMs: 1000, waitMs: 20_000, signal: ac.signal });
    setTimeout(() => ac.abort(), 30);
    assert.deepEqual(await p, []);
  });

  it("stream: offsets from 1, replay, count retention, age retention on the injected clock", async () => {
    const st = ns("st").stream!;
    for (let i = 1; i <= 5; i++) assert.equal(await st.append("s", b(`r${i}`), { i: String(i) }), i);
    const all = await st.read("s", 0, 100);
    assert.deepEqual(all.map((r) => r.offset), [1, 2, 3, 4, 5]);
    assert.deepEqual(all[2]!.attributes, { i: "3" });
    assert.deepEqual((await st.read("s", 4, 100)).map((r) => r.offset), [4, 5]);
    assert.deepEqual((await st.read("s", 2, 2)).map((r) => r.offset), [2, 3]);

    const capped = ns("stcap", { ...limits, streamMaxCount: 3 }).stream!;
    for (let i = 1; i <= 5; i++) await capped.append("s", b("x"), {});
    assert.deepEqual((await capped.read("s", 0, 100)).map((r) => r.offset), [3, 4, 5]);

    const aged = ns("stage", { ...limits, streamMaxAgeSeconds: 10 }).stream!;
    await aged.append("s", b("old"), {});
    clock.advance(6000);
    await aged.append("s", b("mid"), {});
    clock.advance(6000);
    assert.deepEqual((await aged.read("s", 0, 100)).map((r) => r.offset), [2], "expired by age at read");
    await aged.append("s", b("new"), {});
    assert.equal(await raw.xlen(`${prefix}:{stage}:s:log:s`), 2, "trimmed on append");
  });

  it("stream consumer groups: shared delivery, ack, redelivery after the claim timeout", async () => {
    const st = ns("sg", { ...limits, streamClaimTimeoutSeconds: 1 }).stream!;
    for (let i = 0; i < 4; i++) await st.append("g", b(`r${i}`), {});
    const a = await st.readGroup!("g", "grp", "c1", 2, 0);
    const c = await st.readGroup!("g", "grp", "c2", 10, 0);
    assert.deepEqual(a.map((r) => r.offset), [1, 2]);
    assert.deepEqual(c.map((r) => r.offset), [3, 4]);
    assert.ok([...a, ...c].every((r) => r.deliveryCount === 1));
    assert.equal(await st.ackGroup!("g", "grp", [1, 3, 99]), 2);
    assert.equal(await st.ackGroup!("g", "grp", [1]), 0);
    assert.equal(await st.ackGroup!("g", "nogroup", [1]), 0);
    await new Promise((r) => setTimeout(r, 1100));
    const re = await st.readGroup!("g", "grp", "c3", 10, 0);
    assert.deepEqual(re.map((r) => [r.offset, r.deliveryCount]), [[2, 2], [4, 2]]);
    const fresh = await st.readGroup!("g", "other", "c1", 10, 0);
    assert.deepEqual(fresh.map((r) => r.offset), [1, 2, 3, 4], "a new group starts at the oldest record");
  });

  it("a namespace's close ends its subscriptions", async () => {
    const s = inst.namespace("closing", limits);
    const errs: Error[] = [];
    await s.pubsub!.subscribe("x", { onMessage: () => {}, onError: (e) => errs.push(e) });
    await s.close!();
    assert.equal(errs.length, 1);
  });

  it("logs no eviction warning on a noeviction Redis", () => {
    assert.ok(!logs.some((l) => l.includes("maxmemory-policy")), logs.join("\n"));
  });
});

describe("redis driver, server down", () => {
  it("create does not throw; calls fail fast with UNAVAILABLE; health reports it", async () => {
    const port = await deadPort();
    const inst = driver.create(optionsSchema.parse({ url: `redis://127.0.0.1:${port}` }), { clock: new ManualClock(), log: () => {} });
    const s = inst.namespace("down", limits);
    await rejectsWith(s.keyvalue!.get("k"), "PRISM_ERR_BACKEND_UNAVAILABLE");
    await rejectsWith(s.keyvalue!.set("k", b("v"), {}), "PRISM_ERR_BACKEND_UNAVAILABLE");
    await rejectsWith(s.queue!.enqueue("q", b("v"), {}, 0), "PRISM_ERR_BACKEND_UNAVAILABLE");
    await rejectsWith(s.stream!.append("s", b("v"), {}), "PRISM_ERR_BACKEND_UNAVAILABLE");
    await rejectsWith(s.pubsub!.publish("t", b("v"), {}), "PRISM_ERR_BACKEND_UNAVAILABLE");
    await rejectsWith(s.pubsub!.subscribe("t", { onMessage: () => {}, onError: () => {} }), "PRISM_ERR_BACKEND_UNAVAILABLE");
    const h = await inst.health();
    assert.equal(h.ok, false);
    await s.close!();
    await inst.close();
  });

  it("options: defaults, and key prefixes that would break the hash tag are refused", () => {
    assert.deepEqual(optionsSchema.parse({}), { url: "redis://127.0.0.1:6379", key_prefix: "prism" });
    assert.throws(() => optionsSchema.parse({ key_prefix: "a{b}" }));
    assert.throws(() => optionsSchema.parse({ url: "http://x" }));
    assert.throws(() => optionsSchema.parse({ nope: 1 }));
  });
});
