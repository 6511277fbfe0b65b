/**
 * Runs load-generator worker threads that follow the protocol of
 * bench/lib/ws-worker.ts (post "ready" or "fail"; a shared phase word
 * 0 warm-up / 1 measure / 2 over; on "stop" post "done" with a WsWorkerResult)
 * and turns their results into a Measurement, with the server's CPU time read
 * from /proc over the measured window.
 */
import { Worker } from "node:worker_threads";
import { CpuWindow } from "./proc.js";
import { round3 } from "./hist.js";
import { sleep, stopWorkers, type Measurement } from "./ws-load.js";
import type { WsWorkerResult } from "./ws-worker.js";

export interface WorkerLoadOptions {
  /** The worker module (compiled .js URL). */
  file: URL;
  /** One workerData per thread; each gets `phase` added. */
  data: object[];
  seconds: number;
  warmupSeconds: number;
  serverPids: number[];
  /** Backend processes (e.g. redis-server) whose CPU per op is reported as backendCpuUsPerOp. */
  backendPids?: number[];
}

export async function runWorkerLoad(o: WorkerLoadOptions): Promise<Measurement> {
  const phaseBuf = new SharedArrayBuffer(4);
  const phase = new Int32Array(phaseBuf);
  const workers = o.data.map((d) => new Worker(o.file, { workerData: { ...d, phase: phaseBuf } }));
  const ready = workers.map(
    (w) =>
      new Promise<void>((resolve, reject) => {
        w.once("error", reject);
        w.once("message", (m: { type: string; message?: string }) => (m.type === "ready" ? resolve() : reject(new Error(`load worker: ${m.message}`))));
      }),
  );
  try {
    await Promise.all(ready);
  } catch (e) {
    Atomics.store(phase, 0, 2);
    await Promise.all(workers.map((w) => w.terminate()));
    throw e;
  }
  await sleep(o.warmupSeconds * 1000);
  const cpu = new CpuWindow(o.serverPids);
  const backendCpu = o.backendPids?.length ? new CpuWindow(o.backendPids) : undefined;
  const client0 = process.cpuUsage();
  backendCpu?.start();
  cpu.start();
  Atomics.store(phase, 0, 1);
  await sleep(o.seconds * 1000);
  Atomics.store(phase, 0, 2);
  const { cpuUs, wallUs, machineIdle } = cpu.stop();
  const backendUs = backendCpu?.stop().cpuUs;
  const m = await stopWorkers(workers, client0, cpuUs, wallUs, machineIdle);
  const ops = m.ops;
  if (backendUs !== undefined && ops) m.backendCpuUsPerOp = round3(backendUs / ops);
  return m;
}
