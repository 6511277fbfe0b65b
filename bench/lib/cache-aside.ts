/**
 * Cache-Aside (issue 13): the Get hit path of a `pattern: cache-aside`
 * namespace against plain KeyValue namespaces, `prism serve --workers 1`
 * processes measured in the same interleaved rounds (the rotation changes the
 * order every round, so slow drifts of the shared machine hit every side).
 *
 *   ws-kv-get-cache-aside-hit: cache memstore + source memstore vs a plain
 *     memstore namespace (target ≥ 0.90x: what the pattern's lookup, hit
 *     accounting and the composed store cost on top of a memstore Get).
 *   ws-kv-get-cache-aside-redis-postgres: cache Redis + source PostgreSQL vs
 *     the same PostgreSQL namespace without a cache (what the application had)
 *     and a plain Redis namespace (the floor a hit can reach). No target: the
 *     issue asks for the row.
 *
 * Load: Gets over 100 keys of 64 B, 8 connections × 64 in flight. The keys are
 * seeded through Prism (Set goes to the source), then each is read once so it
 * is cached (a miss and a fill), with ttl_seconds far beyond the run.
 *
 * So that the rows cannot measure something else, the scenario reads the
 * pattern's counters from /metrics around the rounds: every Get of the rounds
 * must be a hit (hits grow by at least the measured ops, misses, fills and
 * cache errors do not grow at all), and the warm-up read must have been 100
 * misses and 100 fills. The Redis/PostgreSQL row also checks the backends
 * directly: Redis holds the 100 cached keys under the run's prefix, and
 * PostgreSQL's row count is the 100 seeded keys.
 */
import pg from "pg";
import { prism as pb } from "../../src/gen/prism.js";
import { benchKey, benchValue, frame, getBody } from "./frames.js";
import { pidsByComm } from "./direct.js";
import { round3 } from "./hist.js";
import { rssBytes } from "./proc.js";
import type { Row } from "./report.js";
import type { BenchOptions } from "./scenarios.js";
import { startPrism, type ServerProcess } from "./spawn.js";
import { runWsLoad, type Measurement } from "./ws-load.js";

export const CACHE_HIT_ID = "ws-kv-get-cache-aside-hit";
export const CACHE_RP_ID = "ws-kv-get-cache-aside-redis-postgres";
const KEYS = 100;
const CONNS = 8;
const DEPTH = 64;
const TARGET = 0.9;
const REDIS_URL = process.env.PRISM_BENCH_REDIS_URL ?? process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const PG_URL = process.env.PRISM_BENCH_PG_URL ?? process.env.POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const M = pb.v1.Method;
const EVENTS = ["hit", "miss", "fill", "coalesced", "cache_error", "fill_dropped"] as const;
type Events = Record<(typeof EVENTS)[number], number>;

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const mb = (b: number) => Math.round((b / (1024 * 1024)) * 10) / 10;
const best = (ms: Measurement[]) => ms.reduce((a, b) => (b.opsPerSec > a.opsPerSec ? b : a));
const summary = (m: Measurement) => ({ opsPerSec: m.opsPerSec, p50: m.latency.p50, p99: m.latency.p99, cpuUsPerOp: m.cpuUsPerOp, backendCpuUsPerOp: m.backendCpuUsPerOp, serverBusy: m.serverBusy, clientBusy: m.clientBusy, machineIdle: m.machineIdle });

interface SideSpec {
  key: string;
  label: string;
  /** `backends:` entries and the namespace entry's body (after `- name: NS`). */
  yaml: (ns: string) => string;
  cached: boolean;
}

interface Side extends SideSpec {
  proc: ServerProcess;
  rounds: Measurement[];
}

/** The cache-aside counters of `ns` in the process's /metrics. */
async function events(httpPort: number, ns: string): Promise<Events> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const out = Object.fromEntries(EVENTS.map((e) => [e, 0])) as Events;
  for (const line of text.split("\n")) {
    if (!line.startsWith("prism_pattern_events_total{")) continue;
    const labels = line.slice(line.indexOf("{") + 1, line.indexOf("}"));
    if (!labels.includes(`namespace="${ns}"`) || !labels.includes(`pattern="cache-aside"`)) continue;
    const ev = /event="([a-z_]+)"/.exec(labels)?.[1] as keyof Events | undefined;
    if (ev && ev in out) out[ev] = Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return out;
}

async function seedAndWarm(httpPort: number, ns: string, what: string): Promise<void> {
  const value = benchValue();
  for (let i = 0; i < KEYS; i++) {
    const r = await fetch(`http://127.0.0.1:${httpPort}/v1/ns/${ns}/kv/${encodeURIComponent(benchKey(i))}`, { method: "PUT", body: value });
    if (r.status !== 200) throw new Error(`${what}: seed: PUT answered ${r.status}: ${await r.text()}`);
  }
  for (let i = 0; i < KEYS; i++) {
    const r = await fetch(`http://127.0.0.1:${httpPort}/v1/ns/${ns}/kv/${encodeURIComponent(benchKey(i))}`);
    const body = Buffer.from(await r.arrayBuffer());
    if (r.status !== 200 || !body.equals(value)) throw new Error(`${what}: warm-up read of ${benchKey(i)} answered ${r.status} (${body.length} B)`);
  }
}

interface Pair {
  id: string;
  title: string;
  ns: string;
  sides: SideSpec[];
  /** Index of the side the row's ratio divides by. */
  baselineIndex: number;
  target?: number;
  backendPids?: () => number[];
  backendLabel?: string;
  /** Reads the backends directly after the rounds; returns what it found (throws when wrong). */
  checkBackends?: () => Promise<string>;
  cleanup?: () => Promise<void>;
}

async function compare(o: BenchOptions, pair: Pair): Promise<Row> {
  const { id, ns } = pair;
  const templates = Array.from({ length: KEYS }, (_, i) => frame(M.KV_GET, getBody(ns, benchKey(i))));
  const sides: Side[] = [];
  try {
    for (const spec of pair.sides) {
      o.log(`${id}: starting prism (${spec.label})`);
      const proc = await startPrism(`${spec.yaml(ns)}`);
      sides.push({ ...spec, proc, rounds: [] });
      await seedAndWarm(proc.ports.http!, ns, `${id} (${spec.label})`);
    }
    const cached = sides.filter((s) => s.cached);
    const warm = new Map<string, Events>();
    for (const s of cached) {
      const e = await events(s.proc.ports.http!, ns);
      if (e.miss !== KEYS || e.fill !== KEYS || e.hit !== 0 || e.cache_error !== 0) {
        throw new Error(`${id} (${s.label}): after the warm-up read the counters are ${JSON.stringify(e)}; expected ${KEYS} misses and fills, no hit, no cache error`);
      }
      warm.set(s.key, e);
    }

    const rounds = Math.max(o.rounds, 4);
    for (let r = 0; r < rounds; r++) {
      const order = sides.map((_, i) => sides[(i + r) % sides.length]!);
      for (const side of order) {
        o.log(`${id}: round ${r + 1}/${rounds} ${side.label}`);
        const m = await runWsLoad({
          url: `ws://127.0.0.1:${side.proc.ports.http}/v1/ws`,
          conns: CONNS,
          depth: DEPTH,
          threads: o.threads,
          templates,
          seconds: o.seconds,
          warmupSeconds: o.warmupSeconds,
          serverPids: [side.proc.pid],
          backendPids: pair.backendPids,
        });
        if (m.errors > 0) throw new Error(`${id} ${side.label}: ${m.errors} requests failed (of ${m.ops + m.errors})`);
        if (m.ops === 0) throw new Error(`${id} ${side.label}: no request completed`);
        side.rounds.push(m);
      }
    }

    const verifiedParts: string[] = [];
    for (const s of cached) {
      const before = warm.get(s.key)!;
      const after = await events(s.proc.ports.http!, ns);
      const measured = s.rounds.reduce((a, m) => a + m.ops, 0);
      const hits = after.hit - before.hit;
      const bad: string[] = [];
      if (hits < measured) bad.push(`${hits} hits for ${measured} measured Gets`);
      for (const e of ["miss", "fill", "cache_error", "fill_dropped", "coalesced"] as const) if (after[e] !== before[e]) bad.push(`${after[e] - before[e]} ${e} event(s) during the rounds`);
      if (bad.length) throw new Error(`${id} (${s.label}): not a pure hit path: ${bad.join("; ")}`);
      verifiedParts.push(`${s.label}: ${hits} hits during the rounds (${measured} measured Gets plus warm-up), 0 misses, 0 fills, 0 cache errors; the warm-up read was ${KEYS} misses + ${KEYS} fills`);
    }
    const direct = pair.checkBackends ? await pair.checkBackends() : undefined;
    if (direct) verifiedParts.push(direct);

    const base = sides[pair.baselineIndex]!;
    const subject = sides.find((s) => s.cached)!;
    const others = sides.filter((s) => s !== base && s !== subject);
    const ratioOf = (a: Side, b: Side) => round3(best(a.rounds).opsPerSec / best(b.rounds).opsPerSec);
    const perRound = (a: Side, b: Side) => a.rounds.map((m, i) => round3(m.opsPerSec / b.rounds[i]!.opsPerSec));
    const cpuMean = (s: Side) => round3(mean(s.rounds.map((m) => m.cpuUsPerOp)));
    const backendMean = (s: Side) => (s.rounds.every((m) => m.backendCpuUsPerOp !== undefined) ? round3(mean(s.rounds.map((m) => m.backendCpuUsPerOp!))) : undefined);
    const ratio = ratioOf(subject, base);
    const pr = perRound(subject, base);
    const bs = best(subject.rounds);
    const bb = best(base.rounds);
    const sideLine = (s: Side) => {
      const b = best(s.rounds);
      const be = backendMean(s);
      return `${s.label}: best ${Math.round(b.opsPerSec)} ops/s, p50/p99 ${b.latency.p50}/${b.latency.p99} ms, Prism CPU µs/op (mean of rounds) ${cpuMean(s)}${be !== undefined ? `, ${pair.backendLabel} ${be}` : ""}, RSS ${mb(rssBytes(s.proc.pid))} MB`;
    };
    return {
      id,
      title: pair.title,
      kind: "throughput",
      prism: bs,
      prismRssMb: mb(rssBytes(subject.proc.pid)),
      baselineName: base.label,
      baseline: bb,
      ratio,
      addedP50Ms: round3(bs.latency.p50 - bb.latency.p50),
      addedP99Ms: round3(bs.latency.p99 - bb.latency.p99),
      ...(pair.target !== undefined ? { target: `>=${pair.target.toFixed(2)}x ${base.label}`, met: ratio >= pair.target } : {}),
      command: `npm run bench -- --only ${id}`,
      note:
        `per-round ratio ${subject.label} / ${base.label}: ${pr.join(", ")} (mean ${round3(mean(pr))}); ` +
        others.map((s) => `vs ${s.label}: best-round ${ratioOf(subject, s)}x, per round ${perRound(subject, s).join(", ")}; `).join("") +
        sides.map(sideLine).join("; ") +
        `; ${CONNS} conns x ${DEPTH} in flight, Gets over ${KEYS} keys of 64 B, ${o.threads} client thread(s), ${o.seconds} s per measurement, ${rounds} rounds (rotating order), table = best round; verified: ` +
        verifiedParts.join("; "),
      detail: {
        sides: Object.fromEntries(sides.map((s) => [s.label, { rounds: s.rounds.map(summary), meanCpuUsPerOp: cpuMean(s), meanBackendCpuUsPerOp: backendMean(s) }])),
        perRoundRatio: pr,
      },
    } as Row & { detail: unknown };
  } finally {
    for (const s of sides.reverse()) await s.proc.stop();
    await pair.cleanup?.().catch((e: unknown) => o.log(`${id}: cleanup failed: ${(e as Error).message}`));
  }
}

export const cacheAsideHit = (o: BenchOptions) =>
  compare(o, {
    id: CACHE_HIT_ID,
    title: "KeyValue Get, binary WebSocket: cache-aside namespace (cache memstore, source memstore), every Get a cache hit, vs a plain memstore namespace",
    ns: "bench",
    baselineIndex: 0,
    target: TARGET,
    sides: [
      { key: "plain", label: "plain memstore Get", cached: false, yaml: (ns) => `namespaces:\n  - name: ${ns}\n    backend: { type: memstore }\n` },
      {
        key: "cache",
        label: "cache-aside hit",
        cached: true,
        // sweep_interval_ms differs so the router pools the two instances apart (it pools by type + options).
        yaml: (ns) =>
          `backends:\n  cache: { type: memstore, sweep_interval_ms: 1000 }\n  main: { type: memstore, sweep_interval_ms: 1001 }\n` +
          `namespaces:\n  - name: ${ns}\n    pattern: cache-aside\n    slots: { cache: cache, source: main }\n    options: { ttl_seconds: 86400 }\n`,
      },
    ],
  });

export function cacheAsideRedisPostgres(o: BenchOptions): Promise<Row> {
  const tag = `${process.pid.toString(36)}${Date.now().toString(36)}`;
  const prefix = (side: string) => `prismbench-ca-${tag}-${side}`;
  const schema = `prism_bench_ca_${tag}`;
  const ns = "benchca";
  let redisPid = 0;
  const pgBackend = (side: string) => `{ type: postgres, url: "${PG_URL}", schema: ${schema}_${side}, pool_max: 10 }`;
  const redisBackend = (side: string) => `{ type: redis, url: "${REDIS_URL}", key_prefix: ${prefix(side)} }`;
  return compare(o, {
    id: CACHE_RP_ID,
    title: "KeyValue Get, binary WebSocket: cache-aside namespace (cache Redis, source PostgreSQL), every Get a cache hit, vs the PostgreSQL namespace without a cache",
    ns,
    baselineIndex: 0,
    backendLabel: "redis-server + postgres CPU µs/op",
    backendPids: () => {
      if (!redisPid) redisPid = pidsByComm("redis-server")[0] ?? 0;
      return [...(redisPid ? [redisPid] : []), ...pidsByComm("postgres")];
    },
    sides: [
      { key: "pg", label: "plain PostgreSQL Get", cached: false, yaml: (n) => `namespaces:\n  - name: ${n}\n    backend: ${pgBackend("pg")}\n` },
      {
        key: "ca",
        label: "cache-aside hit (Redis cache, PostgreSQL source)",
        cached: true,
        yaml: (n) => `backends:\n  cache: ${redisBackend("ca")}\n  main: ${pgBackend("ca")}\nnamespaces:\n  - name: ${n}\n    pattern: cache-aside\n    slots: { cache: cache, source: main }\n    options: { ttl_seconds: 86400 }\n`,
      },
      { key: "redis", label: "plain Redis Get", cached: false, yaml: (n) => `namespaces:\n  - name: ${n}\n    backend: ${redisBackend("redis")}\n` },
    ],
    checkBackends: async () => {
      const { Redis } = await import("ioredis");
      const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
      const c = new pg.Client({ connectionString: PG_URL });
      try {
        await r.connect();
        let cursor = "0";
        let cachedKeys = 0;
        do {
          const [next, keys] = await r.scan(cursor, "MATCH", `${prefix("ca")}*`, "COUNT", 1000);
          cursor = next;
          cachedKeys += keys.length;
        } while (cursor !== "0");
        await c.connect();
        const rows = Number((await c.query<{ n: string }>(`SELECT count(*) AS n FROM "${schema}_ca".kv WHERE ns = $1`, [ns])).rows[0]!.n);
        if (cachedKeys < KEYS || rows !== KEYS) throw new Error(`${CACHE_RP_ID}: Redis holds ${cachedKeys} key(s) under the cache's prefix (expected at least ${KEYS}), the source table ${rows} row(s) (expected ${KEYS})`);
        return `read directly: Redis held ${cachedKeys} keys under the cache's prefix, the PostgreSQL source ${rows} rows`;
      } finally {
        r.disconnect();
        await c.end().catch(() => undefined);
      }
    },
    cleanup: async () => {
      const { Redis } = await import("ioredis");
      const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
      try {
        await r.connect();
        for (const side of ["ca", "redis"]) {
          let cursor = "0";
          do {
            const [next, keys] = await r.scan(cursor, "MATCH", `${prefix(side)}*`, "COUNT", 1000);
            cursor = next;
            if (keys.length) await r.del(...keys);
          } while (cursor !== "0");
        }
      } finally {
        r.disconnect();
      }
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      try {
        for (const side of ["pg", "ca"]) await c.query(`DROP SCHEMA IF EXISTS "${schema}_${side}" CASCADE`);
      } finally {
        await c.end();
      }
    },
  });
}
