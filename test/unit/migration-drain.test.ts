/**
 * Queue migration, drain then switch: finish is refused while `from` holds a
 * message, visible, delayed or leased, as `from`'s backend counts it, whichever
 * Prism instance leased it. Two instances are two DrainingQueueStores over two
 * driver instances on one backend (memstore: one instance, it lives in one
 * process); the one asked to finish never saw the queue nor the lease.
 * A `from` whose driver cannot count makes finish say it cannot verify.
 */
import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { Redis } from "ioredis";
import { ManualClock } from "../../src/core/clock.js";
import { DEFAULT_LIMITS } from "../../src/config/schema.js";
import { PrismError } from "../../src/core/errors.js";
import type { BackendInstance, NamespaceLimits, QueueStore } from "../../src/backends/driver.js";
import { DrainingQueueStore } from "../../src/migrations/queue.js";
import { driver as memDriver } from "../../src/backends/memstore/index.js";
import { driver as sqliteDriver } from "../../src/backends/sqlite/index.js";
import { optionsSchema as sqliteOptions } from "../../src/backends/sqlite/options.js";
import { driver as redisDriver } from "../../src/backends/redis/index.js";
import { optionsSchema as redisOptions } from "../../src/backends/redis/options.js";
import { driver as pgDriver } from "../../src/backends/postgres/index.js";
import { optionsSchema as pgOptions } from "../../src/backends/postgres/options.js";
import { deleteRedisPrefix } from "../helpers/redis-cleanup.js";
import { driver as natsDriver } from "../../src/backends/nats/index.js";
import { optionsSchema as natsOptions } from "../../src/backends/nats/options.js";
import { cleanupPrefix } from "./nats-cleanup.js";

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const PG_URL = process.env.POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const run = `${process.pid}_${randomBytes(3).toString("hex")}`;
const limits: NamespaceLimits = { ...DEFAULT_LIMITS, maxDeliveries: 100 };
const dir = mkdtempSync(join(tmpdir(), "prism-drain-"));
const redisPrefix = `prism-drain-${run}`;
const pgSchema = `prism_drain_${run}`;
const NATS_URL = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const natsPrefix = `drain-${randomBytes(4).toString("hex")}`;
const opened: BackendInstance[] = [];

after(async () => {
  for (const i of opened) await i.close().catch(() => {});
  const r = new Redis(REDIS_URL);
  await deleteRedisPrefix(r, redisPrefix).catch(() => {});
  r.disconnect();
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  await c.query(`DROP SCHEMA IF EXISTS "${pgSchema}" CASCADE`).catch(() => {});
  await c.end();
  await cleanupPrefix(NATS_URL, natsPrefix).catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

const lease = (ms: number) => ({ maxMessages: 10, visibilityTimeoutMs: ms, waitMs: 0 });

async function refusal(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof PrismError, String(e));
    assert.equal(e.code, 9, "FAILED_PRECONDITION");
    return e.message;
  }
  assert.fail("finish was not refused");
}

/** Two instances of the same backend (two processes' connections), one clock. */
const backends: [string, (clock: ManualClock) => [BackendInstance, BackendInstance]][] = [
  ["memstore", (clock) => {
    const one = memDriver.create({}, { clock, log: () => {} });
    return [one, one];
  }],
  ["sqlite", (clock) => {
    const o = sqliteOptions.parse({ path: join(dir, "from.db") });
    return [sqliteDriver.create(o, { clock, log: () => {} }), sqliteDriver.create(o, { clock, log: () => {} })];
  }],
  ["redis", (clock) => {
    const o = redisOptions.parse({ url: REDIS_URL, key_prefix: redisPrefix });
    return [redisDriver.create(o, { clock, log: () => {} }), redisDriver.create(o, { clock, log: () => {} })];
  }],
  ["postgres", (clock) => {
    const o = pgOptions.parse({ url: PG_URL, schema: pgSchema, pool_max: 2 });
    return [pgDriver.create(o, { clock, log: () => {} }), pgDriver.create(o, { clock, log: () => {} })];
  }],
];

for (const [name, make] of backends) {
  describe(`queue drain check on ${name} as from`, () => {
    it("refuses finish while another instance holds a lease, a message is delayed or visible; passes once all are acked", async () => {
      const clock = new ManualClock(Date.now());
      const [a, b] = make(clock);
      opened.push(a, b);
      const ns = `drain${randomBytes(3).toString("hex")}`;
      const fromA = a.namespace(ns, limits).queue!;
      const fromB = b.namespace(ns, limits).queue!;
      const to = memDriver.create({}, { clock, log: () => {} }).namespace(ns, limits).queue!;
      // A backlog left on `from` before the migration: 3 on work, 1 delayed on later.
      for (const p of ["m1", "m2", "m3"]) await fromA.enqueue("work", Buffer.from(p), {}, 0);
      await fromA.enqueue("later", Buffer.from("d1"), {}, 60_000);
      const instanceA = new DrainingQueueStore(fromA, to);
      const instanceB = new DrainingQueueStore(fromB, to);
      // Instance A leases two of them and has not acked yet.
      const held = await instanceA.dequeue("work", { ...lease(30_000), maxMessages: 2 });
      assert.equal(held.length, 2);
      assert.ok(held.every((m) => m.receipt.startsWith("f~")));
      // Instance B never dequeued anything: it still sees what `from` holds.
      let why = await refusal(instanceB.assertDrained("old"));
      assert.match(why, /"old" still holds 4 messages in queues "later": 1 \(0 visible, 1 delayed, 0 leased and not acked yet\), "work": 3 \(1 visible, 0 delayed, 2 leased and not acked yet\)/);
      // B takes the visible one; its lease runs out unacked: visible again, still counted.
      const [m3] = await instanceB.dequeue("work", lease(1000));
      assert.equal(Buffer.from(m3!.payload).toString(), "m3");
      clock.advance(2000);
      why = await refusal(instanceA.assertDrained("old"));
      assert.match(why, /"work": 3 \(1 visible, 0 delayed, 2 leased/);
      for (const m of held) await instanceA.ack("work", m.receipt);
      why = await refusal(instanceB.assertDrained("old"));
      assert.match(why, /still holds 2 messages/);
      // Redelivered from `from` (at least once), acked; the delayed one comes due and is consumed too.
      const again = await instanceB.dequeue("work", lease(30_000));
      assert.deepEqual(again.map((m) => Buffer.from(m.payload).toString()), ["m3"]);
      await instanceB.ack("work", again[0]!.receipt);
      clock.advance(60_000);
      const late = await instanceA.dequeue("later", lease(30_000));
      assert.deepEqual(late.map((m) => Buffer.from(m.payload).toString()), ["d1"]);
      why = await refusal(instanceB.assertDrained("old"));
      assert.match(why, /still holds 1 message in queue "later": 1 \(0 visible, 0 delayed, 1 leased/);
      await instanceA.ack("later", late[0]!.receipt);
      await instanceA.assertDrained("old");
      await instanceB.assertDrained("old");
      assert.deepEqual(await instanceB.undrained("old"), []);
    });
  });
}

// NATS: no delayed enqueue, and a lease is acked through the process that took it (src/backends/nats/queue.ts).
describe("queue drain check on nats as from", () => {
  it("refuses finish while another instance holds leases or a message is visible; passes once all are acked", async () => {
    const clock = new ManualClock(Date.now());
    const o = natsOptions.parse({ servers: NATS_URL, prefix: natsPrefix });
    const a = natsDriver.create(o, { clock, log: () => {} });
    const b = natsDriver.create(o, { clock, log: () => {} });
    opened.push(a, b);
    const fromA = a.namespace("drain", limits).queue!;
    const fromB = b.namespace("drain", limits).queue!;
    const to = memDriver.create({}, { clock, log: () => {} }).namespace("drain", limits).queue!;
    for (const p of ["m1", "m2", "m3"]) await fromA.enqueue("work.x", Buffer.from(p), {}, 0);
    const instanceA = new DrainingQueueStore(fromA, to);
    const instanceB = new DrainingQueueStore(fromB, to);
    const held = await instanceA.dequeue("work.x", { ...lease(30_000), maxMessages: 2 });
    assert.equal(held.length, 2);
    const why = await refusal(instanceB.assertDrained("old"));
    assert.match(why, /"old" still holds 3 messages in queue "work\.x": 3 \(1 visible, 0 delayed, 2 leased and not acked yet\)/);
    for (const m of held) await instanceA.ack("work.x", m.receipt);
    const rest = await instanceB.dequeue("work.x", lease(30_000));
    assert.deepEqual(rest.map((m) => Buffer.from(m.payload).toString()), ["m3"]);
    assert.match(await refusal(instanceA.assertDrained("old")), /still holds 1 message in queue "work\.x": 1 \(0 visible, 0 delayed, 1 leased/);
    await instanceB.ack("work.x", rest[0]!.receipt);
    await until(async () => (await instanceA.undrained("old")).length === 0);
    await instanceB.assertDrained("old");
  });
});

/** JetStream removes an acked message from a work-queue stream just after the ack's reply. */
async function until(f: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 50 && !(await f()); i++) await new Promise((r) => setTimeout(r, 20));
}

describe("queue drain check on a driver that cannot count", () => {
  it("finish says it cannot verify rather than pass", async () => {
    const clock = new ManualClock(Date.now());
    const mem = memDriver.create({}, { clock, log: () => {} }).namespace("blind", limits).queue!;
    // Only the four required methods: no depths().
    const blind: QueueStore = {
      enqueue: (q, p, a, d) => mem.enqueue(q, p, a, d),
      dequeue: (q, o) => mem.dequeue(q, o),
      ack: (q, r) => mem.ack(q, r),
      nack: (q, r, d) => mem.nack(q, r, d),
    };
    const draining = new DrainingQueueStore(blind, memDriver.create({}, { clock, log: () => {} }).namespace("blind", limits).queue!);
    const why = await refusal(draining.assertDrained("old"));
    assert.match(why, /cannot verify that "old" is drained: its queue driver cannot count/);
  });
});
