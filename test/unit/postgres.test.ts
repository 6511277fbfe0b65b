// Driver-level tests for the postgres backend against the real PostgreSQL on
// 127.0.0.1:5432 (skipped when it is not reachable). Each test file run uses
// its own schemas (dropped at the end); time-based semantics use a
// ManualClock, which the driver passes to SQL as parameters.
import { test, describe, after, before } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createServer, connect, type Server, type Socket } from "node:net";
import pg from "pg";
import { ManualClock, systemClock, type Clock } from "../../src/core/clock.js";
import { Code, PrismError } from "../../src/core/errors.js";
import type { BackendInstance, NamespaceLimits, NamespaceStores, PubSubMessage } from "../../src/backends/driver.js";
import { driver } from "../../src/backends/postgres/index.js";
import { optionsSchema } from "../../src/backends/postgres/options.js";
import { PgInstance } from "../../src/backends/postgres/instance.js";
import { prefixUpperBound } from "../../src/backends/postgres/keyvalue.js";
import { MAX_NOTIFY_BYTES } from "../../src/backends/postgres/pubsub.js";
import { SCHEMA_VERSION } from "../../src/backends/postgres/sql.js";
import { startServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { TcpProxy } from "./tcp-proxy.js";

const URL_ = process.env.POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const DOWN_URL = "postgres://postgres@127.0.0.1:1/test";
const run = `${process.pid}_${randomBytes(3).toString("hex")}`;
const schemas: string[] = [];
const newSchema = (tag: string): string => {
  const s = `prism_unit_${tag}_${run}`;
  schemas.push(s);
  return s;
};

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

type Stores = Required<Omit<NamespaceStores, "close">>;
const b = (s: string): Buffer => Buffer.from(s);
const str = (u: Uint8Array | undefined): string => Buffer.from(u ?? []).toString();
const logs: string[] = [];

function open(clock: Clock, options: Record<string, unknown>): PgInstance {
  return driver.create(optionsSchema.parse(options), { clock, log: (l, m) => logs.push(`${l} ${m}`) }) as PgInstance;
}

let sql: pg.Client | undefined;
let skip: string | undefined;

before(async () => {
  const c = new pg.Client({ connectionString: URL_, connectionTimeoutMillis: 2000 });
  c.on("error", () => {});
  try {
    await c.connect();
    sql = c;
  } catch (e) {
    skip = `no PostgreSQL at ${URL_}: ${(e as Error).message}`;
  }
});

after(async () => {
  if (!sql) return;
  for (const s of schemas) await sql.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
  await sql.end();
});

/** A fresh namespace on a shared (per-clock) schema; closes the instance after the test. */
function withNs(
  t: { after: (fn: () => Promise<void>) => void; skip: (why?: string) => void },
  opts: { limits?: Partial<NamespaceLimits>; ns?: string; schema?: string; clock?: ManualClock } = {},
): { s: Stores; clock: ManualClock; inst: PgInstance; schema: string; ns: string } | undefined {
  if (skip) {
    t.skip(skip);
    return undefined;
  }
  const clock = opts.clock ?? new ManualClock();
  const schema = opts.schema ?? sharedSchema;
  const inst = open(clock, { url: URL_, schema, pool_max: 4 });
  t.after(() => inst.close());
  const ns = opts.ns ?? `ns_${randomBytes(4).toString("hex")}`;
  const s = inst.namespace(ns, { ...LIMITS, ...opts.limits }) as Stores;
  return { s, clock, inst, schema, ns };
}
const sharedSchema = newSchema("main");

async function rejectsWith(p: Promise<unknown>, reason: string, message?: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof PrismError, `a PrismError, got ${String(e)}`);
    assert.equal(e.reason, reason, e.message);
    if (message) assert.match(e.message, message);
    return true;
  });
}

describe("postgres driver: options and claims", () => {
  test("claims every interface; options have defaults and are validated", () => {
    assert.equal(driver.interfaces.length, 19); // every interface, keyvalue_outbox and the four *_idempotent included
    const d = optionsSchema.parse({});
    assert.equal(d.url, "postgres://postgres@127.0.0.1:5432/test");
    assert.equal(d.schema, "prism");
    assert.equal(d.pool_max, 10);
    assert.equal(optionsSchema.safeParse({ schema: "bad-name" }).success, false);
    assert.equal(optionsSchema.safeParse({ schema: 'x"; DROP' }).success, false);
    assert.equal(optionsSchema.safeParse({ pool_max: 0 }).success, false);
    assert.equal(optionsSchema.safeParse({ bogus: 1 }).success, false);
  });

  test("prefixUpperBound increments the last code point", () => {
    assert.equal(prefixUpperBound(""), null);
    assert.equal(prefixUpperBound("ab"), "ac");
    assert.equal(prefixUpperBound("a%"), "a&");
    assert.equal(prefixUpperBound("a\u{10FFFF}"), "b");
    assert.equal(prefixUpperBound("a\uD7FF"), "a\uE000");
  });
});

describe("postgres driver: PostgreSQL down", () => {
  test("creating the instance does not throw; calls fail promptly with UNAVAILABLE; health reports it", async (t) => {
    const inst = open(systemClock, { url: DOWN_URL, schema: "prism_down", connect_timeout_ms: 2000 });
    t.after(() => inst.close());
    const s = inst.namespace("users", LIMITS) as Stores;
    await rejectsWith(s.keyvalue.get("k"), "PRISM_ERR_BACKEND_UNAVAILABLE", /127\.0\.0\.1:1/);
    await rejectsWith(s.keyvalue.set("k", b("v"), {}), "PRISM_ERR_BACKEND_UNAVAILABLE");
    await rejectsWith(s.queue.enqueue("q", b("x"), {}, 0), "PRISM_ERR_BACKEND_UNAVAILABLE");
    await rejectsWith(s.queue.dequeue("q", { maxMessages: 1, visibilityTimeoutMs: 1000, waitMs: 5000 }), "PRISM_ERR_BACKEND_UNAVAILABLE");
    await rejectsWith(s.stream.append("s", b("x"), {}), "PRISM_ERR_BACKEND_UNAVAILABLE");
    const sink = { onMessage: () => assert.fail("no message expected"), onError: () => {} };
    await rejectsWith(s.pubsub.subscribe("a.b", sink), "PRISM_ERR_BACKEND_UNAVAILABLE");
    await rejectsWith(s.pubsub.publish("a.b", b("x"), {}), "PRISM_ERR_BACKEND_UNAVAILABLE");
    const h = await inst.health();
    assert.equal(h.ok, false);
    assert.match(h.message, /127\.0\.0\.1:1/);
  });

  test("a server with a namespace on a down PostgreSQL starts, and the namespace answers 503 UNAVAILABLE", async () => {
    const config = await validateConfig(
      { namespaces: [{ name: `down-${run}`, primitives: ["keyvalue"], backend: { type: "postgres", url: DOWN_URL, schema: "prism_down" } }] },
      "test",
    );
    const server = await startServer({ config, grpcPort: 0, httpPort: 0, log: () => {} });
    try {
      const res = await fetch(`http://127.0.0.1:${server.httpPort}/v1/ns/down-${run}/kv/k`);
      assert.equal(res.status, 503);
      const body = (await res.json()) as { error: { code: number; reason: string } };
      assert.equal(body.error.code, Code.UNAVAILABLE);
      assert.equal(body.error.reason, "PRISM_ERR_BACKEND_UNAVAILABLE");
    } finally {
      await server.close();
    }
  });
});

/** A TCP proxy to PostgreSQL that a test can cut and restore on the same port (the shared server keeps running). */
class CuttableProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;
  async start(): Promise<void> {
    const target = new URL(URL_);
    this.server = createServer((client) => {
      const upstream = connect(Number(target.port || 5432), target.hostname);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on("error", () => {});
        s.on("close", () => (this.sockets.delete(s), client.destroy(), upstream.destroy()));
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((r) => this.server!.listen(this.port, "127.0.0.1", r));
    this.port = (this.server.address() as { port: number }).port;
  }
  async cut(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server!.close(() => r()));
  }
}

describe("postgres driver: outage and recovery", () => {
  test("a dropped server: calls answer UNAVAILABLE, subscribers get onError; when it returns the same instance works again", async (t) => {
    if (skip) return t.skip(skip);
    const proxy = new CuttableProxy();
    await proxy.start();
    const inst = open(systemClock, { url: `postgres://postgres@127.0.0.1:${proxy.port}/test`, schema: sharedSchema, connect_timeout_ms: 2000 });
    t.after(() => inst.close());
    const s = inst.namespace(`outage_${run}`, LIMITS) as Stores;
    assert.equal(await s.keyvalue.set("k", b("before"), {}), 1);
    let subError: Error | undefined;
    await s.pubsub.subscribe("t", { onMessage: () => {}, onError: (e) => (subError = e) });

    await proxy.cut();
    await rejectsWith(s.keyvalue.get("k"), "PRISM_ERR_BACKEND_UNAVAILABLE");
    assert.equal((await inst.health()).ok, false);
    for (let i = 0; i < 100 && !subError; i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(subError instanceof PrismError && subError.code === Code.UNAVAILABLE, `subscriber told: ${String(subError)}`);

    await proxy.start(); // same port
    let got: string | undefined;
    for (let i = 0; i < 50 && got === undefined; i++) {
      got = await s.keyvalue.get("k").then((r) => str(r?.value), () => undefined);
      if (got === undefined) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(got, "before", "the acknowledged write is there and the pool reconnected by itself");
    assert.equal(await s.keyvalue.set("k", b("after"), {}), 2);
    const col: PubSubMessage[] = [];
    let sub;
    for (let i = 0; i < 30 && !sub; i++) {
      sub = await s.pubsub.subscribe("t", { onMessage: (m) => col.push(m), onError: () => {} }).catch(() => undefined);
      if (!sub) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(sub, "subscribe works again");
    await s.pubsub.publish("t", b("back"), {});
    for (let i = 0; i < 100 && !col.length; i++) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(col.map((m) => str(m.payload)), ["back"]);
    await sub.close();
    await proxy.cut();
  });
});

describe("postgres driver: schema", () => {
  test("several instances starting at once on a new schema all migrate it safely, to one version row", async (t) => {
    if (skip) return t.skip(skip);
    const schema = newSchema("race");
    const insts = Array.from({ length: 4 }, () => open(systemClock, { url: URL_, schema, pool_max: 2 }));
    t.after(() => Promise.all(insts.map((i) => i.close())).then(() => {}));
    const versions = await Promise.all(insts.map((i, n) => (i.namespace("ns", LIMITS) as Stores).keyvalue.set(`k${n}`, b("v"), {})));
    assert.deepEqual(versions, [1, 1, 1, 1]);
    const r = await sql!.query(`SELECT version FROM "${schema}".schema_version`);
    assert.deepEqual(r.rows, [{ version: SCHEMA_VERSION }]);
    assert.ok((await insts[0]!.health()).ok);
  });
});

describe("postgres driver: keyvalue", () => {
  test("set/get/delete/exists with rising versions; batch ops, duplicate keys in a batch", async (t) => {
    const c = withNs(t);
    if (!c) return;
    const kv = c.s.keyvalue;
    assert.equal(await kv.get("k"), null);
    assert.equal(await kv.set("k", b("v1"), {}), 1);
    assert.equal(await kv.set("k", b("v2"), {}), 2);
    assert.deepEqual(await kv.get("k").then((r) => r && [str(r.value), r.version]), ["v2", 2]);
    assert.equal(await kv.exists("k"), true);
    assert.equal(await kv.delete("k"), true);
    assert.equal(await kv.delete("k"), false);
    assert.equal(await kv.set("empty", new Uint8Array(0), {}), 1);
    assert.equal((await kv.get("empty"))?.value.length, 0);

    assert.deepEqual(await kv.batchSet!([{ key: "a", value: b("1") }, { key: "b", value: b("2") }], undefined), [1, 1]);
    assert.deepEqual(await kv.batchSet!([{ key: "a", value: b("x") }, { key: "c", value: b("y") }, { key: "a", value: b("z") }], undefined), [2, 1, 3]);
    assert.deepEqual((await kv.batchGet!(["a", "missing", "c", "a"])).map((r) => r && str(r.value)), ["z", null, "y", "z"]);
    assert.equal(await kv.batchDelete!(["a", "c", "missing", "a"]), 2);
    assert.deepEqual(await kv.batchGet!(["a", "b"]).then((r) => r.map((x) => x && str(x.value))), [null, "2"]);
  });

  test("TTL by the injected clock: expired keys absent everywhere, version restarts, the sweeper deletes them", async (t) => {
    const c = withNs(t);
    if (!c) return;
    const { clock, inst } = c;
    const kv = c.s.keyvalue;
    await kv.set("t:a", b("a"), { ttlMs: 1000 });
    await kv.set("t:a", b("a2"), { ttlMs: 1000 });
    await kv.set("t:b", b("b"), {});
    assert.deepEqual(await kv.ttl!("t:a"), { ttlMs: 1000 });
    assert.deepEqual(await kv.ttl!("t:b"), { ttlMs: null });
    clock.advance(999);
    assert.equal(str((await kv.get("t:a"))?.value), "a2");
    clock.advance(1);
    assert.equal(await kv.get("t:a"), null);
    assert.equal(await kv.exists("t:a"), false);
    assert.equal(await kv.ttl!("t:a"), null);
    assert.deepEqual((await kv.batchGet!(["t:a", "t:b"])).map((x) => x && str(x.value)), [null, "b"]);
    assert.deepEqual((await kv.scan!("t:", "", 10, true)).items.map((i) => i.key), ["t:b"]);
    assert.equal(await kv.delete("t:a"), false);
    assert.equal(await kv.expire!("t:a", 1000), false);
    assert.equal(await kv.persist!("t:a"), false);
    // CAS treats the expired row as absent, and its version restarts.
    await rejectsWith(kv.set("t:a", b("x"), { expectedVersion: 2 }), "PRISM_ERR_CAS_CONFLICT", /current version is 0/);
    assert.equal(await kv.set("t:a", b("again"), { ifAbsent: true }), 1);
    await kv.set("t:e", b("e"), { ttlMs: 10 });
    clock.advance(10);
    assert.equal(await kv.set("t:e", b("e2"), { expectedVersion: 0 }), 1);

    assert.equal(await kv.expire!("t:b", 500), true);
    assert.deepEqual(await kv.ttl!("t:b"), { ttlMs: 500 });
    assert.equal(await kv.persist!("t:b"), true);
    clock.advance(1000);
    assert.equal(await kv.exists("t:b"), true);

    await kv.set("t:gone", b("g"), { ttlMs: 5 });
    clock.advance(5);
    assert.ok((await inst.sweep()) >= 1, "the sweeper deleted the expired row");
    const r = await sql!.query(`SELECT count(*)::int AS n FROM "${c.schema}".kv WHERE ns = $1 AND key = 't:gone'`, [c.ns]);
    assert.equal(r.rows[0].n, 0);
  });

  test("CAS conflicts name the key and the versions", async (t) => {
    const c = withNs(t);
    if (!c) return;
    const kv = c.s.keyvalue;
    const v = await kv.set("k", b("1"), {});
    await rejectsWith(kv.set("k", b("2"), { ifAbsent: true }), "PRISM_ERR_CAS_CONFLICT", /"k": already exists/);
    await rejectsWith(kv.set("k", b("2"), { expectedVersion: v + 1 }), "PRISM_ERR_CAS_CONFLICT", /expected version 2, current version is 1/);
    await rejectsWith(kv.set("k", b("2"), { expectedVersion: 0 }), "PRISM_ERR_CAS_CONFLICT", /current version is 1/);
    assert.equal(await kv.set("k", b("2"), { expectedVersion: v }), v + 1);
  });

  test("scan: byte order, LIKE wildcards in the prefix are plain characters, keyset cursor", async (t) => {
    const c = withNs(t);
    if (!c) return;
    const kv = c.s.keyvalue;
    const keys = ["a%_1", "a%_2", "a%x", "a_%", "ab", "a\uFF21", "a\u{1F511}", "a%_\u{10FFFF}"];
    for (const k of keys) await kv.set(k, b(k), {});
    const page = await kv.scan!("a%_", "", 10, false);
    assert.deepEqual(page.items.map((i) => i.key), ["a%_1", "a%_2", "a%_\u{10FFFF}"]);
    assert.equal(str(page.items[0]!.value), "a%_1");
    // UTF-8 byte order: U+FF21 (EF BC A1) before U+1F511 (F0 9F 94 91).
    const all = await kv.scan!("a", "", 100, true);
    assert.deepEqual(all.items.map((i) => i.key), [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y))));
    assert.equal(all.items[0]!.value, undefined, "keysOnly");
    const p1 = await kv.scan!("a", "", 3, true);
    assert.equal(p1.items.length, 3);
    const p2 = await kv.scan!("a", p1.nextCursor, 100, true);
    assert.equal(p2.nextCursor, "");
    assert.deepEqual([...p1.items, ...p2.items].map((i) => i.key), all.items.map((i) => i.key));
  });

  test("namespaces that prefix each other are isolated (users / usersAbc), scans included", async (t) => {
    const tag = randomBytes(3).toString("hex");
    const a = withNs(t, { ns: `users${tag}` });
    if (!a) return;
    const bns = a.inst.namespace(`users${tag}Abc`, LIMITS) as Stores;
    await a.s.keyvalue.set("k1", b("users"), {});
    await bns.keyvalue.set("k1", b("usersAbc"), {});
    await bns.keyvalue.set("k2", b("usersAbc"), {});
    assert.equal(str((await a.s.keyvalue.get("k1"))?.value), "users");
    assert.equal(await a.s.keyvalue.get("k2"), null);
    assert.deepEqual((await a.s.keyvalue.scan!("", "", 100, true)).items.map((i) => i.key), ["k1"]);
    assert.deepEqual((await bns.keyvalue.scan!("", "", 100, true)).items.map((i) => i.key), ["k1", "k2"]);
    await a.s.queue.enqueue("jobs", b("x"), {}, 0);
    assert.deepEqual(await bns.queue.dequeue("jobs", { maxMessages: 10, visibilityTimeoutMs: 1000, waitMs: 0 }), []);
    await a.s.stream.append("s", b("x"), {});
    assert.deepEqual(await bns.stream.read("s", 0, 10), []);
  });

  test("a key PostgreSQL cannot store (U+0000) is refused with INVALID_ARGUMENT", async (t) => {
    const c = withNs(t);
    if (!c) return;
    await rejectsWith(c.s.keyvalue.set("a\u0000b", b("x"), {}), "PRISM_ERR_INVALID_ARGUMENT");
  });
});

describe("postgres driver: queue", () => {
  const opts = (o: Partial<{ maxMessages: number; visibilityTimeoutMs: number; waitMs: number; signal: AbortSignal }> = {}) => ({
    maxMessages: 10,
    visibilityTimeoutMs: 1000,
    waitMs: 0,
    ...o,
  });

  test("leases by the injected clock; delay; extend; stale receipts; dead-letter with attributes; a .dlq queue keeps its messages", async (t) => {
    const c = withNs(t);
    if (!c) return;
    const { clock } = c;
    const q = c.s.queue;
    const id = await q.enqueue("jobs", b("p"), { k: "v" }, 0);
    await q.enqueue("jobs", b("later"), {}, 500);
    const [m1] = await q.dequeue("jobs", opts());
    assert.equal(m1?.messageId, id);
    assert.equal(m1?.deliveryCount, 1);
    assert.deepEqual(await q.dequeue("jobs", opts()), []);
    clock.advance(500);
    assert.deepEqual((await q.dequeue("jobs", opts())).map((m) => str(m.payload)), ["later"]);
    await q.extendVisibility!("jobs", m1!.receipt, 2000);
    clock.advance(1000);
    assert.deepEqual((await q.dequeue("jobs", opts())).map((m) => str(m.payload)), ["later"], "p is still leased (extended)");
    clock.advance(1000);
    const again = await q.dequeue("jobs", opts());
    const m2 = again.find((m) => m.messageId === id)!;
    assert.equal(m2.deliveryCount, 2);
    await rejectsWith(q.ack("jobs", m1!.receipt), "PRISM_ERR_STALE_RECEIPT");
    await rejectsWith(q.ack("jobs", "garbage"), "PRISM_ERR_INVALID_ARGUMENT"); // malformed, not stale
    await rejectsWith(q.ack("jobs", "99999999999999999999.x"), "PRISM_ERR_INVALID_ARGUMENT"); // no such id can be issued: malformed
    await rejectsWith(q.ack("other", m2.receipt), "PRISM_ERR_STALE_RECEIPT");
    await q.nack("jobs", m2.receipt, 0);
    const [m3] = (await q.dequeue("jobs", opts())).filter((m) => m.messageId === id);
    assert.equal(m3?.deliveryCount, 3);
    await q.nack("jobs", m3!.receipt, 0);
    assert.deepEqual((await q.dequeue("jobs", opts())).filter((m) => m.messageId === id), [], "moved after 3 deliveries");
    const [d] = await q.dequeue("jobs.dlq", opts());
    assert.equal(d?.messageId, id);
    assert.equal(str(d?.payload), "p");
    assert.equal(d?.deliveryCount, 1);
    assert.deepEqual(
      { ...d!.attributes, "prism-original-enqueued-at": "" },
      { k: "v", "prism-dlq-reason": "max-deliveries", "prism-original-queue": "jobs", "prism-delivery-count": "3", "prism-original-enqueued-at": "" },
    );
    // The dead-letter queue does not dead-letter further.
    let last = d!;
    for (let i = 0; i < 4; i++) {
      await q.nack("jobs.dlq", last.receipt, 0);
      [last] = await q.dequeue("jobs.dlq", opts());
      assert.ok(last, `still on the DLQ after ${i + 2} deliveries`);
    }
    assert.deepEqual(await q.dequeue("jobs.dlq.dlq", opts()), []);
  });

  test("long poll: woken by an enqueue from another instance (another process) on the same schema", async (t) => {
    const c = withNs(t);
    if (!c) return;
    const other = open(c.clock, { url: URL_, schema: c.schema, pool_max: 2 });
    t.after(() => other.close());
    const q2 = (other.namespace(c.ns, LIMITS) as Stores).queue;
    const waiting = c.s.queue.dequeue("lp", opts({ waitMs: 15_000 }));
    await new Promise((r) => setTimeout(r, 100));
    const id = await q2.enqueue("lp", b("hello"), {}, 0);
    const got = await waiting;
    assert.deepEqual(got.map((m) => m.messageId), [id]);
  });

  test("enqueue NOTIFYs the wake channel with the queue's key once the row is committed", async (t) => {
    const c = withNs(t);
    if (!c) return;
    const other = open(c.clock, { url: URL_, schema: c.schema, pool_max: 2 });
    t.after(() => other.close());
    let resolve!: (key: string) => void;
    const heard = new Promise<string>((r) => (resolve = r));
    const handler = (key: string): void => resolve(key);
    await c.inst.listener.listen(c.inst.wakeChannel, handler, () => {});
    t.after(async () => c.inst.listener.unlisten(c.inst.wakeChannel, handler));
    await (other.namespace(c.ns, LIMITS) as Stores).queue.enqueue("woken", b("x"), {}, 0);
    // The key, then a tab and how many rows arrived (waiters.ts wakes only as many long polls as can take them).
    assert.equal(await heard, `q\n${c.ns}\nwoken\t1`);
  });

  test("long poll: a row inserted without any NOTIFY is still delivered (polling fallback)", async (t) => {
    const c = withNs(t);
    if (!c) return;
    const waiting = c.s.queue.dequeue("silent", opts({ waitMs: 15_000 }));
    await new Promise((r) => setTimeout(r, 100));
    const now = c.clock.now();
    await sql!.query(
      `INSERT INTO "${c.schema}".queue (ns, queue, payload, enqueued_at, visible_at) VALUES ($1, 'silent', '\\x6869'::bytea, $2, $2)`,
      [c.ns, now],
    );
    const got = await waiting;
    assert.deepEqual(got.map((m) => str(m.payload)), ["hi"]);
  });

  test("long poll: an aborted signal ends the wait with []", async (t) => {
    const c = withNs(t);
    if (!c) return;
    const ac = new AbortController();
    const waiting = c.s.queue.dequeue("never", opts({ waitMs: 20_000, signal: ac.signal }));
    setTimeout(() => ac.abort(), 50);
    assert.deepEqual(await waiting, []);
  });
});

describe("postgres driver: pubsub", () => {
  function collector(): { msgs: PubSubMessage[]; errors: Error[]; next: (n: number) => Promise<PubSubMessage[]>; sink: { onMessage(m: PubSubMessage): void; onError(e: Error): void } } {
    const msgs: PubSubMessage[] = [];
    const errs: Error[] = [];
    let waiter: (() => void) | undefined;
    return {
      msgs,
      errors: errs,
      sink: {
        onMessage: (m) => (msgs.push(m), waiter?.()),
        onError: (e) => (errs.push(e), waiter?.()),
      },
      next: async (n) => {
        while (msgs.length < n && !errs.length) await new Promise<void>((r) => (waiter = r));
        return msgs.slice(0, n);
      },
    };
  }

  test("a message across instances on the same schema; wildcard matching; isolated per namespace", async (t) => {
    const c = withNs(t);
    if (!c) return;
    const other = open(systemClock, { url: URL_, schema: c.schema, pool_max: 2 });
    t.after(() => other.close());
    const pub = (other.namespace(c.ns, LIMITS) as Stores).pubsub;
    const otherNs = (other.namespace(`${c.ns}x`, LIMITS) as Stores).pubsub;
    const col = collector();
    const sub = await c.s.pubsub.subscribe("orders.>", col.sink);
    await otherNs.publish("orders.a", b("other namespace"), {});
    await pub.publish("users.a", b("no"), {});
    const id = await pub.publish("orders.eu.created", new Uint8Array([0, 1, 255]), { k: "v" });
    const [m] = await col.next(1);
    assert.equal(m?.messageId, id);
    assert.equal(m?.topic, "orders.eu.created");
    assert.deepEqual([...m!.payload], [0, 1, 255]);
    assert.deepEqual({ ...m!.attributes }, { k: "v" });
    assert.ok(m!.publishTimeMs > 0);
    await sub.close();
  });

  test(`a message above the NOTIFY limit (${MAX_NOTIFY_BYTES} bytes encoded) is refused with INVALID_ARGUMENT naming payload; one just under is delivered`, async (t) => {
    const c = withNs(t);
    if (!c) return;
    const col = collector();
    const sub = await c.s.pubsub.subscribe("big", col.sink);
    await assert.rejects(c.s.pubsub.publish("big", Buffer.alloc(6000, 1), {}), (e: unknown) => {
      assert.ok(e instanceof PrismError);
      assert.equal(e.code, Code.INVALID_ARGUMENT);
      assert.match(e.message, /^payload: .*7999 bytes/);
      return true;
    });
    const fits = Buffer.alloc(5900, 2);
    await c.s.pubsub.publish("big", fits, {});
    const [m] = await col.next(1);
    assert.equal(m?.payload.length, 5900, "the fitting message arrives whole (the refused one never did)");
    await sub.close();
  });
});

describe("postgres driver: stream", () => {
  test("retention by count and by age; offsets never repeat after trimming", async (t) => {
    const c = withNs(t, { limits: { streamMaxCount: 3, streamMaxAgeSeconds: 10 } });
    if (!c) return;
    const s = c.s.stream;
    for (let i = 1; i <= 5; i++) assert.equal(await s.append("log", b(`e${i}`), {}), i);
    assert.deepEqual((await s.read("log", 0, 10)).map((r) => r.offset), [3, 4, 5], "count retention");
    c.clock.advance(11_000);
    assert.equal(await s.append("log", b("e6"), {}), 6);
    assert.deepEqual((await s.read("log", 0, 10)).map((r) => r.offset), [6], "age retention");
  });

  test("consumer groups: reclaim after the claim timeout by the injected clock; ack; blocking read woken by append", async (t) => {
    const c = withNs(t, { limits: { streamClaimTimeoutSeconds: 5 } });
    if (!c) return;
    const s = c.s.stream;
    await s.append("jobs", b("a"), { x: "1" });
    await s.append("jobs", b("b"), {});
    const first = await s.readGroup!("jobs", "g", "c1", 10, 0);
    assert.deepEqual(first.map((r) => [r.offset, r.deliveryCount]), [[1, 1], [2, 1]]);
    assert.deepEqual({ ...first[0]!.attributes }, { x: "1" });
    assert.equal(await s.ackGroup!("jobs", "g", [1, 1, 7]), 1);
    c.clock.advance(4999);
    assert.deepEqual(await s.readGroup!("jobs", "g", "c2", 10, 0), []);
    c.clock.advance(1);
    assert.deepEqual((await s.readGroup!("jobs", "g", "c2", 10, 0)).map((r) => [r.offset, r.deliveryCount]), [[2, 2]]);
    const waiting = s.readGroup!("jobs", "g", "c1", 10, 15_000);
    await new Promise((r) => setTimeout(r, 100));
    const o = await s.append("jobs", b("c"), {});
    assert.deepEqual((await waiting).map((r) => r.offset), [o]);
  });
});

describe("postgres driver: Gets of one loop turn", () => {
  test("share one statement; each caller gets its own key's record (absent, expired and repeated keys too); a lone Get uses the single-key statement", async (t) => {
    if (skip) return t.skip(skip);
    // Count the executions of each prepared statement on the wire: a Bind message is 'B', its length,
    // the (empty) portal name and the statement name.
    const target = new URL(URL_);
    const proxy = new TcpProxy(target.hostname, Number(target.port || 5432));
    const port = await proxy.start();
    t.after(() => proxy.close());
    const clock = new ManualClock(Date.now());
    const inst = open(clock, { url: `postgres://postgres@127.0.0.1:${port}/test`, schema: sharedSchema });
    t.after(() => inst.close());
    const kv = (inst.namespace(`gets_${run}`, LIMITS) as Stores).keyvalue;
    const binds = (name: string) => (proxy.sent.match(new RegExp(`B[\\s\\S]{4}\\x00${name}\\x00`, "g")) ?? []).length;

    const n = 40;
    const versions = await kv.batchSet!(Array.from({ length: n }, (_, i) => ({ key: `k${i}`, value: b(`v${i}`) })), undefined);
    await kv.set("short", b("lived"), { ttlMs: 1000 });
    clock.advance(2000);

    const before = { one: binds("kv_get"), many: binds("kv_bget") };
    const keys = [...Array.from({ length: n }, (_, i) => `k${i}`), "absent", "short", "k7"];
    const got = await Promise.all(keys.map((k) => kv.get(k)));
    for (let i = 0; i < n; i++) assert.deepEqual(got[i] && { value: str(got[i]!.value), version: got[i]!.version }, { value: `v${i}`, version: versions[i] }, `k${i}`);
    assert.equal(got[n], null, "absent");
    assert.equal(got[n + 1], null, "expired");
    assert.equal(str(got[n + 2]!.value), "v7", "a key asked twice in one batch");
    assert.deepEqual({ one: binds("kv_get") - before.one, many: binds("kv_bget") - before.many }, { one: 0, many: 1 });

    const lone = await kv.get("k3");
    assert.equal(str(lone!.value), "v3");
    assert.deepEqual({ one: binds("kv_get") - before.one, many: binds("kv_bget") - before.many }, { one: 1, many: 1 });
  });
});
