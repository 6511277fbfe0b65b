/**
 * Migrations with more than one Prism process on one namespace.
 *
 * `prism serve --workers 2` (two processes sharing the ports) runs a
 * KeyValue migration Redis → PostgreSQL and a queue drain-then-switch Redis →
 * PostgreSQL while SDK clients load it through both workers: every worker
 * serves each phase (its own runtime says so), no client error, every key
 * ends with its last acknowledged write, every enqueued message is delivered,
 * and finish is refused while a consumer on one worker holds a lease on
 * `from` (asked through the other worker), then accepted once it acks.
 *
 * Pending repairs outlive the process that recorded them: a Prism killed
 * (SIGKILL) while `to` (a private redis-server) is down, with writes that did
 * not reach it, is replaced by a new process that repairs them once `to` is back.
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { Redis } from "ioredis";
import { connect, type Prism } from "@prism/client";
import { freePort, privateRedis, haveBinary } from "../helpers/private-servers.js";
import { deleteRedisPrefix } from "../helpers/redis-cleanup.js";
import { startPrism, type PrismProcess } from "./serve-process.js";
import { openConfigStore } from "../../src/control/stores.js";
import { REPAIR_KIND } from "../../src/control/agent.js";

const REDIS = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const PG = process.env.POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const tag = `${process.pid}_${randomBytes(3).toString("hex")}`;
const PREFIX = `prism-migw-${tag}`;
const SCHEMA = `prism_migw_${tag}`;

const text = (b: Uint8Array | null) => (b === null ? null : Buffer.from(b).toString());

async function until<T>(what: string, ms: number, f: () => Promise<T | undefined | false>): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function workerOf(c: Prism): Promise<number> {
  const h = (await c.call("Admin", "Health", {})) as { workers?: number; workerIndex?: number };
  assert.equal(h.workers, 2);
  return Number(h.workerIndex ?? 0);
}

/** Clients that each own their keys (so "the last acknowledged write" of a key is well defined), 70% writes. */
class Load {
  readonly last = new Map<string, string>();
  errors: string[] = [];
  ops = 0;
  private stop = false;
  private runs: Promise<void>[] = [];
  constructor(private readonly clients: Prism[], private readonly ns: string, private readonly keys: number) {}
  start(): void {
    this.runs = this.clients.map((c, i) => this.run(c, i));
  }
  private async run(c: Prism, i: number): Promise<void> {
    const kv = c.kv(this.ns);
    const n = this.clients.length;
    let seq = 0;
    while (!this.stop) {
      const k = `k${(Math.floor(Math.random() * (this.keys / n)) * n + i) % this.keys}`;
      try {
        if (Math.random() < 0.7) {
          const v = `c${i}-${++seq}`;
          await kv.set(k, v);
          this.last.set(k, v);
        } else {
          const got = text(await kv.get(k));
          const want = this.last.get(k);
          if (want !== undefined && got !== want) this.errors.push(`stale read of ${k}: ${got} (last acknowledged ${want})`);
        }
        this.ops++;
      } catch (e) {
        this.errors.push(`${k}: ${(e as Error).message}`);
      }
    }
  }
  async end(): Promise<void> {
    this.stop = true;
    await Promise.all(this.runs);
  }
}

describe("migrations with prism serve --workers 2, clients on both workers", () => {
  const dir = mkdtempSync(join(tmpdir(), "prism-migw-"));
  let srv: PrismProcess | undefined;
  const all: Prism[] = [];
  /** Connections by the worker serving them. */
  const byWorker: Prism[][] = [[], []];
  const PER_WORKER = 14;
  const take = (w: number) => {
    const c = byWorker[w]!.shift();
    assert.ok(c, `a spare connection on worker ${w}`);
    return c;
  };
  let admins: Prism[] = [];

  /** What worker `w`'s own runtime serves for `ns` (Admin MigrationStatus statsJson.applied). */
  async function applied(w: number, ns: string): Promise<{ phase: string; step: number; rolledBack: boolean } | null> {
    const s = (await admins[w]!.call("Admin", "MigrationStatus", { namespace: ns })) as { statsJson?: string };
    return JSON.parse(s.statsJson || "{}").applied ?? null;
  }
  async function everyWorker(ns: string, what: string, ok: (a: { phase: string; step: number; rolledBack: boolean } | null, w: number) => Promise<boolean> | boolean): Promise<void> {
    for (const w of [0, 1]) await until(`worker ${w}: ${what}`, 15_000, async () => ok(await applied(w, ns), w));
  }

  before(async () => {
    const cfg = join(dir, "prism.yaml");
    writeFileSync(
      cfg,
      [
        "server:",
        `  data_dir: ${JSON.stringify(dir)}`,
        "backends:",
        `  old: { type: redis, url: ${JSON.stringify(REDIS)}, key_prefix: ${PREFIX} }`,
        `  new: { type: postgres, url: ${JSON.stringify(PG)}, schema: ${SCHEMA} }`,
        "namespaces:",
        "  - name: users",
        "    pattern: keyvalue",
        "    backend: old",
        "    migration: { to: new, backfill_rps: 20000, shadow_read_pct: 50, cutover_steps: [10, 50, 100], window_seconds: 5, rollback_on: { p99_ms: 5000, diff_pct: 1 } }",
        "  - name: jobs",
        "    primitives: [queue]",
        "    backend: old",
        "    migration: { to: new }",
      ].join("\n"),
    );
    srv = await startPrism(["--workers", "2", "--config", cfg, "--grpc-port", String(await freePort()), "--http-port", String(await freePort())], { env: { PRISM_DATA_DIR: dir }, timeoutMs: 60_000 });
    // The primary hands connections out round-robin: enough of them reach each worker.
    for (let i = 0; i < 80 && byWorker.some((l) => l.length < PER_WORKER); i++) {
      const c = await connect(`ws://127.0.0.1:${srv.httpPort}`);
      all.push(c);
      const w = await workerOf(c);
      if (byWorker[w]!.length < PER_WORKER) byWorker[w]!.push(c);
    }
    assert.ok(byWorker.every((l) => l.length === PER_WORKER), `clients on both workers (${byWorker.map((l) => l.length)})`);
    admins = [take(0), take(1)];
  });

  after(async () => {
    await Promise.all(all.map((c) => c.close().catch(() => {})));
    if (srv) {
      const code = await srv.stop("SIGTERM");
      assert.equal(code, 0, `exit after SIGTERM\n${srv.stderr()}`);
    }
    const c = new pg.Client({ connectionString: PG });
    await c.connect();
    await c.query(`DROP SCHEMA IF EXISTS "${SCHEMA}" CASCADE`).catch(() => {});
    await c.end();
    const r = new Redis(REDIS);
    await deleteRedisPrefix(r, PREFIX).catch(() => {});
    r.disconnect();
    rmSync(dir, { recursive: true, force: true });
  });

  it("KeyValue Redis → PostgreSQL: every worker follows each phase; no client error; every key ends with its last acknowledged write", { timeout: 180_000 }, async () => {
    const clients = [...Array.from({ length: 8 }, () => take(0)), ...Array.from({ length: 8 }, () => take(1))];
    const KEYS = 1600;
    const load = new Load(clients, "users", KEYS);
    const call = (w: number, m: string) => admins[w]!.call("Admin", m, { namespace: "users" }) as Promise<any>;
    try {
      // Data from before the migration: only the backfill brings it over.
      const pre = admins[0]!.kv("users");
      for (let i = 0; i < KEYS; i += 2) {
        await pre.set(`k${i}`, `pre-${i}`);
        load.last.set(`k${i}`, `pre-${i}`);
      }
      load.start();
      assert.equal((await call(0, "StartMigration")).phase, "dual_write");
      await everyWorker("users", "serves dual_write", (a) => a?.phase === "dual_write");
      await sleep(300);
      assert.equal((await call(1, "AdvanceMigration")).phase, "backfill");
      await everyWorker("users", "serves backfill", (a) => a?.phase === "backfill");
      await until("the backfill", 90_000, async () => (await call(0, "MigrationStatus")).backfillDone);
      assert.equal((await call(0, "AdvanceMigration")).phase, "shadow");
      await everyWorker("users", "serves shadow", (a) => a?.phase === "shadow");
      await until("shadow reads on both workers", 30_000, async () => (await call(0, "MigrationStatus")).shadowReads >= 50 && (await call(1, "MigrationStatus")).shadowReads >= 50);
      for (const [step, pct] of [10, 50, 100].entries()) {
        const s = await call(step % 2, "AdvanceMigration");
        assert.equal(s.cutoverPct, pct);
        await everyWorker("users", `serves cutover ${pct}%`, async (a, w) => a?.phase === "cutover" && a.step === step && (await call(w, "MigrationStatus")).cutoverPct === pct);
        await sleep(400);
      }
      for (const w of [0, 1]) {
        const st = await call(w, "MigrationStatus");
        assert.ok(st.servedByTo > 0, `worker ${w} served reads from the new backend`);
        assert.equal(st.rolledBack, false, `worker ${w}: ${st.rollbackReason}`);
      }
      assert.equal((await call(1, "FinishMigration")).phase, "finished");
      for (const w of [0, 1]) {
        await until(`worker ${w} serves users from new`, 15_000, async () => {
          const info = await admins[w]!.admin.getNamespace("users");
          return info.slots.map((s) => s.instance).join() === "new";
        });
        await assert.rejects(call(w, "MigrationStatus"), /no migration/);
      }
      await sleep(300);
      await load.end();
      assert.deepEqual(load.errors.slice(0, 5), [], `${load.errors.length} client errors of ${load.ops} calls`);
      assert.ok(load.ops > 2000, `load ran (${load.ops} calls)`);
      // Read back through both workers.
      let checked = 0;
      for (const [k, v] of load.last) {
        assert.equal(text(await admins[checked % 2]!.kv("users").get(k)), v, `final value of ${k}`);
        checked++;
      }
      assert.ok(checked >= KEYS / 2);
    } finally {
      await load.end();
    }
  });

  it("queue Redis → PostgreSQL: delivered at least once, none lost; finish refused while a consumer on the other worker holds a lease on `from`, accepted after its ack", { timeout: 120_000 }, async () => {
    const producers = [take(0), take(0), take(1), take(1)];
    const consumers = [take(0), take(0), take(1), take(1)];
    const holder = take(1);
    const call = (w: number, m: string) => admins[w]!.call("Admin", m, { namespace: "jobs" }) as Promise<any>;
    const sent = new Set<string>();
    const got = new Set<string>();
    const errors: string[] = [];
    let staleAcks = 0;
    let stopProducing = false;
    let stopConsuming = false;
    const produce = producers.map(async (p, i) => {
      let n = 0;
      while (!stopProducing) {
        const body = `p${i}-${++n}`;
        try {
          await p.queue("jobs").enqueue("work", body);
          sent.add(body);
        } catch (e) {
          errors.push(`enqueue ${body}: ${(e as Error).message}`);
        }
        if (n % 20 === 0) await sleep(5);
      }
    });
    const consume = () =>
      consumers.map(async (q) => {
        while (!stopConsuming) {
          try {
            const msgs = await q.queue("jobs").dequeue("work", { max: 10, wait: 1 });
            for (const m of msgs) {
              got.add(Buffer.from(m.payload).toString());
              // A stale ack (the lease ended meanwhile) means a redelivery, never a loss: counted.
              await q.queue("jobs").ack("work", m.receipt).catch((e) => (e.code === 9 ? staleAcks++ : Promise.reject(e)));
            }
          } catch (e) {
            errors.push(`consume: ${(e as Error).message}`);
          }
        }
      });
    try {
      // A backlog on Redis before the migration starts.
      await sleep(500);
      assert.equal((await call(0, "StartMigration")).phase, "drain");
      await everyWorker("jobs", "serves drain", (a) => a?.phase === "drain");
      // A consumer on worker 1 leases a message from `from` (the backlog) and does not ack it yet.
      const [held] = await holder.queue("jobs").dequeue("work", { max: 1, visibilityTimeout: 300 });
      assert.ok(held, "the holder got a message");
      assert.ok(held.receipt.startsWith("f~"), `leased on from (receipt ${held.receipt})`);
      got.add(Buffer.from(held.payload).toString());
      const running = consume();
      // Once the rest of the backlog is consumed, `from` holds exactly the held lease: finish (asked through worker 0, which never saw that lease) is refused.
      const refusal = await until("a refusal naming the one held lease", 60_000, async () => {
        try {
          await call(0, "FinishMigration");
          assert.fail("finish was accepted while a message was leased on from and not acked");
        } catch (e) {
          const msg = (e as Error).message;
          if (!/still holds/.test(msg)) throw e;
          return /still holds 1 message in/.test(msg) ? (e as Error & { code?: number }) : undefined;
        }
      });
      assert.equal(refusal.code, 9, "FAILED_PRECONDITION");
      assert.match(refusal.message, /"old" still holds 1 message in queue "work": 1 \(0 visible, 0 delayed, 1 leased and not acked yet\)/);
      // Through the holder's own worker too, and still after a while: the lease is the backend's, not any process's memory.
      await sleep(1500);
      await assert.rejects(call(1, "FinishMigration"), /still holds 1 message in queue "work"/);
      await holder.queue("jobs").ack("work", held.receipt);
      const fin = await until("finish after the ack", 30_000, async () => {
        try {
          return await call(0, "FinishMigration");
        } catch (e) {
          if (/still holds/.test((e as Error).message)) return undefined;
          throw e;
        }
      });
      assert.equal(fin.phase, "finished");
      for (const w of [0, 1]) {
        await until(`worker ${w} serves jobs from new`, 15_000, async () => (await admins[w]!.admin.getNamespace("jobs")).slots.map((s) => s.instance).join() === "new");
      }
      await sleep(500);
      stopProducing = true;
      await Promise.all(produce);
      await until("every message", 30_000, async () => [...sent].every((s) => got.has(s)));
      stopConsuming = true;
      await Promise.all(running);
      assert.deepEqual([...sent].filter((s) => !got.has(s)), []);
      assert.deepEqual(errors.slice(0, 5), [], `${errors.length} client errors`);
      assert.equal(staleAcks, 0);
      assert.ok(sent.size > 200, `${sent.size} messages`);
    } finally {
      stopProducing = true;
      stopConsuming = true;
      await Promise.all(produce);
    }
  });
});

describe("pending repairs survive the process that recorded them", () => {
  it("SIGKILL with writes that did not reach `to` (down): a new process repairs them once `to` is back", { timeout: 120_000 }, async (t) => {
    if (!(await haveBinary("redis-server"))) return t.skip("redis-server is not installed");
    const dir = mkdtempSync(join(tmpdir(), "prism-repair-"));
    const port = await freePort();
    const redis = privateRedis(port, dir);
    await redis.start();
    const cfg = join(dir, "prism.yaml");
    writeFileSync(
      cfg,
      [
        "server:",
        `  data_dir: ${JSON.stringify(dir)}`,
        "backends:",
        "  old: { type: sqlite, path: old.db }",
        `  new: { type: redis, url: "redis://127.0.0.1:${port}", key_prefix: rp }`,
        "namespaces:",
        "  - name: acct",
        "    pattern: keyvalue",
        "    backend: old",
        "    migration: { to: new }",
      ].join("\n"),
    );
    const args = ["--workers", "1", "--config", cfg, "--grpc-port", "0", "--http-port", "0"];
    const direct = new Redis(`redis://127.0.0.1:${port}`, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => 200 });
    direct.on("error", () => {});
    // `to`'s value of a key, read directly (undefined while it is down or reconnecting).
    const onTo = (i: number) => direct.hget(`rp:{acct}:kv:k${i}`, "v").catch(() => undefined);
    let p: PrismProcess | undefined;
    let c: Prism | undefined;
    const N = 60;
    const HALF = 30;
    try {
      p = await startPrism(args, { env: { PRISM_DATA_DIR: dir } });
      c = await connect(`ws://127.0.0.1:${p.httpPort}`);
      const call = (m: string) => c!.call("Admin", m, { namespace: "acct" }) as Promise<any>;
      await call("StartMigration");
      const kv = c.kv("acct");
      // Dual-write: both sides have every key.
      for (let i = 0; i < N; i++) await kv.set(`k${i}`, `a${i}`);
      await direct.connect();
      await until("to has the dual writes", 10_000, async () => {
        for (let i = 0; i < N; i++) if ((await onTo(i)) !== `a${i}`) return false;
        return true;
      });
      await redis.stop();
      // `to` is down: these writes are acknowledged (from is their primary) and recorded for repair.
      for (let i = 0; i < HALF; i++) await kv.set(`k${i}`, `b${i}`);
      await until("the repairs recorded", 15_000, async () => (await call("MigrationStatus")).repairsPending >= HALF);
      // ... and durable in the config store (the sqlite file of data_dir), which the next process reads.
      const store = await openConfigStore({ type: "sqlite", path: join(dir, "config.db") });
      try {
        await until("the journal in the config store", 15_000, async () => {
          const keys = new Set<string>();
          for (const e of (await store.snapshot()).entries) {
            if (e.kind !== REPAIR_KIND || !e.name.startsWith("acct/")) continue;
            for (const [k, side] of (e.spec as { keys: [string, string][] }).keys) if (side === "to") keys.add(k);
          }
          return keys.size >= HALF;
        });
      } finally {
        await store.close();
      }
      await c.close();
      c = undefined;
      p.child.kill("SIGKILL");
      await p.exited;
      p = undefined;
      await redis.start();
      // `to` is back, holding the values from before the outage.
      await until("to answers again, with its values from before the outage", 10_000, async () => (await onTo(0)) === "a0");
      p = await startPrism(args, { env: { PRISM_DATA_DIR: dir } });
      c = await connect(`ws://127.0.0.1:${p.httpPort}`);
      await until("the new process repaired every recorded key on to", 30_000, async () => {
        for (let i = 0; i < HALF; i++) if ((await onTo(i)) !== `b${i}`) return false;
        return true;
      });
      for (let i = HALF; i < N; i++) assert.equal(await onTo(i), `a${i}`);
      await until("no repairs pending", 15_000, async () => (await (c!.call("Admin", "MigrationStatus", { namespace: "acct" }) as Promise<any>)).repairsPending === 0);
      // And the journal is empty again.
      const after = await openConfigStore({ type: "sqlite", path: join(dir, "config.db") });
      try {
        await until("the journal emptied", 15_000, async () => !(await after.snapshot()).entries.some((e) => e.kind === REPAIR_KIND));
      } finally {
        await after.close();
      }
    } finally {
      await c?.close().catch(() => {});
      await p?.stop();
      direct.disconnect();
      await redis.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
