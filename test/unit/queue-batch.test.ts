/**
 * Queue Enqueue / Ack coalesced per loop turn (common/turn-batch.ts) on the
 * real Redis and PostgreSQL drivers: each caller gets its own message id and
 * its own ack answer (a stale or repeated receipt fails only its own call);
 * long polls waiting when a batch arrives take its messages; and the
 * in-process wake-up accounting (common/local-wake.ts).
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { ManualClock } from "../../src/core/clock.js";
import { DEFAULT_LIMITS } from "../../src/config/schema.js";
import { PrismError } from "../../src/core/errors.js";
import type { BackendInstance, NamespaceLimits, QueueStore } from "../../src/backends/driver.js";
import { driver as redisDriver } from "../../src/backends/redis/index.js";
import type { RedisQueue } from "../../src/backends/redis/queue.js";
import { optionsSchema as redisOptions } from "../../src/backends/redis/options.js";
import { driver as pgDriver } from "../../src/backends/postgres/index.js";
import { optionsSchema as pgOptions } from "../../src/backends/postgres/options.js";
import { LocalWake } from "../../src/backends/common/local-wake.js";
import { TurnBatcher } from "../../src/backends/common/turn-batch.js";
import { Redis } from "ioredis";
import { deleteRedisPrefix } from "../helpers/redis-cleanup.js";

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const PG_URL = process.env.POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const run = `${process.pid}_${randomBytes(3).toString("hex")}`;
const limits: NamespaceLimits = { ...DEFAULT_LIMITS, maxDeliveries: 3, visibilityTimeoutSeconds: 30 };
const str = (u: Uint8Array) => Buffer.from(u).toString();
const lease = (max: number, waitMs = 0) => ({ maxMessages: max, visibilityTimeoutMs: 30_000, waitMs });

function reason(e: unknown): string {
  return e instanceof PrismError ? e.reason : String(e);
}

/** The same cases on each driver. */
function cases(name: string, queueStore: () => QueueStore) {
  describe(`${name}: batched enqueue and ack`, () => {
    it("enqueues of one turn: each caller gets the id of its own message; a delayed one stays hidden", async () => {
      const q = queueStore();
      const bodies = Array.from({ length: 60 }, (_, i) => `m${i}`);
      const [ids, delayedId] = await Promise.all([Promise.all(bodies.map((p, i) => q.enqueue("ids", Buffer.from(p), { i: String(i) }, 0))), q.enqueue("ids", Buffer.from("later"), {}, 60_000)]);
      assert.equal(new Set([...ids, delayedId]).size, 61, "distinct ids");
      const got = [...(await q.dequeue("ids", lease(100))), ...(await q.dequeue("ids", lease(100)))];
      assert.equal(got.length, 60, "the delayed message is not visible yet");
      for (const m of got) {
        const i = ids.indexOf(m.messageId);
        assert.ok(i >= 0, `id ${m.messageId} was returned to a caller`);
        assert.equal(str(m.payload), bodies[i]);
        assert.deepEqual({ i: m.attributes.i }, { i: String(i) });
      }
      // FIFO within the batch: the order the calls were made in.
      assert.deepEqual(got.map((m) => str(m.payload)), bodies);
    });

    it("a batch keeps binary payloads and attributes with quotes, backslashes and non-ASCII intact", async () => {
      const q = queueStore();
      // The 200 KB one goes alone (not in the batch's parameter): ids still match.
      const payloads = [Buffer.from([0, 34, 92, 255, 10]), Buffer.alloc(0), Buffer.from('{"a":"\\\\"}'), Buffer.alloc(200_000, 7)];
      const attrs: Record<string, string>[] = [{ 'q"k': 'v"\\', ü: "välue" }, {}, { "{": "}" }, { big: "1" }];
      const ids = await Promise.all(payloads.map((p, i) => q.enqueue("bin", p, attrs[i]!, 0)));
      const got = await q.dequeue("bin", lease(10));
      got.sort((x, y) => ids.indexOf(x.messageId) - ids.indexOf(y.messageId));
      assert.deepEqual(got.map((m) => m.messageId), ids);
      assert.deepEqual(got.map((m) => Buffer.from(m.payload).toString("hex")), payloads.map((p) => p.toString("hex")));
      assert.deepEqual(got.map((m) => m.attributes), attrs);
    });

    it("acks of one turn: each answer is its own; a receipt given twice succeeds once; a stale one fails alone", async () => {
      const q = queueStore();
      await Promise.all(["a", "b", "c", "d"].map((p) => q.enqueue("acks", Buffer.from(p), {}, 0)));
      const [a, b, c, d] = await q.dequeue("acks", lease(10));
      await q.ack("acks", d!.receipt);
      const results = await Promise.allSettled([q.ack("acks", a!.receipt), q.ack("acks", b!.receipt), q.ack("acks", b!.receipt), q.ack("acks", d!.receipt), q.ack("acks", c!.receipt)]);
      assert.deepEqual(
        results.map((r) => (r.status === "fulfilled" ? "ok" : reason(r.reason))),
        ["ok", "ok", "PRISM_ERR_STALE_RECEIPT", "PRISM_ERR_STALE_RECEIPT", "ok"],
      );
      assert.deepEqual(await q.dequeue("acks", lease(10)), [], "acked messages are gone");
    });

    it("long polls waiting when a batch arrives take all of its messages, each once", async () => {
      const q = queueStore();
      const waiting = Array.from({ length: 4 }, () => q.dequeue("wake", lease(1, 10_000)));
      // Let every poll make its first (empty) attempt and wait.
      await new Promise((r) => setTimeout(r, 100));
      await Promise.all(["w1", "w2", "w3", "w4"].map((p) => q.enqueue("wake", Buffer.from(p), {}, 0)));
      const got = (await Promise.all(waiting)).flat().map((m) => str(m.payload));
      assert.deepEqual(got.sort(), ["w1", "w2", "w3", "w4"]);
    });
  });
}

let redisInst: BackendInstance | undefined;
const redisPrefix = `prism-qbatch-${run}`;
before(() => {
  redisInst = redisDriver.create(redisOptions.parse({ url: REDIS_URL, key_prefix: redisPrefix }), { clock: new ManualClock(Date.now()), log: () => {} });
});
after(async () => {
  await redisInst?.close();
  const raw = new Redis(REDIS_URL);
  await deleteRedisPrefix(raw, redisPrefix);
  raw.disconnect();
});
let redisN = 0;
cases("redis", () => redisInst!.namespace(`qb${redisN++}`, limits).queue!);

describe("redis: wake-ups across Prism instances (PUBLISH on the namespace's q:wake channel)", () => {
  let other: BackendInstance | undefined;
  before(() => {
    // A second instance on the same Redis and prefix: another Prism process, or another worker.
    other = redisDriver.create(redisOptions.parse({ url: REDIS_URL, key_prefix: redisPrefix }), { clock: new ManualClock(Date.now()), log: () => {} });
  });
  after(async () => {
    await other?.close();
  });
  /** Resolves once q's wait made it subscribe to the wake channel (the subscription is live). */
  async function listening(q: RedisQueue): Promise<void> {
    const view = q as unknown as { listening: Promise<void> | undefined };
    while (view.listening === undefined) await new Promise((r) => setTimeout(r, 5));
    await view.listening;
  }

  it("an enqueue through one instance wakes a dequeue waiting on the other; its own wake-ups are ignored", async () => {
    const ns = `qbx${redisN++}`;
    const a = redisInst!.namespace(ns, limits).queue as RedisQueue;
    const b = other!.namespace(ns, limits).queue as RedisQueue;
    const waiting = b.dequeue("x", lease(1, 20_000));
    await listening(b);
    await a.enqueue("x", Buffer.from("hello"), {}, 0);
    const [m] = await waiting;
    assert.equal(str(m!.payload), "hello");
    assert.ok(b.remoteWakeups >= 1, "b heard a's wake-up");
    // b's own enqueue, while another of its dequeues waits: answered by the local wake-up, not counted as remote.
    const before = b.remoteWakeups;
    const again = b.dequeue("x", lease(1, 20_000));
    await new Promise((r) => setTimeout(r, 50));
    await b.enqueue("x", Buffer.from("own"), {}, 0);
    assert.equal(str((await again)[0]!.payload), "own");
    assert.equal(b.remoteWakeups, before, "b ignores the wake-ups it sent itself");
    await b.ack("x", m!.receipt);
  });

  it("a nack to visible-now through one instance wakes a dequeue waiting on the other", async () => {
    const ns = `qbx${redisN++}`;
    const a = redisInst!.namespace(ns, limits).queue as RedisQueue;
    const b = other!.namespace(ns, limits).queue as RedisQueue;
    await a.enqueue("n", Buffer.from("retry"), {}, 0);
    const [m1] = await a.dequeue("n", lease(1));
    const waiting = b.dequeue("n", lease(1, 20_000));
    await listening(b);
    const heard = b.remoteWakeups;
    await a.nack("n", m1!.receipt, 0);
    const [m2] = await waiting;
    assert.equal(str(m2!.payload), "retry");
    assert.equal(m2!.deliveryCount, 2);
    assert.ok(b.remoteWakeups > heard, "b heard the nack's wake-up");
  });

  it("closing the namespace stops listening", async () => {
    const ns = `qbx${redisN++}`;
    const stores = other!.namespace(ns, limits);
    const b = stores.queue as RedisQueue;
    const waiting = b.dequeue("c", lease(1, 300));
    await listening(b);
    assert.deepEqual(await waiting, []);
    await stores.close?.();
    assert.equal((b as unknown as { listening: unknown }).listening, undefined);
  });
});

const pgSchema = `prism_unit_qbatch_${run}`;
let pgInst: BackendInstance | undefined;
before(() => {
  pgInst = pgDriver.create(pgOptions.parse({ url: PG_URL, schema: pgSchema, pool_max: 4 }), { clock: new ManualClock(Date.now()), log: () => {} });
});
after(async () => {
  await pgInst?.close();
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  await c.query(`DROP SCHEMA IF EXISTS "${pgSchema}" CASCADE`);
  await c.end();
});
let pgN = 0;
cases("postgres", () => pgInst!.namespace(`qb${pgN++}`, limits).queue!);

describe("LocalWake", () => {
  it("wakes as many sleepers as can take the rows, oldest first; a notify since the attempt skips the sleep", async () => {
    const w = new LocalWake();
    const g = w.generation();
    const woken: number[] = [];
    const sleeps = [0, 1, 2, 3].map((i) => w.sleep("k", 60_000, 2, g).then(() => woken.push(i)));
    w.notify("other", 10);
    assert.equal(await w.sleep("k", 60_000, 2, g), true, "a notify happened since g: no sleep");
    w.notify("k", 3); // 2 + 2 ≥ 3: two sleepers
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(woken, [0, 1]);
    w.notify("k");
    await Promise.all(sleeps);
    assert.deepEqual(woken, [0, 1, 2, 3]);
    const ac = new AbortController();
    const aborted = w.sleep("k", 60_000, 1, w.generation(), ac.signal);
    ac.abort();
    assert.equal(await aborted, false);
  });
});

describe("TurnBatcher", () => {
  it("one run per key and turn, answers aligned; an Error rejects only its call; a full batch goes out at once", async () => {
    const runs: [string, number[]][] = [];
    const b = new TurnBatcher<number, number>(async (key, items) => {
      runs.push([key, [...items]]);
      return items.map((i) => (i < 0 ? new Error(`neg ${i}`) : i * 10));
    }, 3);
    const r = await Promise.allSettled([b.add("a", 1), b.add("b", 2), b.add("a", -3), b.add("a", 4), b.add("a", 5)]);
    assert.deepEqual(
      r.map((x) => (x.status === "fulfilled" ? x.value : (x.reason as Error).message)),
      [10, 20, "neg -3", 40, 50],
    );
    assert.deepEqual(runs, [
      ["a", [1, -3, 4]],
      ["b", [2]],
      ["a", [5]],
    ]);
    runs.length = 0;
    const heavy = new TurnBatcher<number, number>(async (key, items) => (runs.push([key, [...items]]), items), 100, 10);
    await Promise.all([heavy.add("w", 1, 6), heavy.add("w", 2, 6), heavy.add("w", 3, 1)]);
    assert.deepEqual(runs, [
      ["w", [1, 2]],
      ["w", [3]],
    ], "a batch that reaches maxWeight goes out at once");
  });
});
