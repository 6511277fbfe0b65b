/**
 * Drives a WebSocket server from worker threads (bench/lib/ws-worker.ts) and
 * measures throughput, latency and the server's CPU time over the same window.
 */
import { Worker } from "node:worker_threads";
import { CpuWindow } from "./proc.js";
import { latencyOf, mergeEncoded, newHistogram, round3, type Latency } from "./hist.js";
import type { WsWorkerData, WsWorkerResult } from "./ws-worker.js";

export interface WsLoadOptions {
  url: string;
  /** Connections in total (split over the threads). */
  conns: number;
  /** Requests in flight per connection (closed loop). */
  depth: number;
  threads: number;
  templates: Uint8Array[];
  seconds: number;
  warmupSeconds?: number;
  /** Open loop: total requests per second (0 or absent: closed loop). */
  rate?: number;
  /** Processes whose CPU time is charged to the server. */
  serverPids: number[];
  /**
   * Backend processes (e.g. redis-server, postgres) whose CPU per op is reported as
   * backendCpuUsPerOp (not with `idle`). A function is called after the warm-up, so that
   * connections the server opened meanwhile (postgres backends) are counted; pids that exit
   * inside the window count 0.
   */
  backendPids?: number[] | (() => number[]);
  idle?: boolean;
  /** Upgrade headers and a CA for wss:// (bench/lib/auth-tls.ts). */
  wsOptions?: WsWorkerData["wsOptions"];
}

/** What one measurement produced. */
export interface Measurement {
  ops: number;
  errors: number;
  opsPerSec: number;
  latency: Latency;
  /** Server CPU microseconds per successful operation. */
  cpuUsPerOp: number;
  /** Server CPU time / wall time: 1.0 = one core saturated. */
  serverBusy: number;
  /** Load generator CPU time / wall time (all its threads). */
  clientBusy: number;
  connections?: number;
  /** Idle fraction of the whole machine (all cores) during the window: other load shows here. */
  machineIdle?: number;
  /** CPU µs per operation of the backend's processes (e.g. redis-server), when measured. */
  backendCpuUsPerOp?: number;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function runWsLoad(o: WsLoadOptions): Promise<Measurement> {
  const phaseBuf = new SharedArrayBuffer(4);
  const phase = new Int32Array(phaseBuf);
  const threads = Math.max(1, Math.min(o.threads, o.conns));
  const workers: Worker[] = [];
  const ready: Promise<void>[] = [];
  for (let t = 0; t < threads; t++) {
    const conns = Math.floor(o.conns / threads) + (t < o.conns % threads ? 1 : 0);
    const data: WsWorkerData = { url: o.url, conns, depth: o.depth, templates: o.templates, phase: phaseBuf, rate: (o.rate ?? 0) / threads, idle: o.idle, wsOptions: o.wsOptions };
    const w = new Worker(new URL("./ws-worker.js", import.meta.url), { workerData: data });
    workers.push(w);
    ready.push(
      new Promise<void>((resolve, reject) => {
        w.once("error", reject);
        w.once("message", (m: { type: string; message?: string }) => (m.type === "ready" ? resolve() : reject(new Error(`load worker: ${m.message}`))));
      }),
    );
  }
  try {
    await Promise.all(ready);
  } catch (e) {
    await Promise.all(workers.map((w) => w.terminate()));
    throw e;
  }
  const cpu = new CpuWindow(o.serverPids);
  let backendCpu: CpuWindow | undefined;
  const client0 = process.cpuUsage();
  let backendUs: number | undefined;
  let wallUs: number;
  let cpuUs: number;
  let machineIdle: number;
  // A failed /proc read (the server exited) must not leave the load threads running.
  try {
    if (o.idle) {
      cpu.start();
      Atomics.store(phase, 0, 1);
      const served = workers.map((w) => new Promise<void>((r) => w.once("message", () => r())));
      for (const w of workers) w.postMessage({ type: "serve" });
      await Promise.all(served);
      ({ cpuUs, wallUs, machineIdle } = cpu.stop());
    } else {
      await sleep((o.warmupSeconds ?? 1) * 1000);
      const backendPids = typeof o.backendPids === "function" ? o.backendPids() : o.backendPids;
      if (backendPids?.length) backendCpu = new CpuWindow(backendPids, { tolerateExit: true });
      backendCpu?.start();
      cpu.start();
      Atomics.store(phase, 0, 1);
      await sleep(o.seconds * 1000);
      Atomics.store(phase, 0, 2);
      ({ cpuUs, wallUs, machineIdle } = cpu.stop());
      backendUs = backendCpu?.stop().cpuUs;
    }
  } catch (e) {
    Atomics.store(phase, 0, 2);
    await Promise.all(workers.map((w) => w.terminate()));
    throw e;
  }
  Atomics.store(phase, 0, 2);
  const m = await stopWorkers(workers, client0, cpuUs, wallUs, machineIdle);
  if (backendUs !== undefined && m.ops) m.backendCpuUsPerOp = round3(backendUs / m.ops);
  return m;
}

/**
 * Stops the load workers, merges their counts and latency histograms, and
 * builds the Measurement from the server CPU window (shared by every load shape).
 */
export async function stopWorkers(
  workers: Worker[],
  client0: NodeJS.CpuUsage,
  cpuUs: number,
  wallUs: number,
  machineIdle: number,
): Promise<Measurement> {
  const clientUsage = process.cpuUsage(client0);
  const results = await Promise.all(
    workers.map(
      (w) =>
        new Promise<WsWorkerResult>((resolve, reject) => {
          w.on("message", (m: { type: string; result?: WsWorkerResult }) => m.type === "done" && resolve(m.result!));
          w.once("error", reject);
          w.postMessage({ type: "stop" });
        }),
    ),
  );
  await Promise.all(workers.map((w) => w.terminate()));
  const hist = newHistogram();
  let ops = 0;
  let errors = 0;
  let connections = 0;
  for (const r of results) {
    ops += r.ops;
    errors += r.errors;
    connections += r.connected;
    mergeEncoded(hist, r.hist);
  }
  const m: Measurement = {
    ops,
    errors,
    opsPerSec: Math.round(ops / (wallUs / 1e6)),
    latency: latencyOf(hist),
    cpuUsPerOp: ops ? round3(cpuUs / ops) : 0,
    serverBusy: round3(cpuUs / wallUs),
    clientBusy: round3((clientUsage.user + clientUsage.system) / wallUs),
    connections,
    machineIdle,
  };
  hist.destroy();
  return m;
}
