/**
 * KeyValue and Queue migrations end to end, with real backends and SDK
 * clients under continuous load: memstore → SQLite and Redis → PostgreSQL
 * from start to finish (no client errors, no lost or stale acknowledged
 * write, shadow diff 0 after the backfill), an automatic rollback when `to`
 * (a private redis-server) dies mid-cutover, a queue drained from Redis to
 * PostgreSQL with producers and consumers running, and a backfill that
 * resumes from its stored cursor after Prism is killed.
 */
import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { connect, type Prism } from "@prism/client";
import { startServer, type RunningServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { freePort, privateRedis, haveBinary } from "../helpers/private-servers.js";
import { runPrism, startPrism, type PrismProcess } from "./serve-process.js";

const REDIS = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const PG = process.env.POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const tag = `${process.pid}_${randomBytes(3).toString("hex")}`;
const schemas: string[] = [];

after(async () => {
  const c = new pg.Client({ connectionString: PG });
  await c.connect();
  for (const s of schemas) await c.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`).catch(() => {});
  await c.end();
});

const text = (b: Uint8Array | null) => (b === null ? null : Buffer.from(b).toString());

/** 16 SDK clients, each owning its keys (so "the last acknowledged write" of a key is well defined), 70% writes. */
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
    let seq = 0;
    while (!this.stop) {
      const k = `k${(Math.floor(Math.random() * (this.keys / 16)) * 16 + i) % this.keys}`;
      try {
        if (Math.random() < 0.7) {
          const v = `c${i}-${++seq}`;
          await kv.set(k, v);
          this.last.set(k, v);
        } else {
          const got = text(await kv.get(k));
          const want = this.last.get(k);
          // A read never goes back in time: it sees this client's last acknowledged write of its own key.
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

async function until<T>(what: string, ms: number, f: () => Promise<T | undefined | false>): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

for (const [fromName, toName, from, to] of [
  ["memstore", "sqlite", { type: "memstore" }, { type: "sqlite", path: "to.db" }],
  ["redis", "postgres", { type: "redis", url: REDIS, key_prefix: `prism-mig-${tag}` }, { type: "postgres", url: PG, schema: `prism_mig_${tag}` }],
] as const) {
  describe(`KeyValue migration ${fromName} → ${toName} under load from 16 clients`, () => {
    it("runs from start to finish with no client error, no lost or stale write, shadow diff 0 after the backfill", { timeout: 120_000 }, async () => {
      if (toName === "postgres") schemas.push(`prism_mig_${tag}`);
      const dir = mkdtempSync(join(tmpdir(), "prism-mig-"));
      const config = await validateConfig(
        {
          server: { data_dir: dir },
          backends: { old: from, new: to },
          namespaces: [
            {
              name: "users",
              pattern: "keyvalue",
              backend: "old",
              migration: { to: "new", backfill_rps: 20_000, shadow_read_pct: 50, cutover_steps: [10, 50, 100], window_seconds: 5, rollback_on: { p99_ms: 5000 } },
            },
          ],
        },
        "migration-test",
      );
      const srv: RunningServer = await startServer({ config, grpcPort: 0, httpPort: 0, log: () => {} });
      const admin = await connect(`ws://127.0.0.1:${srv.httpPort}`);
      const clients = await Promise.all(Array.from({ length: 16 }, () => connect(`ws://127.0.0.1:${srv.httpPort}`)));
      const KEYS = 1600;
      const load = new Load(clients, "users", KEYS);
      try {
        // Data that exists before the migration starts: only the backfill can bring it over.
        for (let i = 0; i < KEYS; i += 2) {
          await admin.kv("users").set(`k${i}`, `pre-${i}`);
          load.last.set(`k${i}`, `pre-${i}`);
        }
        const call = (m: string) => admin.call("Admin", m, { namespace: "users" }) as Promise<any>;
        load.start();
        assert.equal((await call("StartMigration")).phase, "dual_write");
        await sleep(300);
        assert.equal((await call("AdvanceMigration")).phase, "backfill");
        const bf = await until("the backfill", 60_000, async () => {
          const s = await call("MigrationStatus");
          return s.backfillDone ? s : undefined;
        });
        assert.ok(bf.backfillCopied + bf.backfillSkipped >= KEYS / 2, JSON.stringify(bf));
        assert.ok(bf.backfillEstimatedTotal >= KEYS / 2, `estimated total ${bf.backfillEstimatedTotal}`);
        const bfMetrics = await (await fetch(`http://127.0.0.1:${srv.httpPort}/metrics`)).text();
        const est = /^prism_migration\{namespace="users",from="old",to="new",measure="backfill_estimated_total"\} (\d+)$/m.exec(bfMetrics);
        assert.ok(est && Number(est[1]) >= KEYS / 2, `backfill_estimated_total exported: ${est?.[0]}`);
        assert.equal((await call("AdvanceMigration")).phase, "shadow");
        const sh = await until("200 shadow reads", 30_000, async () => {
          const s = await call("MigrationStatus");
          return s.shadowReads >= 200 ? s : undefined;
        });
        assert.equal(sh.shadowMismatches, 0, `shadow diff after the backfill: ${sh.diffPct}%`);
        assert.equal(sh.diffPct, 0);
        for (const pct of [10, 50, 100]) {
          const s = await call("AdvanceMigration");
          assert.equal(s.phase, "cutover");
          assert.equal(s.cutoverPct, pct);
          await sleep(400);
        }
        const st = await call("MigrationStatus");
        assert.ok(st.servedByTo > 0, "reads were served by the new backend");
        const metrics = await (await fetch(`http://127.0.0.1:${srv.httpPort}/metrics`)).text();
        assert.match(metrics, /^prism_migration\{namespace="users",from="old",to="new",measure="cutover_pct"\} 100$/m);
        assert.match(metrics, /^prism_migration\{namespace="users",from="old",to="new",measure="phase_cutover"\} 1$/m);
        assert.match(metrics, /^prism_migration\{namespace="users",from="old",to="new",measure="from_error_rate"\} 0$/m);
        assert.match(metrics, /^prism_migration\{namespace="users",from="old",to="new",measure="rollbacks"\} 0$/m);
        assert.equal(st.fromErrorRate, 0);
        const fin = await call("FinishMigration");
        assert.equal(fin.phase, "finished");
        await sleep(300);
        await load.end();
        assert.deepEqual(load.errors.slice(0, 5), [], `${load.errors.length} client errors of ${load.ops} calls`);
        assert.ok(load.ops > 2000, `load ran (${load.ops} calls)`);
        // The namespace is on `new` now; every key holds its last acknowledged write.
        const info = await admin.admin.getNamespace("users");
        assert.deepEqual(info.slots.map((s) => s.instance), ["new"]);
        assert.equal(JSON.parse(info.configJson).migration, undefined);
        const kv = admin.kv("users");
        let checked = 0;
        for (const [k, v] of load.last) {
          assert.equal(text(await kv.get(k)), v, `final value of ${k}`);
          checked++;
        }
        assert.ok(checked >= KEYS / 2);
        await assert.rejects(call("MigrationStatus"), /no migration/);
      } finally {
        await load.end();
        for (const c of clients) await c.close();
        await admin.close();
        await srv.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
}

describe("dry run (StartMigration dryRun, prism migrate start --dry-run) under load from 16 clients", () => {
  it("dual-writes and shadow-reads but never serves from `to`: servedByTo stays 0, cutover and finish are refused", { timeout: 90_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "prism-mig-dry-"));
    const config = await validateConfig(
      {
        server: { data_dir: dir },
        backends: { old: { type: "memstore" }, new: { type: "sqlite", path: "to.db" } },
        // dry_run is not in the block: the run is a dry run because it was started as one.
        namespaces: [{ name: "dry", pattern: "keyvalue", backend: "old", migration: { to: "new", backfill_rps: 20_000, shadow_read_pct: 50, cutover_steps: [100], window_seconds: 5, rollback_on: { p99_ms: 5000 } } }],
      },
      "migration-dry-run-test",
    );
    const srv = await startServer({ config, grpcPort: 0, httpPort: 0, log: () => {} });
    const admin = await connect(`ws://127.0.0.1:${srv.httpPort}`);
    const clients = await Promise.all(Array.from({ length: 16 }, () => connect(`ws://127.0.0.1:${srv.httpPort}`)));
    const KEYS = 800;
    const load = new Load(clients, "dry", KEYS);
    try {
      for (let i = 0; i < KEYS; i += 2) {
        await admin.kv("dry").set(`k${i}`, `pre-${i}`);
        load.last.set(`k${i}`, `pre-${i}`);
      }
      const call = (m: string, extra: object = {}) => admin.call("Admin", m, { namespace: "dry", ...extra }) as Promise<any>;
      load.start();
      const started = await call("StartMigration", { dryRun: true });
      assert.equal(started.phase, "dual_write");
      assert.equal(started.dryRun, true);
      assert.equal((await call("AdvanceMigration")).phase, "backfill");
      await until("the backfill", 60_000, async () => (await call("MigrationStatus")).backfillDone);
      assert.equal((await call("AdvanceMigration")).phase, "shadow");
      const sh = await until("300 shadow reads", 30_000, async () => {
        const s = await call("MigrationStatus");
        return s.shadowReads >= 300 ? s : undefined;
      });
      // Shadow reads ran against `to` and found what the dual-write and the backfill put there.
      assert.equal(sh.shadowMismatches, 0, `shadow diff ${sh.diffPct}%`);
      // The step that would serve from `to` is refused, and so is finish.
      await assert.rejects(call("AdvanceMigration"), /dry run: it never serves from "new"/);
      await assert.rejects(call("FinishMigration"), /dry run|cannot finish/);
      await sleep(500);
      const st = await call("MigrationStatus");
      await load.end();
      assert.equal(st.phase, "shadow");
      assert.equal(st.dryRun, true);
      assert.equal(st.cutoverPct, 0);
      assert.equal(st.servedByTo, 0, "no read served by `to`");
      assert.ok(st.servedByFrom > 1000, `reads served by \`from\` (${st.servedByFrom})`);
      assert.deepEqual(load.errors.slice(0, 5), [], `${load.errors.length} client errors of ${load.ops} calls`);
      assert.ok(load.ops > 2000, `load ran (${load.ops} calls)`);
      const metrics = await (await fetch(`http://127.0.0.1:${srv.httpPort}/metrics`)).text();
      assert.match(metrics, /^prism_migration\{namespace="dry",from="old",to="new",measure="cutover_pct"\} 0$/m);
      // The namespace still lives on `old`.
      const info = await admin.admin.getNamespace("dry");
      assert.deepEqual(info.slots.map((s) => s.instance), ["old"]);
    } finally {
      await load.end();
      for (const c of clients) await c.close();
      await admin.close();
      await srv.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("automatic rollback", () => {
  it("when `to` (a private redis-server) is SIGKILLed mid-cutover, traffic returns to `from` within 1 s; only calls in flight at the kill may fail; status says why", { timeout: 60_000 }, async (t) => {
    if (!(await haveBinary("redis-server"))) return t.skip("redis-server is not installed");
    const dir = mkdtempSync(join(tmpdir(), "prism-rollback-"));
    const port = await freePort();
    const redis = privateRedis(port, dir);
    await redis.start();
    const config = await validateConfig(
      {
        server: { data_dir: dir, breaker: { failures: 0 } },
        backends: { old: { type: "memstore" }, new: { type: "redis", url: `redis://127.0.0.1:${port}` } },
        namespaces: [{ name: "rb", pattern: "keyvalue", backend: "old", migration: { to: "new", cutover_steps: [50, 100], window_seconds: 2, rollback_on: { error_rate: 0.05, p99_ms: 2000 } } }],
      },
      "rollback-test",
    );
    // The moment this process decided the rollback: its log line (same process, no polling delay in the measure).
    let rollbackLoggedAt = 0;
    const log = (_level: string, msg: string) => {
      if (rollbackLoggedAt === 0 && /automatic rollback/.test(msg)) rollbackLoggedAt = Date.now();
    };
    const srv = await startServer({ config, grpcPort: 0, httpPort: 0, log });
    const c = await connect(`ws://127.0.0.1:${srv.httpPort}`);
    try {
      const call = (m: string) => c.call("Admin", m, { namespace: "rb" }) as Promise<any>;
      const kv = c.kv("rb");
      for (let i = 0; i < 200; i++) await kv.set(`k${i}`, `v${i}`);
      await call("StartMigration");
      await call("AdvanceMigration"); // backfill
      await until("the backfill", 20_000, async () => (await call("MigrationStatus")).backfillDone);
      await call("AdvanceMigration"); // shadow
      assert.equal((await call("AdvanceMigration")).cutoverPct, 50);
      // 8 readers on every key and 4 writers on keys of their own (w<i>-<n>), one call in flight each; then `to` dies.
      let stop = false;
      let inFlight = 0;
      let killedAt = 0;
      const failed: { startedAt: number; error: string }[] = [];
      const lastWrite = new Map<string, string>();
      const timed = async (f: () => Promise<unknown>) => {
        const startedAt = Date.now();
        inFlight++;
        try {
          await f();
          return true;
        } catch (e) {
          failed.push({ startedAt, error: (e as Error).message });
          return false;
        } finally {
          inFlight--;
        }
      };
      const readers = Array.from({ length: 8 }, async (_, r) => {
        let i = r;
        while (!stop) await timed(() => kv.get(`k${(i += 8) % 200}`));
      });
      const writers = Array.from({ length: 4 }, async (_, w) => {
        let n = 0;
        while (!stop) {
          const k = `w${w}-${n % 25}`;
          const v = `x${++n}`;
          if (await timed(() => kv.set(k, v))) lastWrite.set(k, v);
        }
      });
      await sleep(500);
      const before = await call("MigrationStatus");
      assert.ok(before.servedByTo > 0 && !before.rolledBack, JSON.stringify(before));
      // The calls in flight at the kill: the only ones allowed to fail.
      const inFlightAtKill = inFlight;
      killedAt = Date.now();
      await redis.stop("SIGKILL");
      const rolled = await until("the automatic rollback", 10_000, async () => {
        const s = await call("MigrationStatus");
        return s.rolledBack ? s : undefined;
      });
      // Traffic keeps running for a second after the rollback: none of it reaches `to`, none fails.
      await sleep(1000);
      const later = await call("MigrationStatus");
      stop = true;
      await Promise.all([...readers, ...writers]);
      t.diagnostic(`rollback ${rollbackLoggedAt - killedAt} ms after the kill; ${failed.length} client errors, ${inFlightAtKill} calls in flight at the kill`);
      assert.equal(rolled.rollbackAutomatic, true);
      assert.match(rolled.rollbackReason, /to's (error rate|p99 latency)/);
      assert.equal(rolled.cutoverPct, 0);
      assert.ok(rollbackLoggedAt > 0, "the rollback was logged");
      // Within one second of the kill. No slack: both instants are taken in this process (the kill signal is
      // sent synchronously, the log line is written by the check that decided the rollback).
      assert.ok(rollbackLoggedAt - killedAt <= 1000, `rolled back ${rollbackLoggedAt - killedAt} ms after the kill (limit 1000)`);
      assert.equal(later.servedByTo, rolled.servedByTo, "no read served by `to` after the rollback");
      // Client errors: at most the calls in flight at the kill (one per client at most); none started after it.
      const afterKill = failed.filter((f) => f.startedAt >= killedAt);
      assert.deepEqual(afterKill.slice(0, 3), [], `${afterKill.length} calls started after the kill failed`);
      assert.ok(failed.length <= inFlightAtKill, `${failed.length} client errors, ${inFlightAtKill} calls in flight at the kill: ${JSON.stringify(failed.slice(0, 3))}`);
      assert.ok(inFlightAtKill <= 12, `one call in flight per client (${inFlightAtKill})`);
      // Every key still reads its value from `from`, the writers' last acknowledged writes included.
      for (let i = 0; i < 200; i += 37) assert.equal(text(await kv.get(`k${i}`)), `v${i}`);
      assert.ok(lastWrite.size > 0);
      for (const [k, v] of lastWrite) assert.equal(text(await kv.get(k)), v, `last acknowledged write of ${k}`);
      // The rollback re-applied the namespace (a new runtime, fresh stats): the count survives, stored with the phase.
      await until("the rolled-back phase applied", 10_000, async () => JSON.parse((await call("MigrationStatus")).statsJson).applied?.rolledBack);
      assert.equal((await call("MigrationStatus")).rollbacks, 1);
      const metrics = await (await fetch(`http://127.0.0.1:${srv.httpPort}/metrics`)).text();
      assert.match(metrics, /^prism_migration\{namespace="rb",from="old",to="new",measure="rolled_back"\} 1$/m);
      assert.match(metrics, /^prism_migration\{namespace="rb",from="old",to="new",measure="rollbacks"\} 1$/m);
      assert.match(metrics, /^prism_migration\{namespace="rb",from="old",to="new",measure="from_error_rate"\} 0$/m);
    } finally {
      await c.close();
      await srv.close();
      await redis.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("queue migration: drain then switch, Redis → PostgreSQL", () => {
  it("every enqueued message is delivered at least once, none lost, with producers and consumers running", { timeout: 90_000 }, async () => {
    schemas.push(`prism_migq_${tag}`);
    const config = await validateConfig(
      {
        backends: { old: { type: "redis", url: REDIS, key_prefix: `prism-migq-${tag}` }, new: { type: "postgres", url: PG, schema: `prism_migq_${tag}` } },
        namespaces: [{ name: "jobs", primitives: ["queue"], backend: "old", migration: { to: "new" } }],
      },
      "queue-migration-test",
    );
    const srv = await startServer({ config, grpcPort: 0, httpPort: 0, log: () => {} });
    const c = await connect(`ws://127.0.0.1:${srv.httpPort}`);
    const producers = await Promise.all(Array.from({ length: 4 }, () => connect(`ws://127.0.0.1:${srv.httpPort}`)));
    const consumers = await Promise.all(Array.from({ length: 4 }, () => connect(`ws://127.0.0.1:${srv.httpPort}`)));
    try {
      const sent = new Set<string>();
      const got = new Set<string>();
      let stopProducing = false;
      let stopConsuming = false;
      const produce = producers.map(async (p, i) => {
        let n = 0;
        while (!stopProducing) {
          const body = `p${i}-${++n}`;
          await p.queue("jobs").enqueue("work", body);
          sent.add(body);
          if (n % 20 === 0) await sleep(5);
        }
      });
      let staleAcks = 0;
      // A stale ack (the lease ended meanwhile) means a redelivery, never a loss: counted, not fatal.
      const ack = (q: Prism, r: string) => q.queue("jobs").ack("work", r).catch((e) => (e.code === 9 ? staleAcks++ : Promise.reject(e)));
      const consume = consumers.map(async (q) => {
        while (!stopConsuming) {
          const msgs = await q.queue("jobs").dequeue("work", { max: 10, wait: 1 });
          for (const m of msgs) {
            got.add(Buffer.from(m.payload).toString());
            await ack(q, m.receipt);
          }
        }
      });
      const call = (m: string) => c.call("Admin", m, { namespace: "jobs" }) as Promise<any>;
      // A backlog on Redis before the migration starts.
      await sleep(500);
      stopConsuming = true;
      await Promise.all(consume);
      stopConsuming = false;
      assert.equal((await call("StartMigration")).phase, "drain");
      const consume2 = consumers.map(async (q) => {
        while (!stopConsuming) {
          const msgs = await q.queue("jobs").dequeue("work", { max: 10, wait: 1 });
          for (const m of msgs) {
            got.add(Buffer.from(m.payload).toString());
            await ack(q, m.receipt);
          }
        }
      });
      await sleep(1500);
      // Finish once Redis is drained (refused while it still holds messages).
      await until("finish", 30_000, async () => {
        try {
          return (await call("FinishMigration")).phase === "finished";
        } catch (e) {
          // "\"old\" still holds N message(s) in queue(s) …" (src/migrations/queue.ts assertDrained).
          if (/still holds \d+ messages? in queues? /.test((e as Error).message)) return false;
          throw e;
        }
      });
      await sleep(500);
      stopProducing = true;
      await Promise.all(produce);
      await until("every message", 30_000, async () => [...sent].every((s) => got.has(s)));
      stopConsuming = true;
      await Promise.all(consume2);
      const missing = [...sent].filter((s) => !got.has(s));
      assert.deepEqual(missing, []);
      assert.equal(staleAcks, 0, "finish waited for the leases taken on the old backend");
      assert.ok(sent.size > 200, `${sent.size} messages`);
      const info = await c.admin.getNamespace("jobs");
      assert.deepEqual(info.slots.map((s) => s.instance), ["new"]);
    } finally {
      for (const x of [...producers, ...consumers, c]) await x.close();
      await srv.close();
    }
  });
});

describe("stream migration: shadow then finish, memstore → SQLite", () => {
  it("copies every append to `to` (counted) while `from` serves; finish switches the namespace to `to`, which holds every record", { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "prism-mig-stream-"));
    const config = await validateConfig(
      {
        server: { data_dir: dir },
        backends: { old: { type: "memstore" }, new: { type: "sqlite", path: "to.db" } },
        namespaces: [{ name: "events", primitives: ["stream"], backend: "old", migration: { to: "new" } }],
      },
      "stream-migration-test",
    );
    const srv = await startServer({ config, grpcPort: 0, httpPort: 0, log: () => {} });
    const c = await connect(`ws://127.0.0.1:${srv.httpPort}`);
    const producers = await Promise.all(Array.from({ length: 4 }, () => connect(`ws://127.0.0.1:${srv.httpPort}`)));
    try {
      const call = (m: string) => c.call("Admin", m, { namespace: "events" }) as Promise<any>;
      // Appended before the migration: `from` only (a stream has no backfill).
      for (let i = 0; i < 10; i++) await c.stream("events").append("s", `pre-${i}`);
      assert.equal((await call("StartMigration")).phase, "shadow");
      const sent: string[][] = producers.map(() => []);
      let stop = false;
      const produce = producers.map(async (p, i) => {
        for (let n = 0; !stop; n++) {
          const body = `p${i}-${n}`;
          await p.stream("events").append("s", body);
          sent[i]!.push(body);
        }
      });
      await sleep(1000);
      stop = true;
      await Promise.all(produce);
      const total = sent.reduce((n, s) => n + s.length, 0);
      assert.ok(total > 100, `${total} appends`);
      // Every append during shadow was copied to `to`, none failed (statsJson.shadow: this instance's copies).
      const shadow = await until("every copy counted", 10_000, async () => {
        const s = JSON.parse((await call("MigrationStatus")).statsJson).shadow;
        return s && s.copied >= total ? s : undefined;
      });
      assert.deepEqual(shadow, { copied: total, copyErrors: 0 });
      // `from` still serves reads meanwhile: the records from before the migration come first.
      const fromRead = await c.stream("events").read("s", { limit: 10 });
      assert.deepEqual(fromRead.records.map((r) => text(r.payload)), Array.from({ length: 10 }, (_, i) => `pre-${i}`));
      assert.equal((await call("FinishMigration")).phase, "finished");
      const info = await c.admin.getNamespace("events");
      assert.deepEqual(info.slots.map((s) => s.instance), ["new"]);
      // Now on `to`: every record appended during shadow, each producer's in its order (offsets start over on `to`).
      const got: string[] = [];
      let next = 0;
      for (;;) {
        const page = await c.stream("events").read("s", { from: next, limit: 500 });
        if (!page.records.length) break;
        got.push(...page.records.map((r) => text(r.payload)!));
        next = page.nextOffset;
      }
      assert.equal(got.length, total, "`to` holds exactly the appends made during shadow");
      for (const [i, s] of sent.entries()) assert.deepEqual(got.filter((g) => g.startsWith(`p${i}-`)), s, `producer ${i}'s records in order`);
      await c.stream("events").append("s", "after");
      const last = await c.stream("events").read("s", { from: next, limit: 10 });
      assert.deepEqual(last.records.map((r) => text(r.payload)), ["after"], "appends after finish go to `to`");
    } finally {
      for (const x of [...producers, c]) await x.close();
      await srv.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a restart of Prism mid-backfill", () => {
  it("resumes from the persisted cursor", { timeout: 90_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "prism-mig-restart-"));
    const cfg = join(dir, "prism.yaml");
    writeFileSync(
      cfg,
      [
        "server:",
        `  data_dir: ${JSON.stringify(dir)}`,
        "backends:",
        "  old: { type: sqlite, path: old.db }",
        "  new: { type: sqlite, path: new.db }",
        "namespaces:",
        "  - name: slow",
        "    pattern: keyvalue",
        "    backend: old",
        "    migration: { to: new, backfill_rps: 100 }",
      ].join("\n"),
    );
    const args = ["--workers", "1", "--config", cfg, "--grpc-port", "0", "--http-port", "0"];
    let p: PrismProcess | undefined;
    try {
      p = await startPrism(args, { env: { PRISM_DATA_DIR: dir } });
      let c = await connect(`ws://127.0.0.1:${p.httpPort}`);
      for (let i = 0; i < 600; i++) await c.kv("slow").set(`k${String(i).padStart(4, "0")}`, `v${i}`);
      const call = (cl: Prism, m: string) => cl.call("Admin", m, { namespace: "slow" }) as Promise<any>;
      await call(c, "StartMigration");
      await call(c, "AdvanceMigration");
      const mid = await until("some progress", 20_000, async () => {
        const s = await call(c, "MigrationStatus");
        return s.backfillCopied >= 150 ? s : undefined;
      });
      assert.equal(mid.backfillDone, false);
      await c.close();
      p.child.kill("SIGKILL");
      await new Promise((r) => p!.child.once("exit", r));
      p = await startPrism(args, { env: { PRISM_DATA_DIR: dir } });
      c = await connect(`ws://127.0.0.1:${p.httpPort}`);
      const after = await call(c, "MigrationStatus");
      assert.equal(after.phase, "backfill");
      // The stored cursor survived: progress did not start over.
      assert.ok(after.backfillCopied >= mid.backfillCopied - 100, `resumed at ${after.backfillCopied} (had ${mid.backfillCopied})`);
      const done = await until("the backfill", 30_000, async () => {
        const s = await call(c, "MigrationStatus");
        return s.backfillDone ? s : undefined;
      });
      // It resumed from the stored cursor, not from the first key: no client writes during the backfill, so
      // a key is "skipped" (already on `to`) only when the page in flight at the kill (at most one page:
      // backfill_rps 100 → pages of 100 keys, the cursor is saved after each) is scanned again. A backfill
      // that scanned from the start again would find the ≥ 150 keys copied before the kill on `to`
      // (skipped ≥ 150), or count them twice (copied + skipped ≥ 750) had it kept its counters.
      const PAGE = 100;
      assert.ok(done.backfillCopied + done.backfillSkipped >= 600, `every key visited: ${JSON.stringify(done)}`);
      assert.ok(done.backfillCopied + done.backfillSkipped <= 600 + PAGE, `at most one page visited twice: ${JSON.stringify(done)}`);
      assert.ok(done.backfillSkipped <= PAGE, `at most one page re-scanned after the restart (${done.backfillSkipped} keys found on \`to\` already, ${mid.backfillCopied} copied before the kill)`);
      assert.ok(done.backfillCopied <= 600, JSON.stringify(done));
      await c.close();
    } finally {
      await p?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("prism migrate (CLI)", () => {
  it("starts, advances, reports and rolls back a migration; refusals name what is missing", { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "prism-mig-cli-"));
    const cfg = join(dir, "prism.yaml");
    writeFileSync(
      cfg,
      ["server:", `  data_dir: ${JSON.stringify(dir)}`, "backends:", "  old: { type: sqlite, path: old.db }", "  new: { type: sqlite, path: new.db }", "namespaces:", "  - name: cli", "    pattern: keyvalue", "    backend: old", "    migration: { to: new }", "  - name: dry", "    pattern: keyvalue", "    backend: old", "    migration: { to: new }", "  - name: plain", "    backend: old"].join("\n"),
    );
    const p = await startPrism(["--workers", "1", "--config", cfg, "--grpc-port", "0", "--http-port", "0"], { env: { PRISM_DATA_DIR: dir } });
    const addr = ["--addr", `ws://127.0.0.1:${p.httpPort}`];
    try {
      const run = (...a: string[]) => runPrism(["migrate", ...a, ...addr], { env: { PRISM_DATA_DIR: dir } });
      const st = await run("status", "cli");
      assert.equal(st.code, 0, st.stderr);
      assert.match(st.stdout, /^namespace cli: slot keyvalue from "old" to "new"\nphase: not started/);
      assert.match((await run("start", "cli")).stdout, /^phase: dual_write/m);
      assert.match((await run("advance", "cli")).stdout, /^phase: backfill/m);
      const back = await run("rollback", "cli", "--reason", "checking the runbook");
      assert.equal(back.code, 0, back.stderr);
      assert.match(back.stdout, /^rolled back: checking the runbook$/m);
      const fin = await run("finish", "cli");
      assert.equal(fin.code, 1);
      assert.match(fin.stderr, /^prism migrate finish: PRISM_ERR_CONFIG_CONFLICT: the migration of "cli" was rolled back \(checking the runbook\)/);
      const none = await run("start", "plain");
      assert.equal(none.code, 1);
      assert.match(none.stderr, /namespace "plain" has no migration: block/);
      const usage = await runPrism(["migrate", "jump", "cli", ...addr]);
      assert.equal(usage.code, 64);
      assert.equal((await run("advance", "dry", "--dry-run")).code, 64, "--dry-run is for start only");
      const dry = await run("start", "dry", "--dry-run");
      assert.equal(dry.code, 0, dry.stderr);
      assert.match(dry.stdout, /^namespace dry: slot keyvalue from "old" to "new" \(dry run\)\nphase: dual_write/);
      assert.match((await run("advance", "dry")).stdout, /^phase: backfill/m);
      await until("the dry run's backfill", 20_000, async () => /backfill: .*done/.test((await run("status", "dry")).stdout));
      assert.match((await run("advance", "dry")).stdout, /^phase: shadow/m);
      const refused = await run("advance", "dry");
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /the migration of "dry" is a dry run: it never serves from "new"/);
      // start without --dry-run: the same run goes on for real, from the phase it reached.
      const real = await run("start", "dry");
      assert.equal(real.code, 0, real.stderr);
      assert.match(real.stdout, /^namespace dry: slot keyvalue from "old" to "new"\nphase: shadow/);
      assert.match((await run("advance", "dry")).stdout, /^phase: cutover \(1% of keys on "new"\)/m);
    } finally {
      await p.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
