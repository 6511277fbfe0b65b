/**
 * `ws-kv-getset-dualwrite` and `ws-kv-getset-dualwrite-redis-postgres`: the cost
 * of a migration's dual-write phase. The 90/10 KeyValue Get/Set WebSocket load
 * of `ws-kv-getset-memstore` (kvMix over 100 keys of 64 B, 8 connections × 64 in
 * flight, o.threads client threads) against two `prism serve --workers 1`
 * processes whose configs differ only in the namespace's `migration:` block:
 *
 *   (a) "no migration": the namespace on instance `old`;
 *   (b) "dual-write":   the same entry plus `migration: { to: new }`, started
 *       with Admin/StartMigration, so phase `dual_write`: every Set goes to
 *       `old` and then to `new`, every Get is read from `old`.
 *
 * Both configs declare the same two instances under `backends:` (in (a) `new`
 * is never opened). memstore → memstore: `old` and `new` carry sweep_interval_ms
 * 1000 and 1001 ms, because the router pools instances by type + options and
 * Prism refuses a migration to the same backend; 1000 ms is memstore's default
 * sweep, so `old` behaves as the getset row's memstore. redis → postgres: `old`
 * is Redis with a key_prefix unique to the run and to the process (…-a / …-b,
 * the same length, so both processes never touch each other's keys), `new` is
 * PostgreSQL in a schema unique to the run (pool 10, the default); both are
 * deleted at the end.
 *
 * Rounds: max(o.rounds, 4), interleaved, (a) then (b) in odd rounds and (b) then
 * (a) in even ones, o.seconds each after o.warmupSeconds. Table entry = each
 * side's best round (the suite's convention), ratio = b / a of those; the note
 * adds the per-round ratios (adjacent windows, so slow drifts cancel) and their
 * mean, for ops/s and CPU µs/op. Target ≥ 0.80x (issue text).
 *
 * So that the row cannot measure nothing, the scenario checks:
 *  - (a) answers Admin/MigrationStatus with an error (it has no migration);
 *  - (b) is seeded before the start (the 100 keys are in `old` only), reports
 *    phase "" before StartMigration, "dual_write" after it and before and after
 *    every round, never rolled back, dualWriteErrors 0, repairsPending 0, and
 *    toP99Ms > 0 after every round (`new` received calls within its window;
 *    in dual_write only writes go there);
 *  - redis → postgres: after the rounds, the PostgreSQL kv table of the schema
 *    holds exactly the keys the load Sets (10 of the 100, 64 B each), read with
 *    pg directly, and none of the 90 keys that were only seeded;
 *  - both: after the rounds Admin/AdvanceMigration starts the backfill, which
 *    copies a key to `new` only if absent; it must report exactly the 10 Set
 *    keys as "already there" (backfillSkipped) and copy the 90 others: the
 *    measured process's `new` held what the dual-write put there, and nothing
 *    else.
 */
import pg from "pg";
import { prism as pb } from "../../src/gen/prism.js";
import { benchKey, benchValue, kvMix } from "./frames.js";
import { pidsByComm } from "./direct.js";
import { round3 } from "./hist.js";
import { rssBytes } from "./proc.js";
import type { Row } from "./report.js";
import type { BenchOptions } from "./scenarios.js";
import { startPrism, type ServerProcess } from "./spawn.js";
import { runWsLoad, sleep, type Measurement } from "./ws-load.js";

export const DUALWRITE_ID = "ws-kv-getset-dualwrite";
export const DUALWRITE_PG_ID = "ws-kv-getset-dualwrite-redis-postgres";
const KEYS = 100;
const GET_PERCENT = 90;
const CONNS = 8;
const DEPTH = 64;
const TARGET = 0.8;
const REDIS_URL = process.env.PRISM_BENCH_REDIS_URL ?? process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const PG_URL = process.env.PRISM_BENCH_PG_URL ?? process.env.POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const M = pb.v1.Method;

const mb = (b: number) => Math.round((b / (1024 * 1024)) * 10) / 10;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

/** What Admin/MigrationStatus (and the other migration calls) answer, as JSON over HTTP. */
interface MigrationInfo {
  phase: string;
  rolledBack: boolean;
  rollbackReason: string;
  dualWriteErrors: number;
  repairsPending: number;
  toErrorRate: number;
  toP99Ms: number;
  fromP99Ms: number;
  servedByFrom: number;
  servedByTo: number;
  backfillCopied: number;
  backfillSkipped: number;
  backfillDone: boolean;
}

/** POST /v1/Admin/<method> {namespace}; the JSON answer, or { error } with the HTTP status. */
async function admin(httpPort: number, method: string, ns: string): Promise<{ status: number; body: MigrationInfo & { error?: { reason?: string; message?: string } } }> {
  const r = await fetch(`http://127.0.0.1:${httpPort}/v1/Admin/${method}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ namespace: ns }) });
  return { status: r.status, body: (await r.json()) as MigrationInfo & { error?: { reason?: string; message?: string } } };
}

async function migration(httpPort: number, method: string, ns: string, what: string): Promise<MigrationInfo> {
  const r = await admin(httpPort, method, ns);
  if (r.status !== 200) throw new Error(`${what}: Admin/${method} answered ${r.status}: ${JSON.stringify(r.body).slice(0, 300)}`);
  return r.body;
}

/** The keys the load's Set frames write (decoded from the templates, so it follows kvMix). */
function keysSetBy(templates: Uint8Array[]): Set<string> {
  const out = new Set<string>();
  for (const f of templates) {
    const b = Buffer.from(f.buffer, f.byteOffset, f.length);
    if (b.readUInt16LE(6) === M.KV_SET) out.add(pb.v1.SetRequest.decode(b.subarray(8)).key);
  }
  return out;
}

async function seed(httpPort: number, ns: string, what: string): Promise<void> {
  const value = benchValue();
  for (let i = 0; i < KEYS; i++) {
    const r = await fetch(`http://127.0.0.1:${httpPort}/v1/ns/${ns}/kv/${encodeURIComponent(benchKey(i))}`, { method: "PUT", body: value });
    if (r.status !== 200) throw new Error(`${what}: seed: PUT answered ${r.status}: ${await r.text()}`);
  }
  const r = await fetch(`http://127.0.0.1:${httpPort}/v1/ns/${ns}/kv/${encodeURIComponent(benchKey(1))}`);
  if (r.status !== 200 || (await r.arrayBuffer()).byteLength !== value.length) throw new Error(`${what}: seed: read-back failed (${r.status})`);
}

interface Pair {
  id: string;
  title: string;
  label: string;
  ns: string;
  /** The two instances' YAML flow mappings, per process ("a" no migration, "b" dual-write). */
  backends: (side: "a" | "b") => { old: string; new: string };
  /** Processes whose CPU per op is reported next to Prism's (the networked backends). */
  backendPids?: () => number[];
  backendLabel?: string;
  /** Reads `to` directly after the rounds; returns what it found (throws when it is not the Set keys). */
  checkTo?: (written: Set<string>) => Promise<string>;
  cleanup?: () => Promise<void>;
}

export function dualWriteYaml(ns: string, b: { old: string; new: string }, migrate: boolean): string {
  return (
    `backends:\n  old: ${b.old}\n  new: ${b.new}\n` +
    `namespaces:\n  - name: ${ns}\n    pattern: keyvalue\n    backend: old\n` +
    (migrate ? `    migration: { to: new }\n` : "")
  );
}

const summary = (m: Measurement) => ({ opsPerSec: m.opsPerSec, p50: m.latency.p50, p99: m.latency.p99, cpuUsPerOp: m.cpuUsPerOp, backendCpuUsPerOp: m.backendCpuUsPerOp, serverBusy: m.serverBusy, clientBusy: m.clientBusy, machineIdle: m.machineIdle });
const best = (ms: Measurement[]) => ms.reduce((a, b) => (b.opsPerSec > a.opsPerSec ? b : a));

async function dualWrite(o: BenchOptions, pair: Pair): Promise<Row> {
  const { id, ns } = pair;
  const templates = kvMix(ns, KEYS, GET_PERCENT);
  const written = keysSetBy(templates);
  const started: ServerProcess[] = [];
  try {
    o.log(`${id}: starting prism without and with the migration`);
    const a = await startPrism(dualWriteYaml(ns, pair.backends("a"), false));
    started.push(a);
    const b = await startPrism(dualWriteYaml(ns, pair.backends("b"), true));
    started.push(b);
    const aPort = a.ports.http!;
    const bPort = b.ports.http!;

    // (a) has no migration; (b) has one configured, not started: the seed goes to `old` only.
    const aStatus = await admin(aPort, "MigrationStatus", ns);
    if (aStatus.status === 200) throw new Error(`${id}: the no-migration server reports a migration: ${JSON.stringify(aStatus.body).slice(0, 200)}`);
    const before = await migration(bPort, "MigrationStatus", ns, id);
    if (before.phase !== "") throw new Error(`${id}: migration in phase "${before.phase}" before StartMigration`);
    await seed(aPort, ns, `${id} (a)`);
    await seed(bPort, ns, `${id} (b)`);
    const st = await migration(bPort, "StartMigration", ns, id);
    if (st.phase !== "dual_write") throw new Error(`${id}: StartMigration left phase "${st.phase}", expected dual_write`);

    const checkDual = (s: MigrationInfo, when: string, afterLoad: boolean) => {
      const bad: string[] = [];
      if (s.phase !== "dual_write") bad.push(`phase "${s.phase}"`);
      if (s.rolledBack) bad.push(`rolled back: ${s.rollbackReason}`);
      if (afterLoad) {
        if (s.dualWriteErrors !== 0) bad.push(`${s.dualWriteErrors} dual-write errors`);
        if (s.repairsPending !== 0) bad.push(`${s.repairsPending} repairs pending`);
        if (!(s.toP99Ms > 0)) bad.push("no call reached `to` in its window (toP99Ms 0)");
        if (s.servedByTo !== 0) bad.push(`${s.servedByTo} reads served by \`to\``);
      }
      if (bad.length) throw new Error(`${id}: migration not in a clean dual_write ${when}: ${bad.join("; ")}`);
    };

    const sides = [
      { key: "a" as const, label: "no migration", server: a, rounds: [] as Measurement[] },
      { key: "b" as const, label: "dual-write", server: b, rounds: [] as Measurement[] },
    ];
    const statuses: MigrationInfo[] = [];
    const rounds = Math.max(o.rounds, 4);
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? sides : [...sides].reverse();
      for (const side of order) {
        if (side.key === "b") checkDual(await migration(bPort, "MigrationStatus", ns, id), `before round ${r + 1}`, false);
        o.log(`${id}: round ${r + 1}/${rounds} ${side.label}`);
        const m = await runWsLoad({
          url: `ws://127.0.0.1:${side.server.ports.http}/v1/ws`,
          conns: CONNS,
          depth: DEPTH,
          threads: o.threads,
          templates,
          seconds: o.seconds,
          warmupSeconds: o.warmupSeconds,
          serverPids: [side.server.pid],
          backendPids: pair.backendPids,
        });
        if (m.errors > 0) throw new Error(`${id} ${side.label}: ${m.errors} requests failed (of ${m.ops + m.errors})`);
        if (m.ops === 0) throw new Error(`${id} ${side.label}: no request completed`);
        side.rounds.push(m);
        if (side.key === "b") {
          const s = await migration(bPort, "MigrationStatus", ns, id);
          checkDual(s, `after round ${r + 1}`, true);
          statuses.push(s);
        }
      }
    }
    const rss = { a: mb(rssBytes(a.pid)), b: mb(rssBytes(b.pid)) };

    // `to` read directly (redis → postgres), then through the backfill's if-absent copy (both).
    const direct = pair.checkTo ? await pair.checkTo(written) : undefined;
    o.log(`${id}: advancing to backfill to see what \`to\` holds`);
    const adv = await migration(bPort, "AdvanceMigration", ns, id);
    if (adv.phase !== "backfill") throw new Error(`${id}: AdvanceMigration left phase "${adv.phase}", expected backfill`);
    const t0 = Date.now();
    let bf = await migration(bPort, "MigrationStatus", ns, id);
    while (!bf.backfillDone) {
      if (Date.now() - t0 > 30_000) throw new Error(`${id}: backfill not done after 30 s: ${JSON.stringify(bf)}`);
      await sleep(200);
      bf = await migration(bPort, "MigrationStatus", ns, id);
    }
    if (bf.backfillSkipped !== written.size || bf.backfillCopied !== KEYS - written.size) {
      throw new Error(`${id}: the backfill found ${bf.backfillSkipped} key(s) already in \`to\` and copied ${bf.backfillCopied}; expected ${written.size} (the keys the load Sets) and ${KEYS - written.size}`);
    }

    const [sa, sb] = sides as [(typeof sides)[0], (typeof sides)[1]];
    const perRound = {
      ops: sb.rounds.map((m, i) => round3(m.opsPerSec / sa.rounds[i]!.opsPerSec)),
      cpu: sb.rounds.map((m, i) => round3(m.cpuUsPerOp / sa.rounds[i]!.cpuUsPerOp)),
    };
    const opsMean = round3(mean(perRound.ops));
    const cpuMean = round3(mean(perRound.cpu));
    const ba = best(sa.rounds);
    const bb = best(sb.rounds);
    const ratio = round3(bb.opsPerSec / ba.opsPerSec);
    const meanCpu = (ms: Measurement[]) => round3(mean(ms.map((m) => m.cpuUsPerOp)));
    const meanBackend = (ms: Measurement[]) => (ms.every((m) => m.backendCpuUsPerOp !== undefined) ? round3(mean(ms.map((m) => m.backendCpuUsPerOp!))) : undefined);
    const backendA = meanBackend(sa.rounds);
    const backendB = meanBackend(sb.rounds);
    const last = statuses.at(-1)!;
    const verified =
      `verified: MigrationStatus "dual_write" before and after each of ${rounds} rounds, 0 dual-write errors, 0 repairs pending, ` +
      `toP99Ms ${statuses.map((s) => s.toP99Ms).join("/")} (from ${statuses.map((s) => s.fromP99Ms).join("/")}) ms; ` +
      `${direct ? `${direct}; ` : ""}backfill after the rounds found ${bf.backfillSkipped} keys already in \`to\` (the ${written.size} the load Sets) and copied the other ${bf.backfillCopied}`;
    const backendNote = backendA !== undefined && backendB !== undefined ? `${pair.backendLabel} CPU µs/op (mean of rounds) ${backendB} with dual-write vs ${backendA} without; ` : "";
    return {
      id,
      title: pair.title,
      kind: "throughput",
      prism: bb,
      prismRssMb: rss.b,
      baselineName: "no migration",
      baseline: ba,
      ratio,
      addedP50Ms: round3(bb.latency.p50 - ba.latency.p50),
      addedP99Ms: round3(bb.latency.p99 - ba.latency.p99),
      target: `>=${TARGET.toFixed(2)}x the same load with no migration`,
      met: ratio >= TARGET,
      command: `npm run bench -- --only ${id}`,
      note:
        `per-round ratio dual-write / no migration: ops/s ${perRound.ops.join(", ")} (mean ${opsMean}), CPU µs/op ${perRound.cpu.join(", ")} (mean ${cpuMean}); ` +
        `Prism CPU µs/op (mean of rounds) ${meanCpu(sb.rounds)} vs ${meanCpu(sa.rounds)}; ${backendNote}RSS ${rss.b} vs ${rss.a} MB; ` +
        `${CONNS} conns x ${DEPTH} in flight, ${GET_PERCENT}/${100 - GET_PERCENT} Get/Set over ${KEYS} keys of 64 B, ${o.threads} client thread(s), ${o.seconds} s per measurement, ${rounds} interleaved rounds (order alternated), table = best round; ` +
        verified,
      detail: {
        pair: pair.label,
        noMigration: { rounds: sa.rounds.map(summary), meanCpuUsPerOp: meanCpu(sa.rounds), meanBackendCpuUsPerOp: backendA },
        dualWrite: { rounds: sb.rounds.map(summary), meanCpuUsPerOp: meanCpu(sb.rounds), meanBackendCpuUsPerOp: backendB },
        perRoundRatio: { ...perRound, opsMean, cpuMean },
        verification: {
          statusAfterRounds: statuses.map((s) => ({ phase: s.phase, dualWriteErrors: s.dualWriteErrors, repairsPending: s.repairsPending, toP99Ms: s.toP99Ms, fromP99Ms: s.fromP99Ms, toErrorRate: s.toErrorRate, servedByFrom: s.servedByFrom, servedByTo: s.servedByTo })),
          keysSetByLoad: [...written].sort(),
          directReadOfTo: direct,
          backfill: { copied: bf.backfillCopied, skipped: bf.backfillSkipped },
          lastStatus: last,
        },
      },
    } as Row & { detail: unknown };
  } finally {
    for (const p of started.reverse()) await p.stop();
    await pair.cleanup?.().catch((e: unknown) => o.log(`${id}: cleanup failed: ${(e as Error).message}`));
  }
}

export const dualWriteMemstore = (o: BenchOptions) =>
  dualWrite(o, {
    id: DUALWRITE_ID,
    title: "KeyValue Get/Set 90/10, binary WebSocket, memstore: migration in dual_write (memstore → memstore) vs the same namespace with no migration",
    label: "memstore → memstore",
    ns: "bench",
    backends: () => ({ old: "{ type: memstore, sweep_interval_ms: 1000 }", new: "{ type: memstore, sweep_interval_ms: 1001 }" }),
  });

async function dropRedisPrefixes(prefixes: string[]): Promise<void> {
  const { Redis } = await import("ioredis");
  const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await r.connect();
    for (const prefix of prefixes) {
      let cursor = "0";
      do {
        const [next, keys] = await r.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
        cursor = next;
        if (keys.length) await r.del(...keys);
      } while (cursor !== "0");
    }
  } finally {
    r.disconnect();
  }
}

export function dualWriteRedisPostgres(o: BenchOptions): Promise<Row> {
  const tag = `${process.pid.toString(36)}${Date.now().toString(36)}`;
  const prefix = (side: "a" | "b") => `prismbench-dw-${tag}-${side}`;
  const schema = `prism_bench_dw_${tag}`;
  const ns = "benchdw";
  let redisPid = 0;
  return dualWrite(o, {
    id: DUALWRITE_PG_ID,
    title: "KeyValue Get/Set 90/10, binary WebSocket: migration in dual_write (Redis → PostgreSQL) vs the same namespace on Redis with no migration",
    label: "redis → postgres",
    ns,
    backends: (side) => ({ old: `{ type: redis, url: "${REDIS_URL}", key_prefix: ${prefix(side)} }`, new: `{ type: postgres, url: "${PG_URL}", schema: ${schema}, pool_max: 10 }` }),
    backendLabel: "redis-server + postgres",
    backendPids: () => {
      if (!redisPid) redisPid = pidsByComm("redis-server")[0] ?? 0;
      return [...(redisPid ? [redisPid] : []), ...pidsByComm("postgres")];
    },
    checkTo: async (written) => {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      try {
        const r = await c.query<{ key: string; value: Buffer }>(`SELECT key, value FROM "${schema}".kv WHERE ns = $1`, [ns]);
        const got = new Map(r.rows.map((row) => [row.key, row.value]));
        const missing = [...written].filter((k) => !got.has(k));
        const extra = [...got.keys()].filter((k) => !written.has(k));
        const wrong = [...got].filter(([, v]) => !v.equals(benchValue())).map(([k]) => k);
        if (missing.length || extra.length || wrong.length) {
          throw new Error(`${DUALWRITE_PG_ID}: PostgreSQL (\`to\`) holds ${got.size} keys: missing ${missing.length} Set by the load (${missing.slice(0, 3).join(", ")}), ${extra.length} never Set (${extra.slice(0, 3).join(", ")}), ${wrong.length} with another value`);
        }
        return `PostgreSQL read directly (${schema}.kv) held exactly the ${got.size} keys the load Sets, 64 B each, none of the ${KEYS - written.size} seeded before the start`;
      } finally {
        await c.end();
      }
    },
    cleanup: async () => {
      await dropRedisPrefixes([prefix("a"), prefix("b")]);
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      try {
        await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        await c.end();
      }
    },
  });
}
