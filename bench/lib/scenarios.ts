/**
 * The scenarios: each starts its own Prism process and its own baseline
 * process, measures both with the same client and concurrency, and returns a Row.
 */
import { queueVsBullmq, queueVsPgBoss } from "./queue-vs.js";
import { registry100k } from "./registry-100k.js";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { prism as pb } from "../../src/gen/prism.js";
import { benchKey, benchValue, frame, getBody, kvMix, setBody } from "./frames.js";
import { ROOT, memstoreYaml, startBaseline, startPrism, type ServerProcess } from "./spawn.js";
import { childPids, rssBytes, rssParts } from "./proc.js";
import { runWsLoad, sleep, type Measurement } from "./ws-load.js";
import { runH2load, runWrk, hasTool } from "./tools.js";
import { pidsByComm, runPgDirect, runRedisDirect } from "./direct.js";
import { round3 } from "./hist.js";
import { runWorkerLoad } from "./worker-load.js";
import { scaleNamespaces } from "./scale-namespaces.js";
import { wsGetTlsJwt } from "./auth-tls.js";
import { dualWriteMemstore, dualWriteRedisPostgres } from "./dualwrite.js";
import { cacheAsideHit, cacheAsideRedisPostgres } from "./cache-aside.js";
import { overloadCriticalP99 } from "./overload.js";
import type { Row } from "./report.js";
import { SERVER_NODE_FLAGS } from "../../src/workers/node-flags.js";

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

/** One side of an alternating measurement: a server (or none: a direct backend client) and how to load it. */
interface Side {
  name: string;
  start?: () => Promise<ServerProcess>;
  measure: (s: ServerProcess | undefined) => Promise<Measurement>;
}

/**
 * Starts every side's server, then measures the sides in turn, `o.rounds`
 * times, and keeps each side's best round (highest ops/s): on a shared
 * machine noise only ever slows a run down, and alternating spreads slow
 * drifts over all sides. Returns the best measurements and each server's RSS
 * at the end (0 without a server), in the order of `sides`.
 */
async function alternate(o: BenchOptions, what: string, sides: Side[]): Promise<{ best: Measurement[]; rssMb: number[] }> {
  const procs: (ServerProcess | undefined)[] = [];
  try {
    for (const side of sides) procs.push(side.start ? await side.start() : undefined);
    const best: (Measurement | undefined)[] = sides.map(() => undefined);
    for (let r = 0; r < o.rounds; r++) {
      for (let i = 0; i < sides.length; i++) {
        o.log(`${what}: round ${r + 1}/${o.rounds} ${sides[i]!.name}`);
        const m = await sides[i]!.measure(procs[i]);
        checkErrors(`${what} ${sides[i]!.name}`, m);
        if (!best[i] || m.opsPerSec > best[i]!.opsPerSec) best[i] = m;
      }
    }
    return { best: best as Measurement[], rssMb: procs.map((p) => (p ? mb(rssBytes(p.pid)) : 0)) };
  } finally {
    for (const p of procs.reverse()) await p?.stop();
  }
}

/** Starts Prism with `yaml` and seeds the bench keys in `ns`. */
async function seededPrism(yaml: string, ns: string): Promise<ServerProcess> {
  const p = await startPrism(yaml);
  try {
    await seed(p.ports.http!, ns);
  } catch (e) {
    await p.stop();
    throw e;
  }
  return p;
}

/** alternate() with one baseline side and Prism (seeded) as the other. */
async function paired(
  o: BenchOptions,
  what: string,
  base: { start?: () => Promise<ServerProcess>; measure: (s: ServerProcess | undefined) => Promise<Measurement> },
  prismSide: { yaml: string; ns: string; measure: (p: ServerProcess) => Promise<Measurement> },
): Promise<{ baseline: Measurement; prism: Measurement; rssMb: number }> {
  const { best, rssMb } = await alternate(o, what, [
    { name: "baseline", ...base },
    { name: "prism", start: () => seededPrism(prismSide.yaml, prismSide.ns), measure: (p) => prismSide.measure(p!) },
  ]);
  return { baseline: best[0]!, prism: best[1]!, rssMb: rssMb[1]! };
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
  /** Also measure the corked echo (bench/servers/ws-echo-corked.ts) and return a second row `${id}-vs-corked`. */
  corked?: boolean;
}

async function wsVsEcho(o: BenchOptions, s: WsScenario): Promise<Row[]> {
  const templates = kvMix(NS, KEYS, s.getPercent);
  const load = (url: string, pid: number) =>
    runWsLoad({ url, conns: s.conns, depth: s.depth, threads: o.threads, templates, seconds: o.seconds, warmupSeconds: o.warmupSeconds, serverPids: [pid] });
  const echo = (file: "ws-echo" | "ws-echo-corked"): Side => ({ name: file, start: () => startBaseline(file), measure: (e) => load(`ws://127.0.0.1:${e!.ports.port}/`, e!.pid) });
  const sides: Side[] = [echo("ws-echo"), { name: "prism", start: () => seededPrism(memstoreYaml(NS), NS), measure: (p) => load(`ws://127.0.0.1:${p!.ports.http}/v1/ws`, p!.pid) }];
  if (s.corked) sides.push(echo("ws-echo-corked"));
  const { best, rssMb } = await alternate(o, s.id, sides);
  const note = `${s.conns} conns x ${s.depth} in flight, ${o.threads} client thread(s), best of ${o.rounds} alternating rounds`;
  const row = ratioRow({ id: s.id, title: s.title, kind: "throughput", prism: best[1]!, prismRssMb: rssMb[1]!, baselineName: "ws echo", baseline: best[0]!, command: cmd(s.id), note });
  if (s.target) {
    row.target = s.target.text;
    row.met = s.target.check(row);
  }
  if (!s.corked) return [row];
  const corkedRow = ratioRow({
    id: `${s.id}-vs-corked`,
    title: `${s.title}, against a ws echo corked per loop turn like Prism`,
    kind: "throughput",
    prism: best[1]!,
    prismRssMb: rssMb[1]!,
    baselineName: "ws echo corked",
    baseline: best[2]!,
    command: cmd(s.id),
    note: `same Prism measurement as ${s.id}; ${note}`,
  });
  return [row, corkedRow];
}

export const wsGet = (o: BenchOptions) =>
  wsVsEcho(o, {
    id: "ws-kv-get-memstore",
    title: "KeyValue Get, binary WebSocket, memstore",
    getPercent: 100,
    conns: 8,
    depth: 64,
    corked: true,
    target: { text: ">=150K ops/s and >=0.75x ws echo", check: (r) => r.prism.opsPerSec >= 150_000 && r.ratio! >= 0.75 },
  });

export const wsMix = (o: BenchOptions) =>
  wsVsEcho(o, { id: "ws-kv-getset-memstore", title: "KeyValue Get/Set 90/10, binary WebSocket, memstore", getPercent: 90, conns: 8, depth: 64 });

// ------------------------------------------------------------------ metrics overhead (issue 6)

/** ws-kv-get-memstore against two Prism processes, server.metrics true and false (access log off in both). */
export async function metricsOverhead(o: BenchOptions): Promise<Row> {
  const id = "ws-kv-get-metrics-overhead";
  const templates = kvMix(NS, KEYS, 100);
  const load = (p: ServerProcess) =>
    runWsLoad({ url: `ws://127.0.0.1:${p.ports.http}/v1/ws`, conns: 8, depth: 64, threads: o.threads, templates, seconds: o.seconds, warmupSeconds: o.warmupSeconds, serverPids: [p.pid] });
  const prismWith = (metrics: boolean): Side => ({
    name: `prism metrics ${metrics ? "on" : "off"}`,
    start: () => seededPrism(memstoreYaml(NS, { metrics, access_log_sample: 0 }), NS),
    measure: (p) => load(p!),
  });
  const { best, rssMb } = await alternate(o, id, [prismWith(false), prismWith(true)]);
  const [off, on] = [best[0]!, best[1]!];
  return ratioRow({
    id,
    title: "KeyValue Get, binary WebSocket, memstore: Prism with server.metrics true vs false (access_log_sample 0 in both)",
    kind: "throughput",
    prism: on,
    prismRssMb: rssMb[1]!,
    baselineName: "prism metrics off",
    baseline: off,
    command: cmd(id),
    note: `metrics cost ${round3(on.cpuUsPerOp - off.cpuUsPerOp)} µs CPU/op (${on.cpuUsPerOp} vs ${off.cpuUsPerOp}); RSS ${rssMb[1]} vs ${rssMb[0]} MB; 8 conns x 64 in flight, best of ${o.rounds} alternating rounds`,
  });
}

// ------------------------------------------------------------------ pub/sub fan-out

const TOPIC = "bench.fanout";
const PAYLOAD_BYTES = 64;

/** Deliveries in flight ~512 (as the KV scenarios' requests), at least 4 messages. */
const fanoutWindow = (subs: number) => Math.max(4, Math.min(64, Math.round(512 / subs)));

/**
 * 1 publisher, `subs` subscribers over WebSocket on memstore, against the bare
 * ws broadcast server (and, in the note, the same server corked per turn).
 * ops = messages delivered to subscribers.
 */
export async function pubsubFanout(o: BenchOptions, subs: number): Promise<Row> {
  const id = `ws-pubsub-fanout-${subs}`;
  const window = fanoutWindow(subs);
  const publishFrame = frame(M.PUBSUB_PUBLISH, pb.v1.PublishRequest.encode({ namespace: NS, topic: TOPIC, payload: Buffer.alloc(PAYLOAD_BYTES) }).finish());
  const subscribeFrame = frame(M.PUBSUB_SUBSCRIBE, pb.v1.SubscribeRequest.encode({ namespace: NS, pattern: TOPIC }).finish());
  Buffer.from(subscribeFrame.buffer, subscribeFrame.byteOffset).writeUInt32LE(1, 2);
  const load = (mode: "prism" | "bare", url: string, pid: number) =>
    runWorkerLoad({ file: new URL("./pubsub-worker.js", import.meta.url), data: [{ mode, url, subscribers: subs, window, publishFrame, subscribeFrame }], seconds: o.seconds, warmupSeconds: o.warmupSeconds, serverPids: [pid] });
  const bare = (cork: boolean): Side => ({
    name: cork ? "ws broadcast corked" : "ws broadcast",
    start: () => startBaseline("ws-broadcast", cork ? ["--cork"] : []),
    measure: (e) => load("bare", `ws://127.0.0.1:${e!.ports.port}/`, e!.pid),
  });
  const { best, rssMb } = await alternate(o, id, [
    bare(false),
    { name: "prism", start: () => startPrism(memstoreYaml(NS)), measure: (p) => load("prism", `ws://127.0.0.1:${p!.ports.http}/v1/ws`, p!.pid) },
    bare(true),
  ]);
  const corked = best[2]!;
  return ratioRow({
    id,
    title: `PubSub fan-out 1 → ${subs}, WebSocket, memstore (delivered messages/s, publish → receipt latency)`,
    kind: "throughput",
    prism: best[1]!,
    prismRssMb: rssMb[1]!,
    baselineName: "ws broadcast",
    baseline: best[0]!,
    command: cmd(id),
    note: `${window} messages in flight (${window * subs} deliveries), ${PAYLOAD_BYTES} B payload, 1 client thread; corked ws broadcast: ${corked.opsPerSec} msg/s, ${corked.cpuUsPerOp} µs CPU/msg, p50/p99 ${corked.latency.p50}/${corked.latency.p99} ms (Prism ${round3(best[1]!.opsPerSec / corked.opsPerSec)}x of it)`,
  });
}

// ------------------------------------------------------------------ queue

interface QueueShape {
  producers: number;
  consumers: number;
  window: number;
  consumerDepth: number;
  maxMessages: number;
}
const QUEUE_SHAPE: QueueShape = { producers: 4, consumers: 4, window: 256, consumerDepth: 2, maxMessages: 16 };

/** Enqueue → Dequeue → Ack through Prism (WebSocket); no baseline, absolute numbers. ops = messages acked. */
async function queueFlow(o: BenchOptions, id: string, backend: string, yaml: (ns: string) => string, backendPids: number[] = [], cleanup?: (ns: string) => Promise<void>): Promise<Row> {
  const ns = `benchq${process.pid}${Date.now().toString(36)}`;
  const q = QUEUE_SHAPE;
  let best: Measurement | undefined;
  let rss = 0;
  try {
    await withServer(startPrism(yaml(ns)), async (p) => {
      for (let r = 0; r < o.rounds; r++) {
        o.log(`${id}: round ${r + 1}/${o.rounds}`);
        const m = await runWorkerLoad({
          file: new URL("./queue-worker.js", import.meta.url),
          data: [{ url: `ws://127.0.0.1:${p.ports.http}/v1/ws`, namespace: ns, queue: `q${r}`, ...q, waitSeconds: 1, payloadBytes: PAYLOAD_BYTES }],
          seconds: o.seconds,
          warmupSeconds: o.warmupSeconds,
          serverPids: [p.pid],
          backendPids,
        });
        checkErrors(id, m);
        if (!best || m.opsPerSec > best.opsPerSec) best = m;
      }
      rss = rssBytes(p.pid);
    });
  } finally {
    await cleanup?.(ns);
  }
  return {
    id,
    title: `Queue Enqueue → Dequeue → Ack, WebSocket, ${backend} (${q.producers} producers, ${q.consumers} consumers; messages acked/s, enqueue → receipt latency)`,
    kind: "throughput",
    prism: best!,
    prismRssMb: mb(rss),
    baselineName: "-",
    command: cmd(id),
    note: `${best!.backendCpuUsPerOp !== undefined ? `${backend} server CPU ${best!.backendCpuUsPerOp} µs/msg; ` : ""}${q.window} messages between Enqueue and Ack answered, each consumer ${q.consumerDepth} Dequeue (max_messages ${q.maxMessages}, wait_seconds 1) in flight, ${PAYLOAD_BYTES} B payload, 1 client thread; CPU µs/op = Prism CPU per message (Enqueue + its share of a Dequeue + Ack), best of ${o.rounds} rounds`,
  };
}

export const queueMemstore = (o: BenchOptions) => queueFlow(o, "ws-queue-memstore", "memstore", (ns) => memstoreYaml(ns));

/** Deletes every key under the run's prefix (the queue leaves messages behind when the run stops). */
export async function dropRedisPrefix(prefix: string): Promise<void> {
  const { Redis } = await import("ioredis");
  const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await r.connect();
    let cursor = "0";
    do {
      const [next, keys] = await r.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
      cursor = next;
      if (keys.length) await r.del(...keys);
    } while (cursor !== "0");
  } finally {
    r.disconnect();
  }
}

export const queueRedis = (o: BenchOptions) =>
  queueFlow(
    o,
    "ws-queue-redis",
    "redis",
    (ns) => `namespaces:\n  - name: ${ns}\n    backend: { type: redis, url: "${REDIS_URL}", key_prefix: prismbench${ns} }\n`,
    pidsByComm("redis-server"),
    (ns) => dropRedisPrefix(`prismbench${ns}`),
  );

// ------------------------------------------------------------------ open loop at a fixed rate

export async function wsFixedRate(o: BenchOptions): Promise<Row> {
  const id = "ws-kv-get-1000rps";
  const rate = 1000;
  const templates = kvMix(NS, KEYS, 100);
  const seconds = Math.max(o.seconds, 5);
  // A p99 from ~5000 samples moves by tenths of a ms between rounds on a shared VM; each side keeps its lowest.
  const rounds = Math.max(o.rounds, 4);
  const load = (url: string, pid: number) => runWsLoad({ url, conns: 4, depth: 0, threads: 1, templates, seconds, warmupSeconds: o.warmupSeconds, rate, serverPids: [pid] });
  // Latency side of paired(): alternate, keep each side's lowest p99 (noise from other tenants only adds).
  const b = await startBaseline("ws-echo");
  let p: ServerProcess | undefined;
  let baseline: Measurement | undefined;
  let prism: Measurement | undefined;
  let rss = 0;
  let inside: number[] | undefined;
  try {
    p = await startPrism(memstoreYaml(NS));
    await seed(p.ports.http!, NS);
    for (let r = 0; r < rounds; r++) {
      o.log(`${id}: round ${r + 1}/${rounds}`);
      const mb_ = await load(`ws://127.0.0.1:${b.ports.port}/`, b.pid);
      checkErrors(`${id} echo`, mb_);
      if (!baseline || mb_.latency.p99 < baseline.latency.p99) baseline = mb_;
      const mp = await load(`ws://127.0.0.1:${p.ports.http}/v1/ws`, p.pid);
      checkErrors(`${id} prism`, mp);
      if (!prism || mp.latency.p99 < prism.latency.p99) prism = mp;
    }
    rss = rssBytes(p.pid);
    inside = histogramQuantiles(await (await fetch(`http://127.0.0.1:${p.ports.http}/metrics`)).text(), "prism_request_duration_seconds", 'method="KeyValue/Get"', [0.5, 0.99]);
  } finally {
    await p?.stop();
    await b.stop();
  }
  const insideNote = inside ? `; Prism's own time per Get (gateway histogram prism_request_duration_seconds, all rounds): p50 <= ${inside[0]} ms, p99 <= ${inside[1]} ms (bucket bounds)` : "";
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
    note: `4 connections, 1 client thread (it paces sends by spinning, not by a 1 ms timer), lowest p99 of ${rounds} alternating rounds per side${insideNote}`,
  });
  delete row.ratio;
  row.met = row.addedP99Ms! <= 0.3;
  return row;
}

/**
 * Upper bounds (ms) of the buckets holding quantiles `qs` of a Prometheus
 * histogram in exposition text, summed over the series whose labels contain
 * `match`; undefined when it has no observations.
 */
export function histogramQuantiles(text: string, name: string, match: string, qs: number[]): number[] | undefined {
  const byLe = new Map<number, number>();
  const re = new RegExp(`^${name}_bucket\\{([^}]*)\\} (\\S+)$`, "gm");
  for (const m of text.matchAll(re)) {
    if (!m[1]!.includes(match)) continue;
    const le = /le="([^"]+)"/.exec(m[1]!)?.[1];
    if (le === undefined) continue;
    const bound = le === "+Inf" ? Infinity : Number(le);
    byLe.set(bound, (byLe.get(bound) ?? 0) + Number(m[2]));
  }
  const buckets = [...byLe].sort((a, b) => a[0] - b[0]);
  const total = buckets.at(-1)?.[1] ?? 0;
  if (total === 0) return undefined;
  return qs.map((q) => {
    const b = buckets.find(([, count]) => count >= q * total)!;
    return Number.isFinite(b[0]) ? Math.round(b[0] * 1e6) / 1e3 : Infinity;
  });
}

// ------------------------------------------------------------------ gRPC

/** One real unary gRPC call (grpc-js client) with the body h2load sends; resolves to the response bytes. */
async function grpcCall(port: number, method: "Get" | "Set", body: Uint8Array): Promise<Buffer> {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  try {
    return await new Promise<Buffer>((resolve, reject) =>
      client.makeUnaryRequest(`/prism.v1.KeyValue/${method}`, (b: Buffer) => b, (b: Buffer) => b, Buffer.from(body), (err, r) => (err ? reject(err) : resolve(r!))),
    );
  } finally {
    client.close();
  }
}

/** Checks that the request h2load sends is answered with OK and found=true. */
async function verifyGrpcGet(port: number, body: Uint8Array): Promise<void> {
  if (!pb.v1.GetResponse.decode(await grpcCall(port, "Get", body)).found) throw new Error("gRPC KeyValue/Get: key not found");
}

/** Checks that the Set h2load sends is answered with OK and a version. */
async function verifyGrpcSet(port: number, body: Uint8Array): Promise<void> {
  if (!(Number(pb.v1.SetResponse.decode(await grpcCall(port, "Set", body)).version) > 0)) throw new Error("gRPC KeyValue/Set: no version in the response");
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

/**
 * KeyValue Get/Set 90/10 over gRPC: h2load cycles each connection through nine Get URLs and one
 * Set URL with one body, a SetRequest (namespace, key, 64-byte value). As a GetRequest the same
 * bytes read as (namespace, key) with the value an unknown field, which protobuf skips.
 */
export async function grpcGetSet(o: BenchOptions): Promise<Row> {
  const id = "grpc-kv-getset-memstore";
  if (!(await hasTool("h2load"))) throw new Error("h2load is not installed (apt-get install -y nghttp2-client)");
  const body = setBody(NS, benchKey(1), benchValue());
  const urls = (port: number) => [...Array.from({ length: 9 }, () => `http://127.0.0.1:${port}/prism.v1.KeyValue/Get`), `http://127.0.0.1:${port}/prism.v1.KeyValue/Set`];
  const load = (port: number, pid: number) => runH2load({ url: urls(port), body, conns: 16, streams: 32, seconds: o.seconds, warmupSeconds: o.warmupSeconds, serverPids: [pid] });
  const { baseline, prism, rssMb } = await paired(
    o,
    id,
    { start: () => startBaseline("grpc-echo"), measure: (e) => load(e!.ports.port!, e!.pid) },
    {
      yaml: memstoreYaml(NS),
      ns: NS,
      measure: async (p) => {
        await verifyGrpcSet(p.ports.grpc!, body);
        await verifyGrpcGet(p.ports.grpc!, body);
        return load(p.ports.grpc!, p.pid);
      },
    },
  );
  return ratioRow({ id, title: "KeyValue Get/Set 90/10, gRPC (h2load -c16 -m32), memstore", kind: "throughput", prism, prismRssMb: rssMb, baselineName: "grpc-js echo", baseline, command: cmd(id) });
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

/** KeyValue Get/Set 90/10 over HTTP: bench/wrk/getset.lua makes every 10th request a PUT of 64 bytes. */
export async function httpGetSet(o: BenchOptions): Promise<Row> {
  const id = "http-kv-getset-memstore";
  if (!(await hasTool("wrk"))) throw new Error("wrk is not installed (apt-get install -y wrk)");
  const script = join(ROOT, "bench/wrk/getset.lua");
  const load = (url: string, pid: number) => runWrk({ url, conns: 64, seconds: o.seconds, warmupSeconds: o.warmupSeconds, serverPids: [pid], script });
  const { baseline, prism, rssMb } = await paired(
    o,
    id,
    { start: () => startBaseline("http-hello"), measure: (e) => load(`http://127.0.0.1:${e!.ports.port}/`, e!.pid) },
    { yaml: memstoreYaml(NS), ns: NS, measure: (p) => load(`http://127.0.0.1:${p.ports.http}/v1/ns/${NS}/kv/${encodeURIComponent(benchKey(1))}`, p.pid) },
  );
  return ratioRow({ id, title: "KeyValue Get/Set 90/10, HTTP raw route (wrk -t1 -c64 -s bench/wrk/getset.lua), memstore", kind: "throughput", prism, prismRssMb: rssMb, baselineName: "node:http hello", baseline, command: cmd(id) });
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
    note: `CPU µs/op: Prism process for Prism, redis-server for the baseline; the direct ioredis client itself spent ${round3((baseline.clientBusy * 1e6) / baseline.opsPerSec)} µs CPU/GET (bench process, whole), the floor of what Prism's own ioredis pays per Get`,
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

/** Idle time after which V8's memory reducer has run (it starts ~8 s after the last allocation-heavy activity). */
const SETTLE_MS = 15_000;

/**
 * Idle RSS: Prism single-process and each worker of a 2-worker cluster, and a bare `ws` echo server
 * (the same run's floor: node + ws), read 2 s after start and once settled (SETTLE_MS idle).
 * All three processes idle side by side, so the scenario costs one settle period.
 */
export async function idleRss(o: BenchOptions): Promise<Row> {
  const id = "idle-rss-per-worker";
  o.log(`${id}: prism --workers 1, prism --workers 2 and a bare ws echo, ${SETTLE_MS / 1000} s idle`);
  const single = await startPrism(memstoreYaml(NS));
  const cluster = await startPrism(memstoreYaml(NS), { workers: 2 }).catch(async (e: unknown) => {
    await single.stop();
    throw e;
  });
  const echo = await startBaseline("ws-echo").catch(async (e: unknown) => {
    await Promise.all([single.stop(), cluster.stop()]);
    throw e;
  });
  try {
    await sleep(2000);
    const early = rssParts(single.pid);
    await sleep(SETTLE_MS - 2000);
    const one = rssParts(single.pid);
    const workers = childPids(cluster.pid).map(rssParts);
    const primary = rssParts(cluster.pid);
    const floor = rssParts(echo.pid);
    if (workers.length !== 2) throw new Error(`${id}: expected 2 cluster workers, found ${workers.length}`);
    const worst = workers.reduce((a, b) => (b.rss > a.rss ? b : a));
    const split = (p: { rss: number; anon: number; file: number }) => `${mb(p.rss)} MB (private ${mb(p.anon)} + file-backed ${mb(p.file)})`;
    const empty: Measurement = { ops: 0, errors: 0, opsPerSec: 0, latency: { p50: -1, p90: -1, p99: -1, p999: -1, max: -1 }, cpuUsPerOp: 0, serverBusy: 0, clientBusy: 0 };
    const value = Math.max(mb(one.rss), mb(worst.rss));
    return {
      id,
      title: `Idle RSS per worker (memstore, ${SETTLE_MS / 1000} s idle: --workers 1, and the larger worker of --workers 2)`,
      kind: "memory",
      prism: empty,
      prismRssMb: value,
      baselineName: "-",
      target: "<=60 MB",
      met: value <= 60,
      command: cmd(id),
      note:
        `settled: --workers 1 (started as npm start starts it: node ${SERVER_NODE_FLAGS.join(" ")}) ${split(one)}; --workers 2 workers ${workers.map((w) => mb(w.rss)).join(" / ")} MB, largest ${split(worst)}, primary ${mb(primary.rss)} MB; ` +
        `bare ws echo (node + ws, the floor) ${split(floor)}; --workers 1 at 2 s (before V8's memory reducer) ${mb(early.rss)} MB. ` +
        "File-backed pages (mostly the node binary) are shared by every worker on the machine; private pages are each worker's own cost",
    };
  } finally {
    await Promise.all([single.stop(), cluster.stop(), echo.stop()]);
  }
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

/** Scenario id → run; a scenario may produce several rows (ws-kv-get-memstore: against the bare and the corked echo). */
export const SCENARIOS: Record<string, (o: BenchOptions) => Promise<Row | Row[]>> = {
  "ws-kv-get-memstore": wsGet,
  "ws-kv-getset-memstore": wsMix,
  "ws-kv-getset-dualwrite": dualWriteMemstore,
  "ws-kv-getset-dualwrite-redis-postgres": dualWriteRedisPostgres,
  "ws-kv-get-metrics-overhead": metricsOverhead,
  "ws-kv-get-tls-jwt": wsGetTlsJwt,
  "ws-kv-get-cache-aside-hit": cacheAsideHit,
  "ws-kv-get-cache-aside-redis-postgres": cacheAsideRedisPostgres,
  "ws-pubsub-fanout-1": (o) => pubsubFanout(o, 1),
  "ws-pubsub-fanout-10": (o) => pubsubFanout(o, 10),
  "ws-pubsub-fanout-100": (o) => pubsubFanout(o, 100),
  "ws-queue-memstore": queueMemstore,
  "ws-queue-redis": queueRedis,
  "queue-e2e-redis-vs-bullmq": queueVsBullmq,
  "queue-e2e-postgres-vs-pgboss": queueVsPgBoss,
  ...registry100k,
  "grpc-kv-get-memstore": grpcGet,
  "grpc-kv-getset-memstore": grpcGetSet,
  "http-kv-get-memstore": httpGet,
  "http-kv-getset-memstore": httpGetSet,
  "ws-kv-get-redis": redisGet,
  "ws-kv-get-postgres": pgGet,
  "ws-kv-get-1000rps": wsFixedRate,
  "overload-critical-p99": overloadCriticalP99,
  "idle-rss-per-worker": idleRss,
  "ws-10k-connections": (o) => wsConnections(o),
  "scale-namespaces": scaleNamespaces,
};

/**
 * Rows perf:check prints but does not gate (--write-baseline leaves them out): the corked echo is
 * bound by the load generator, not by its server (~1 µs CPU/msg), so its ratio moves with however
 * much CPU the client gets (0.27-0.56 over one day's runs); compare CPU µs/op there instead.
 */
export const UNGATED = new Set(["ws-kv-get-memstore-vs-corked"]);

/** The perf:check subset (ratios gated against perf/baseline.json). */
export const CHECK_SUBSET = ["ws-kv-get-memstore", "grpc-kv-get-memstore", "http-kv-get-memstore", "ws-kv-get-redis", "queue-e2e-redis-vs-bullmq", "queue-e2e-postgres-vs-pgboss"];
