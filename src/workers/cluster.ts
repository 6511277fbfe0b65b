/**
 * The primary of `prism serve --workers N` (N > 1).
 *
 * Why processes (node:cluster) and not worker_threads:
 * - Isolation: a crash, an out-of-memory or a long GC pause stops one worker;
 *   the others keep serving and the primary re-forks the one that died.
 * - grpc-js and ws keep their state per process (HTTP/2 sessions, sockets,
 *   timers); running them N times side by side needs nothing special.
 * - Sharing the ports: Node 20 has no SO_REUSEPORT option, and worker_threads
 *   cannot share a listening socket. node:cluster can: workers' listen() calls
 *   go through the primary, which accepts and hands connections out round-robin.
 *
 * Coherence (one gateway whatever N; see README.md in this folder): namespaces
 * on embedded backends are owned by worker hash(name) % N and reached by the
 * others over the Unix-socket mesh; namespace changes go through the primary,
 * which applies them to every worker and remembers them for re-forked ones.
 */
import cluster, { type Worker } from "node:cluster";
import { rmSync } from "node:fs";
import { createServer } from "node:net";
import { resolve } from "node:path";
import type { PrismConfig } from "../config/schema.js";
import { ControlAgent } from "../control/agent.js";
import { Keyring } from "../pii/keyring.js";
import { openConfigStore } from "../control/stores.js";
import { configStoreSpec } from "../control/store-spec.js";
import { toPrismError } from "../core/errors.js";
import type { Log } from "../server.js";
import { servePrimaryMetrics } from "../observability/cluster-metrics.js";
import { CONTROL_OPS, meshSocketPath, type ToPrimary, type ToWorker, type WireError, type WorkerInit } from "./ipc.js";
import { serverNodeFlags } from "./node-flags.js";

const DRAIN_MS = 10_000;
const EXIT_MS = 12_000;

export interface ClusterOptions {
  config: PrismConfig;
  workers: number;
  host: string;
  grpcPort: number;
  httpPort: number;
  /** The worker script (the CLI entry point; it calls runWorker when cluster.isWorker). */
  exec: string;
  args?: string[];
  log: Log;
  /** Called once, when every worker serves. */
  onReady(info: { grpcPort: number; httpPort: number }): void;
}

/** A free TCP port on host (cluster workers cannot each ask for port 0: they would share one handle). */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, host, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

interface Slot {
  worker: Worker;
  /** Said hello and got the namespace set: control broadcasts reach it. */
  live: boolean;
  startedAt: number;
}

interface Broadcast {
  waiting: Set<number>;
  error: WireError | undefined;
  done(): void;
}

/** Runs the primary until SIGTERM/SIGINT; resolves with the exit code. */
export async function runPrimary(opts: ClusterOptions): Promise<number> {
  const { log } = opts;
  const grpcPort = opts.grpcPort || (await freePort(opts.host));
  const httpPort = opts.httpPort || (await freePort(opts.host));
  const slots: (Slot | undefined)[] = [];
  const listening = new Set<number>();
  const broadcasts = new Map<number, Broadcast>();
  let nextBroadcast = 1;
  let ready = false;
  let shuttingDown = false;
  let done!: (code: number) => void;
  const finished = new Promise<number>((r) => (done = r));

  cluster.setupPrimary({ exec: opts.exec, args: opts.args ?? [], execArgv: [...process.execArgv, ...serverNodeFlags(process.execArgv)], silent: false });
  // GET /metrics on any worker answers for all of them (src/observability/cluster-metrics.ts).
  servePrimaryMetrics();

  const indexOf = (w: Worker) => slots.findIndex((s) => s?.worker === w);

  function init(): WorkerInit {
    return {
      config: opts.config,
      // The current namespace set, as the control agent applied it: re-forked workers start from it.
      namespaces: agent.appliedNamespaces(),
      workers: opts.workers,
      host: opts.host,
      grpcPort,
      httpPort,
    };
  }

  function fork(index: number): void {
    const worker = cluster.fork({
      PRISM_WORKER_INDEX: String(index),
      PRISM_WORKERS: String(opts.workers),
      PRISM_PRIMARY_PID: String(process.pid),
    });
    slots[index] = { worker, live: false, startedAt: Date.now() };
    worker.on("message", (msg: ToPrimary) => onMessage(index, worker, msg));
    worker.on("error", () => {});
  }

  function sendTo(w: Worker, msg: ToWorker): void {
    if (w.isConnected()) w.send(msg);
  }

  function settle(id: number, b: Broadcast): void {
    if (b.waiting.size > 0) return;
    broadcasts.delete(id);
    if (b.error) log("error", `a worker could not apply a namespace change: ${b.error.message}`);
    b.done();
  }

  /** Sends a namespace change to every live worker; resolves when all acknowledged (or died). */
  function broadcast(make: (id: number) => ToWorker): Promise<void> {
    const id = nextBroadcast++;
    return new Promise<void>((resolve) => {
      const b: Broadcast = { waiting: new Set(), error: undefined, done: resolve };
      broadcasts.set(id, b);
      const out = make(id);
      for (const [i, s] of slots.entries()) {
        if (s?.live && s.worker.isConnected()) {
          b.waiting.add(i);
          s.worker.send(out);
        }
      }
      settle(id, b);
    });
  }

  // The control agent of this gateway: the config store, seeded from prism.yaml, applied to every worker.
  const store = await openConfigStore(configStoreSpec(opts.config.server));
  const agent = new ControlAgent({
    store,
    log,
    paths: { dataDir: resolve(opts.config.server.data_dir), allowedPaths: opts.config.server.allowed_paths.map((p) => resolve(p)) },
    // Creates the data keys of pii: encrypt namespaces (src/pii); the workers unwrap them with their own copy of the KEK.
    keyring: Keyring.load(opts.config.security, opts.config.server.data_dir),
    sink: {
      apply: (r) => broadcast((id) => ({ t: "apply", id, resolved: r })),
      delete: (name) => broadcast((id) => ({ t: "delete", id, name })),
    },
  });
  await agent.start({ backends: opts.config.backends, namespaces: opts.config.namespaces });

  /** An Admin change from a worker: the agent runs it; the worker gets its result. */
  function control(from: Worker, msg: Extract<ToPrimary, { t: "ctl" }>): void {
    if (!CONTROL_OPS.includes(msg.op)) {
      sendTo(from, { t: "ctl-done", id: msg.id, ok: false, error: { code: 12, reason: "PRISM_ERR_UNKNOWN_METHOD", message: `unknown control op ${msg.op}` } });
      return;
    }
    (agent[msg.op] as (...a: unknown[]) => Promise<unknown>).apply(agent, msg.args).then(
      (result) => sendTo(from, { t: "ctl-done", id: msg.id, ok: true, result }),
      (e) => {
        const p = toPrismError(e);
        sendTo(from, { t: "ctl-done", id: msg.id, ok: false, error: { code: p.code, reason: p.reason, message: p.message } });
      },
    );
  }

  function onMessage(index: number, worker: Worker, msg: ToPrimary): void {
    if (slots[index]?.worker !== worker) return;
    switch (msg.t) {
      case "hello":
        slots[index]!.live = true;
        sendTo(worker, { t: "init", init: init() });
        return;
      case "listening":
        listening.add(index);
        if (!ready && listening.size === opts.workers) {
          ready = true;
          opts.onReady({ grpcPort, httpPort });
        } else if (ready) log("info", `worker ${index} serving again (pid ${worker.process.pid})`);
        return;
      case "failed":
        if (!ready) {
          log("error", `worker ${index} could not start: ${msg.message}`);
          void shutdown(1);
        }
        return;
      case "ctl":
        control(worker, msg);
        return;
      case "ack": {
        const b = broadcasts.get(msg.id);
        if (!b) return;
        b.waiting.delete(index);
        if (!msg.ok && !b.error) b.error = msg.error;
        settle(msg.id, b);
        return;
      }
      case "drained":
        drained.add(index);
        if (drained.size >= liveCount()) allDrained?.();
        return;
    }
  }

  const liveCount = () => slots.filter((s) => s?.worker.isConnected()).length;
  const drained = new Set<number>();
  let allDrained: (() => void) | undefined;

  cluster.on("exit", (worker, code, signal) => {
    const index = indexOf(worker);
    if (index < 0) return;
    listening.delete(index);
    rmSync(meshSocketPath(process.pid, index), { force: true });
    // A control change waiting on this worker must not wait forever.
    for (const [id, b] of broadcasts) {
      if (b.waiting.delete(index)) settle(id, b);
    }
    if (shuttingDown) {
      slots[index] = undefined;
      if (slots.every((s) => s === undefined)) allExited?.();
      return;
    }
    if (!ready) {
      log("error", `worker ${index} exited during startup (${signal ?? `code ${code}`})`);
      slots[index] = undefined;
      void shutdown(1);
      return;
    }
    const quick = Date.now() - slots[index]!.startedAt < 1000;
    log("warn", `worker ${index} (pid ${worker.process.pid}) died (${signal ?? `code ${code}`}); restarting it (its memstore namespaces start empty)`);
    slots[index] = undefined;
    setTimeout(() => {
      if (!shuttingDown) fork(index);
    }, quick ? 1000 : 0);
  });

  let allExited: (() => void) | undefined;

  async function shutdown(code: number): Promise<void> {
    if (shuttingDown) return;
    shuttingDown = true;
    const bounded = (p: Promise<void>, ms: number) =>
      Promise.race([p, new Promise<void>((r) => setTimeout(r, ms).unref())]);
    // 1. every worker stops accepting and finishes its clients' calls (the mesh still serves peers);
    const drainedAll = new Promise<void>((r) => (allDrained = r));
    for (const s of slots) if (s) sendTo(s.worker, { t: "drain" });
    if (liveCount() > 0) await bounded(drainedAll, DRAIN_MS + 1000);
    // 2. then they close the mesh and their backends, and exit.
    const exited = new Promise<void>((r) => (allExited = r));
    for (const s of slots) if (s) sendTo(s.worker, { t: "close" });
    if (slots.some((s) => s !== undefined)) await bounded(exited, EXIT_MS);
    for (const [i, s] of slots.entries()) {
      if (s) s.worker.process.kill("SIGKILL");
      rmSync(meshSocketPath(process.pid, i), { force: true });
    }
    await agent.close().catch(() => {});
    done(code);
  }

  process.on("SIGTERM", () => void shutdown(0));
  process.on("SIGINT", () => void shutdown(0));

  for (let i = 0; i < opts.workers; i++) fork(i);
  return finished;
}
