/**
 * Queue end to end against the libraries users would pick instead (issue 17):
 * BullMQ on the same Redis, pg-boss on the same PostgreSQL, same run, same
 * producers / consumers / job count / payload. Rounds alternate baseline and
 * Prism; the best of each is kept. ops/s = jobs acked per second from the
 * first enqueue to the last ack; latency = enqueue → delivery. CPU µs/job is
 * the whole system's (load process + Prism + backend server): BullMQ and
 * pg-boss run inside the application, Prism beside it.
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { CpuWindow, cpuMicros } from "./proc.js";
import { pidsByComm } from "./direct.js";
import { startPrism, ROOT } from "./spawn.js";
import { newHistogram, mergeEncoded, latencyOf, round3 } from "./hist.js";
import type { Row } from "./report.js";
import type { Measurement } from "./ws-load.js";
import type { RunResult, RunSpec } from "./queue-vs-load.js";
import type { BenchOptions } from "./scenarios.js";

const REDIS_URL = process.env.PRISM_BENCH_REDIS_URL ?? "redis://127.0.0.1:6379";
const PG_URL = process.env.PRISM_BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const LOAD = fileURLToPath(new URL("./queue-vs-load.js", import.meta.url));
const PAYLOAD_BYTES = 64;
/**
 * PRISM_BENCH_QUEUE_SCALE (0 < x <= 1) shortens the job counts, e.g. 0.25 for
 * perf:check (bench/check.ts sets it), which must stay short; the full counts
 * are the default.
 */
function scaled(jobs: number): number {
  const f = Number(process.env.PRISM_BENCH_QUEUE_SCALE ?? 1);
  return f > 0 && f < 1 ? Math.max(1000, Math.round(jobs * f)) : jobs;
}

interface Shape {
  producers: number;
  consumers: number;
  jobs: number;
  /** Prism: Dequeue max_messages; pg-boss: batchSize. */
  prismBatch: number;
  baselineBatch: number;
}

/** Starts the load process; resolves with its result once printed, and `finish()` lets it close and exit. */
function runLoad(spec: RunSpec): Promise<{ r: RunResult; finish: () => Promise<void> }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [LOAD, JSON.stringify(spec)], { cwd: ROOT, stdio: ["pipe", "pipe", "pipe"] });
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
      if (!out.includes("\n")) return;
      const finish = async () => {
        child.stdin.end("done\n");
        const code = await exited;
        if (code !== 0) throw new Error(`${spec.system} load did not close cleanly (exit ${code}): ${err.slice(-2000)}`);
      };
      resolve({ r: JSON.parse(out.slice(0, out.indexOf("\n"))) as RunResult, finish });
    });
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    void exited.then((code) => reject(new Error(`${spec.system} load failed (exit ${code}): ${err.slice(-2000)}`)));
  });
}

/** One run: the load process, the CPU of `serverPids` (Prism) and `backendPids` (redis-server / postgres) meanwhile. */
async function measure(spec: RunSpec, serverPids: number[], backendPids: () => number[]): Promise<{ m: Measurement; totalCpuUsPerJob: number; clientCpuUsPerJob: number; enqueuePerSec: number }> {
  const server = new CpuWindow(serverPids);
  const before = new Set(backendPids());
  const backend = new CpuWindow([...before], { tolerateExit: true });
  server.start();
  backend.start();
  const { r, finish } = await runLoad(spec);
  const s = server.stop();
  const b = backend.stop();
  // Backend processes born during the run (PostgreSQL forks one per connection): all their CPU is the run's.
  for (const pid of backendPids()) {
    if (before.has(pid)) continue;
    try {
      b.cpuUs += cpuMicros(pid);
    } catch {
      /* exited: its CPU is lost (the load process closes its connections before it exits, so few are) */
    }
  }
  await finish();
  if (r.jobs !== spec.jobs) throw new Error(`${spec.system}: ${r.jobs} of ${spec.jobs} jobs delivered`);
  if (r.duplicates > 0) throw new Error(`${spec.system}: ${r.duplicates} duplicate deliveries`);
  const h = newHistogram();
  mergeEncoded(h, r.latency);
  const wallUs = r.e2eMs * 1000;
  const perJob = (us: number) => round3(us / spec.jobs);
  const m: Measurement = {
    ops: spec.jobs,
    errors: 0,
    opsPerSec: Math.round(spec.jobs / (r.e2eMs / 1000)),
    latency: latencyOf(h),
    cpuUsPerOp: perJob(r.clientCpuUs + s.cpuUs + b.cpuUs),
    serverBusy: round3(s.cpuUs / wallUs),
    clientBusy: round3(r.clientCpuUs / wallUs),
    machineIdle: s.machineIdle,
    backendCpuUsPerOp: perJob(b.cpuUs),
  };
  h.destroy();
  return { m, totalCpuUsPerJob: m.cpuUsPerOp, clientCpuUsPerJob: perJob(r.clientCpuUs), enqueuePerSec: Math.round(spec.jobs / (r.enqueueMs / 1000)) };
}

async function versus(
  o: BenchOptions,
  id: string,
  shape: Shape,
  baseline: { name: "bullmq" | "pgboss"; label: string; url: string },
  prismYaml: (ns: string) => string,
  backendPids: () => number[],
  target: number,
): Promise<Row> {
  const ns = `benchqv${process.pid}${Date.now().toString(36)}`;
  const common = { producers: shape.producers, consumers: shape.consumers, jobs: shape.jobs, payloadBytes: PAYLOAD_BYTES };
  type Best = Awaited<ReturnType<typeof measure>>;
  let bestB: Best | undefined;
  let bestP: Best | undefined;
  let rss = 0;
  const p = await startPrism(prismYaml(ns));
  try {
    // Prism is a long-running server: one short run first, not measured, so that round 1 does not
    // time its JIT warm-up (the load processes, Prism's SDK and BullMQ/pg-boss alike, start cold every round).
    o.log(`${id}: warm-up: prism`);
    await measure({ system: "prism", url: `ws://127.0.0.1:${p.ports.http}/v1/ws`, namespace: ns, queue: "warm", batch: shape.prismBatch, ...common, jobs: Math.min(2000, shape.jobs) }, [p.pid], backendPids);
    for (let r = 0; r < Math.max(1, o.rounds); r++) {
      o.log(`${id}: round ${r + 1}/${o.rounds}: ${baseline.label}`);
      const b = await measure({ system: baseline.name, url: baseline.url, queue: `${ns}b${r}`, batch: shape.baselineBatch, ...common }, [], backendPids);
      if (!bestB || b.m.opsPerSec > bestB.m.opsPerSec) bestB = b;
      o.log(`${id}: round ${r + 1}/${o.rounds}: prism`);
      const x = await measure({ system: "prism", url: `ws://127.0.0.1:${p.ports.http}/v1/ws`, namespace: ns, queue: `q${r}`, batch: shape.prismBatch, ...common }, [p.pid], backendPids);
      if (!bestP || x.m.opsPerSec > bestP.m.opsPerSec) bestP = x;
    }
    rss = Math.round(((await import("./proc.js")).rssBytes(p.pid) / (1024 * 1024)) * 10) / 10;
  } finally {
    await p.stop();
  }
  const ratio = round3(bestP!.m.opsPerSec / bestB!.m.opsPerSec);
  return {
    id,
    title: `Queue end to end (enqueue → deliver → ack), TS SDK over WebSocket vs ${baseline.label} (${shape.producers} producers, ${shape.consumers} consumers, ${shape.jobs} jobs; jobs/s, enqueue → delivery latency, CPU µs/job of the whole system)`,
    kind: "throughput",
    prism: bestP!.m,
    prismRssMb: rss,
    baselineName: baseline.label,
    baseline: bestB!.m,
    ratio,
    target: `≥ ${target}x ${baseline.label}`,
    met: ratio >= target,
    command: `npm run bench -- --only ${id}`,
    note:
      `enqueue/s prism ${bestP!.enqueuePerSec} vs ${bestB!.enqueuePerSec}; CPU µs/job total prism ${bestP!.totalCpuUsPerJob} (app ${bestP!.clientCpuUsPerJob}, backend ${bestP!.m.backendCpuUsPerOp}, Prism the rest) vs ${baseline.label} ${bestB!.totalCpuUsPerJob} (app ${bestB!.clientCpuUsPerJob}, backend ${bestB!.m.backendCpuUsPerOp}); ` +
      `Prism consumers Dequeue max_messages ${shape.prismBatch} wait 1 s and ack each message; ${baseline.name === "bullmq" ? `BullMQ Worker concurrency ${shape.consumers}, removeOnComplete` : `pg-boss ${shape.consumers} work() loops, batchSize ${shape.baselineBatch}, polling 0.5 s`}; ${PAYLOAD_BYTES} B payload; best of ${o.rounds} rounds`,
  };
}

export const queueVsBullmq = (o: BenchOptions) =>
  versus(
    o,
    "queue-e2e-redis-vs-bullmq",
    { producers: 64, consumers: 32, jobs: scaled(20_000), prismBatch: 10, baselineBatch: 1 },
    { name: "bullmq", label: "BullMQ", url: REDIS_URL },
    (ns) => `namespaces:\n  - name: ${ns}\n    backend: { type: redis, url: "${REDIS_URL}", key_prefix: prismbench${ns} }\n`,
    () => pidsByComm("redis-server"),
    1.3,
  );

export const queueVsPgBoss = (o: BenchOptions) =>
  versus(
    o,
    "queue-e2e-postgres-vs-pgboss",
    { producers: 32, consumers: 16, jobs: scaled(10_000), prismBatch: 10, baselineBatch: 500 },
    { name: "pgboss", label: "pg-boss", url: PG_URL },
    (ns) => `namespaces:\n  - name: ${ns}\n    backend: { type: postgres, url: "${PG_URL}", schema: prism_benchqv }\n`,
    () => pidsByComm("postgres"),
    2,
  );
