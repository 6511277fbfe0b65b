/**
 * The scenarios: each starts its own Prism process and its own baseline
 * process, measures both with the same client and concurrency, and returns a Row.
 */
import * as grpc from "@grpc/grpc-js";
import { prism as pb } from "../../src/gen/prism.js";
import { benchKey, benchValue, frame, getBody, kvMix } from "./frames.js";
import { memstoreYaml, startBaseline, startPrism, type ServerProcess } from "./spawn.js";
import { rssBytes } from "./proc.js";
import { runWsLoad, sleep, type Measurement } from "./ws-load.js";
import { runH2load, runWrk, hasTool } from "./tools.js";
import { runPgDirect, runRedisDirect } from "./direct.js";
import { round3 } from "./hist.js";
import type { Row } from "./report.js";

export interface BenchOptions {
  seconds: number;
  warmupSeconds: number;
  /** WebSocket client threads. */
  threads: number;
  /** Alternating baseline/Prism rounds per scenario; each side's best is kept. */
  rounds: number;
  log: (msg: string) => void;
}

const NS = "bench";
const KEYS = 100;
const REDIS_URL = process.env.PRISM_BENCH_REDIS_URL ?? "redis://127.0.0.1:6379";
const PG_URL = process.env.PRISM_BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const M = pb.v1.Method;

const mb = (b: number) => Math.round((b / (1024 * 1024)) * 10) / 10;
const cmd = (id: string) => `npm run bench -- --only ${id}`;

async function withServer<T>(start: Promise<ServerProcess>, fn: (s: ServerProcess) => Promise<T>): Promise<T> {
  const s = await start;
  try {
    return await fn(s);
  } finally {
    await s.stop();
  }
}

/** Writes the bench keys through Prism's HTTP route and checks one reads back. */
async function seed(httpPort: number, ns: string): Promise<void> {
  const value = benchValue();
  for (let i = 0; i < KEYS; i++) {
    const r = await fetch(`http://127.0.0.1:${httpPort}/v1/ns/${ns}/kv/${encodeURIComponent(benchKey(i))}`, { method: "PUT", body: value });
    if (r.status !== 200) throw new Error(`seed ${ns}: PUT answered ${r.status}: ${await r.text()}`);
  }
  const r = await fetch(`http://127.0.0.1:${httpPort}/v1/ns/${ns}/kv/${encodeURIComponent(benchKey(1))}`);
  if (r.status !== 200 || (await r.arrayBuffer()).byteLength !== value.length) throw new Error(`seed ${ns}: read-back failed (${r.status})`);
}

/**
 * Runs baseline and Prism alternately, `o.rounds` times each, with both servers
 * up, and keeps each side's best round: on a shared machine noise only ever
 * slows a run down, and alternating spreads slow drifts over both sides.
 */
async function paired(
  o: BenchOptions,
  what: string,
  base: { start?: () => Promise<ServerProcess>; measure: (s: ServerProcess | undefined) => Promise<Measurement> },
  prismSide: { yaml: string; ns: string; measure: (p: ServerProcess) => Promise<Measurement> },
): Promise<{ baseline: Measurement; prism: Measurement; rssMb: number }> {
  const b = base.start ? await base.start() : undefined;
  let p: ServerProcess | undefined;
  try {
    p = await startPrism(prismSide.yaml);
    await seed(p.ports.http!, prismSide.ns);
    let bestB: Measurement | undefined;
    let bestP: Measurement | undefined;
    for (let r = 0; r < o.rounds; r++) {
      o.log(`${what}: round ${r + 1}/${o.rounds} baseline`);
      const mb_ = await base.measure(b);
      checkErrors(`${what} baseline`, mb_);
      if (!bestB || mb_.opsPerSec > bestB.opsPerSec) bestB = mb_;
      o.log(`${what}: round ${r + 1}/${o.rounds} prism`);
      const mp = await prismSide.measure(p);
      checkErrors(`${what} prism`, mp);
      if (!bestP || mp.opsPerSec > bestP.opsPerSec) bestP = mp;
    }
    return { baseline: bestB!, prism: bestP!, rssMb: mb(rssBytes(p.pid)) };
  } finally {
    await p?.stop();
    await b?.stop();
  }
}

function checkErrors(what: string, m: Measurement): void {
  if (m.errors > 0) throw new Error(`${what}: ${m.errors} requests failed (of ${m.ops + m.errors})`);
  if (m.ops === 0) throw new Error(`${what}: no request completed`);
}

function ratioRow(base: Omit<Row, "ratio" | "addedP50Ms" | "addedP99Ms">): Row {
  const b = base.baseline!;
  return {
    ...base,
    ratio: round3(base.prism.opsPerSec / b.opsPerSec),
    addedP50Ms: round3(base.prism.latency.p50 - b.latency.p50),
    addedP99Ms: round3(base.prism.latency.p99 - b.latency.p99),
  };
}

// ------------------------------------------------------------------ WebSocket on memstore

interface WsScenario {
  id: string;
  title: string;
  getPercent: number;
  conns: number;
  depth: number;
  target?: { text: string; check: (r: Row) => boolean };
}

async function wsVsEcho(o: BenchOptions, s: WsScenario): Promise<Row> {
  const templates = kvMix(NS, KEYS, s.getPercent);
  const load = (url: string, pid: number) =>
    runWsLoad({ url, conns: s.conns, depth: s.depth, threads: o.threads, templates, seconds: o.seconds, warmupSeconds: o.warmupSeconds, serverPids: [pid] });
  const { baseline, prism, rssMb } = await paired(
    o,
    s.id,
    { start: () => startBaseline("ws-echo"), measure: (e) => load(`ws://127.0.0.1:${e!.ports.port}/`, e!.pid) },
    { yaml: memstoreYaml(NS), ns: NS, measure: (p) => load(`ws://127.0.0.1:${p.ports.http}/v1/ws`, p.pid) },
  );
  const row = ratioRow({ id: s.id, title: s.title, kind: "throughput", prism, prismRssMb: rssMb, baselineName: "ws echo", baseline, command: cmd(s.id), note: `${s.conns} conns x ${s.depth} in flight, ${o.threads} client thread(s), best of ${o.rounds} alternating rounds` });
  if (s.target) {
    row.target = s.target.text;
    row.met = s.target.check(row);
  }
  return row;
}

export const wsGet = (o: BenchOptions) =>
  wsVsEcho(o, {
    id: "ws-kv-get-memstore",
    title: "KeyValue Get, binary WebSocket, memstore",
    getPercent: 100,
    conns: 8,
    depth: 64,
    target: { text: ">=150K ops/s and >=0.75x ws echo", check: (r) => r.prism.opsPerSec >= 150_000 && r.ratio! >= 0.75 },
  });

export const wsMix = (o: BenchOptions) =>
  wsVsEcho(o, { id: "ws-kv-getset-memstore", title: "KeyValue Get/Set 90/10, binary WebSocket, memstore", getPercent: 90, conns: 8, depth: 64 });

// ------------------------------------------------------------------ open loop at a fixed rate

export async function wsFixedRate(o: BenchOptions): Promise<Row> {
  const id = "ws-kv-get-1000rps";
  const rate = 1000;
  const templates = kvMix(NS, KEYS, 100);
  const seconds = Math.max(o.seconds, 5);
  const load = (url: string, pid: number) => runWsLoad({ url, conns: 4, depth: 0, threads: 1, templates, seconds, warmupSeconds: o.warmupSeconds, rate, serverPids: [pid] });
  // Latency side of paired(): alternate, keep each side's lowest p99 (noise from other tenants only adds).
  const b = await startBaseline("ws-echo");
  let p: ServerProcess | undefined;
  let baseline: Measurement | undefined;
  let prism: Measurement | undefined;
  let rss = 0;
  try {
    p = await startPrism(memstoreYaml(NS));
    await seed(p.ports.http!, NS);
    for (let r = 0; r < o.rounds; r++) {
      o.log(`${id}: round ${r + 1}/${o.rounds}`);
      const mb_ = await load(`ws://127.0.0.1:${b.ports.port}/`, b.pid);
      checkErrors(`${id} echo`, mb_);
      if (!baseline || mb_.latency.p99 < baseline.latency.p99) baseline = mb_;
      const mp = await load(`ws://127.0.0.1:${p.ports.http}/v1/ws`, p.pid);
      checkErrors(`${id} prism`, mp);
      if (!prism || mp.latency.p99 < prism.latency.p99) prism = mp;
    }
    rss = rssBytes(p.pid);
  } finally {
    await p?.stop();
    await b.stop();
  }
  const row = ratioRow({
    id,
    title: `KeyValue Get at a fixed ${rate} req/s (open loop, CO-corrected), WebSocket, memstore`,
    kind: "latency",
    prism: prism!,
    prismRssMb: mb(rss),
    baselineName: "ws echo",
    baseline: baseline!,
    target: "<=0.3 ms added to p99",
    command: cmd(id),
    note: `4 connections, 1 client thread, lowest p99 of ${o.rounds} alternating rounds per side`,
  });
  delete row.ratio;
  row.met = row.addedP99Ms! <= 0.3;
  return row;
}

// ------------------------------------------------------------------ gRPC

/** One real gRPC call (grpc-js client) to check that the request h2load sends is answered with OK and found=true. */
async function verifyGrpcGet(port: number, body: Uint8Array): Promise<void> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  try {
    const resp = await new Promise<Buffer>((resolve, reject) =>
      client.makeUnaryRequest("/prism.v1.KeyValue/Get", (b: Buffer) => b, (b: Buffer) => b, Buffer.from(body), (err, r) => (err ? reject(err) : resolve(r!))),
    );
    if (!pb.v1.GetResponse.decode(resp).found) throw new Error("gRPC KeyValue/Get: key not found");
  } finally {
    client.close();
  }
}

export async function grpcGet(o: BenchOptions): Promise<Row> {
  const id = "grpc-kv-get-memstore";
  if (!(await hasTool("h2load"))) throw new Error("h2load is not installed (apt-get install -y nghttp2-client)");
  const body = getBody(NS, benchKey(1));
  const load = (port: number, pid: number) => runH2load({ url: `http://127.0.0.1:${port}/prism.v1.KeyValue/Get`, body, conns: 16, streams: 32, seconds: o.seconds, warmupSeconds: o.warmupSeconds, serverPids: [pid] });
  o.log(`${id}: bare node:http2 gRPC echo`);
  const h2 = await withServer(startBaseline("http2-grpc"), (e) => load(e.ports.port!, e.pid));
  const { baseline, prism, rssMb } = await paired(
    o,
    id,
    { start: () => startBaseline("grpc-echo"), measure: (e) => load(e!.ports.port!, e!.pid) },
    {
      yaml: memstoreYaml(NS),
      ns: NS,
      measure: async (p) => {
        await verifyGrpcGet(p.ports.grpc!, body);
        return load(p.ports.grpc!, p.pid);
      },
    },
  );
  const row = ratioRow({
    id,
    title: "KeyValue Get, gRPC (h2load -c16 -m32), memstore",
    kind: "throughput",
    prism,
    prismRssMb: rssMb,
    baselineName: "grpc-js echo",
    baseline,
    target: ">=1.0x grpc-js echo",
    command: cmd(id),
    note: `bare node:http2 gRPC echo in the same run: ${h2.opsPerSec} req/s, ${h2.cpuUsPerOp} µs CPU/req, p50 ${h2.latency.p50} ms, p99 ${h2.latency.p99} ms`,
  });
  row.met = row.ratio! >= 1.0;
  return row;
}

// ------------------------------------------------------------------ HTTP

export async function httpGet(o: BenchOptions): Promise<Row> {
  const id = "http-kv-get-memstore";
  if (!(await hasTool("wrk"))) throw new Error("wrk is not installed (apt-get install -y wrk)");
  const load = (url: string, pid: number) => runWrk({ url, conns: 64, seconds: o.seconds, warmupSeconds: o.warmupSeconds, serverPids: [pid] });
  const { baseline, prism, rssMb } = await paired(
    o,
    id,
    { start: () => startBaseline("http-hello"), measure: (e) => load(`http://127.0.0.1:${e!.ports.port}/`, e!.pid) },
    { yaml: memstoreYaml(NS), ns: NS, measure: (p) => load(`http://127.0.0.1:${p.ports.http}/v1/ns/${NS}/kv/${encodeURIComponent(benchKey(1))}`, p.pid) },
  );
  const row = ratioRow({ id, title: "KeyValue Get, HTTP raw route (wrk -t1 -c64), memstore", kind: "throughput", prism, prismRssMb: rssMb, baselineName: "node:http hello", baseline, target: ">=0.60x node:http hello", command: cmd(id) });
  row.met = row.ratio! >= 0.6;
  return row;
}

// ------------------------------------------------------------------ through Prism to a networked backend

const INFLIGHT_CONNS = 4;
const INFLIGHT_DEPTH = 16;

export async function redisGet(o: BenchOptions): Promise<Row> {
  const id = "ws-kv-get-redis";
  const ns = "benchredis";
  const inflight = INFLIGHT_CONNS * INFLIGHT_DEPTH;
  const keys = Array.from({ length: KEYS }, (_, i) => `prismbench:direct:${benchKey(i)}`);
  const yaml = `namespaces:\n  - name: ${ns}\n    backend: { type: redis, url: "${REDIS_URL}", key_prefix: prismbench }\n`;
  const templates = Array.from({ length: KEYS }, (_, i) => frame(M.KV_GET, getBody(ns, benchKey(i))));
  const { baseline, prism, rssMb } = await paired(
    o,
    id,
    { measure: () => runRedisDirect({ url: REDIS_URL, keys, inflight, seconds: o.seconds, warmupSeconds: o.warmupSeconds }) },
    {
      yaml,
      ns,
      measure: (p) => runWsLoad({ url: `ws://127.0.0.1:${p.ports.http}/v1/ws`, conns: INFLIGHT_CONNS, depth: INFLIGHT_DEPTH, threads: 1, templates, seconds: o.seconds, warmupSeconds: o.warmupSeconds, serverPids: [p.pid] }),
    },
  );
  const row = ratioRow({
    id,
    title: `KeyValue Get through Prism (WebSocket) to Redis vs direct ioredis GET, ${inflight} in flight`,
    kind: "throughput",
    prism,
    prismRssMb: rssMb,
    baselineName: "ioredis direct",
    baseline,
    target: ">=0.70x direct and <=0.2 ms added to p50",
    command: cmd(id),
    note: "CPU µs/op: Prism process for Prism, redis-server for the baseline",
  });
  row.met = row.ratio! >= 0.7 && row.addedP50Ms! <= 0.2;
  return row;
}

export async function pgGet(o: BenchOptions): Promise<Row> {
  const id = "ws-kv-get-postgres";
  const ns = "benchpg";
  const inflight = INFLIGHT_CONNS * INFLIGHT_DEPTH;
  const keys = Array.from({ length: KEYS }, (_, i) => benchKey(i));
  const yaml = `namespaces:\n  - name: ${ns}\n    backend: { type: postgres, url: "${PG_URL}", schema: prism_bench, pool_max: 10 }\n`;
  const templates = Array.from({ length: KEYS }, (_, i) => frame(M.KV_GET, getBody(ns, benchKey(i))));
  const { baseline, prism, rssMb } = await paired(
    o,
    id,
    { measure: () => runPgDirect({ url: PG_URL, keys, inflight, poolMax: 10, seconds: o.seconds, warmupSeconds: o.warmupSeconds }) },
    {
      yaml,
      ns,
      measure: (p) => runWsLoad({ url: `ws://127.0.0.1:${p.ports.http}/v1/ws`, conns: INFLIGHT_CONNS, depth: INFLIGHT_DEPTH, threads: 1, templates, seconds: o.seconds, warmupSeconds: o.warmupSeconds, serverPids: [p.pid] }),
    },
  );
  return ratioRow({
    id,
    title: `KeyValue Get through Prism (WebSocket) to PostgreSQL vs direct pg SELECT (pool 10), ${inflight} in flight`,
    kind: "throughput",
    prism,
    prismRssMb: rssMb,
    baselineName: "pg direct",
    baseline,
    command: cmd(id),
    note: "CPU µs/op: Prism process for Prism, all postgres processes for the baseline",
  });
}

// ------------------------------------------------------------------ memory and connections

export async function idleRss(o: BenchOptions): Promise<Row> {
  const id = "idle-rss-per-worker";
  o.log(`${id}: prism`);
  const rss = await withServer(startPrism(memstoreYaml(NS)), async (p) => {
    await sleep(2000);
    return rssBytes(p.pid);
  });
  const empty: Measurement = { ops: 0, errors: 0, opsPerSec: 0, latency: { p50: -1, p90: -1, p99: -1, p999: -1, max: -1 }, cpuUsPerOp: 0, serverBusy: 0, clientBusy: 0 };
  return { id, title: "Idle RSS of one worker (--workers 1, memstore, 2 s after start)", kind: "memory", prism: empty, prismRssMb: mb(rss), baselineName: "-", target: "<=60 MB", met: mb(rss) <= 60, command: cmd(id) };
}

export async function wsConnections(o: BenchOptions, count = Number(process.env.PRISM_BENCH_CONNS ?? 10_000)): Promise<Row> {
  const id = "ws-10k-connections";
  o.log(`${id}: prism with ${count} connections`);
  const templates = [frame(M.KV_GET, getBody(NS, benchKey(1)))];
  const [m, rss] = await withServer(startPrism(memstoreYaml(NS)), async (p) => {
    await seed(p.ports.http!, NS);
    const m = await runWsLoad({ url: `ws://127.0.0.1:${p.ports.http}/v1/ws`, conns: count, depth: 1, threads: 2, templates, seconds: 0, idle: true, serverPids: [p.pid] });
    return [m, rssBytes(p.pid)] as const;
  });
  const ok = m.connections === count && m.ops === count && m.errors === 0;
  return {
    id,
    title: `${count} WebSocket connections held open, each served one KeyValue Get`,
    kind: "memory",
    prism: m,
    prismRssMb: mb(rss),
    baselineName: "-",
    target: `${count} connections open and served`,
    met: ok,
    command: cmd(id),
    note: `${m.connections} connected, ${m.ops} answered, ${m.errors} errors; RSS with all open`,
  };
}

export const SCENARIOS: Record<string, (o: BenchOptions) => Promise<Row>> = {
  "ws-kv-get-memstore": wsGet,
  "ws-kv-getset-memstore": wsMix,
  "grpc-kv-get-memstore": grpcGet,
  "http-kv-get-memstore": httpGet,
  "ws-kv-get-redis": redisGet,
  "ws-kv-get-postgres": pgGet,
  "ws-kv-get-1000rps": wsFixedRate,
  "idle-rss-per-worker": idleRss,
  "ws-10k-connections": (o) => wsConnections(o),
};

/** The perf:check subset (ratios gated against perf/baseline.json). */
export const CHECK_SUBSET = ["ws-kv-get-memstore", "grpc-kv-get-memstore", "http-kv-get-memstore", "ws-kv-get-redis"];
