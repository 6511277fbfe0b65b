/**
 * One ingress worker (a node:cluster child). It serves the public ports
 * (shared through the primary), the mesh socket for the namespaces it owns,
 * and sends namespace changes to the primary, which applies them everywhere.
 */
import { startServer, stderrLog, type RunningServer } from "../server.js";
import { PrismError, errors, toPrismError, type Code } from "../core/errors.js";
import type { ApplyBackendResult, ApplyNamespaceResult, BackendInstanceInfo, ControlPlane } from "../core/gateway.js";
import type { ResolvedNamespace } from "../config/resolve.js";
import type { MigrationStatus } from "../control/agent.js";
import type { BackfillCursor, ReconcileCursor, ReconcileRequest, RepairBatch } from "../migrations/types.js";
import { workerPlacement } from "./placement.js";
import { MeshForwarder } from "./mesh-client.js";
import { startMeshServer, type MeshServer } from "./mesh-server.js";
import { meshSocketPath, type ControlOp, type ToPrimary, type ToWorker, type WireError, type WorkerInit } from "./ipc.js";

const DRAIN_MS = 10_000;
/** Room for the frame header and its optional fields (traceparent) around a request body. */
const FRAME_OVERHEAD = 1024;
const MAX_RESPONSE_FRAME = 0x7fffffff;

function send(msg: ToPrimary): void {
  process.send?.(msg);
}

function toWire(e: unknown): WireError {
  const p = toPrismError(e);
  return { code: p.code, reason: p.reason, message: p.message };
}

/** Admin changes go to the primary, whose control agent writes the store and applies them to every worker (this one included). */
class IpcControlPlane implements ControlPlane {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve(v: any): void; reject(e: Error): void }>();

  private call<T>(op: ControlOp, args: unknown[]): Promise<T> {
    if (!process.connected) return Promise.reject(errors.unavailable("the primary process is gone"));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      send({ t: "ctl", id, op, args });
    });
  }

  applyNamespace(entry: unknown, opts?: { dryRun?: boolean }) {
    return this.call<ApplyNamespaceResult>("applyNamespace", [entry, opts ?? {}]);
  }
  deleteNamespace(name: string) {
    return this.call<{ deleted: boolean; revision: number }>("deleteNamespace", [name]);
  }
  applyBackend(name: string, spec: unknown, opts?: { dryRun?: boolean }) {
    return this.call<ApplyBackendResult>("applyBackend", [name, spec, opts ?? {}]);
  }
  deleteBackend(name: string) {
    return this.call<{ deleted: boolean; revision: number }>("deleteBackend", [name]);
  }
  listBackendInstances() {
    return this.call<BackendInstanceInfo[]>("listBackendInstances", []);
  }
  migrationStatus(name: string) {
    return this.call<MigrationStatus>("migrationStatus", [name]);
  }
  startMigration(name: string, opts?: { dryRun?: boolean }) {
    return this.call<MigrationStatus>("startMigration", [name, opts]);
  }
  advanceMigration(name: string) {
    return this.call<MigrationStatus>("advanceMigration", [name]);
  }
  rollbackMigration(name: string, reason?: string, automatic?: boolean) {
    return this.call<MigrationStatus>("rollbackMigration", [name, reason, automatic]);
  }
  finishMigration(name: string) {
    return this.call<{ revision: number }>("finishMigration", [name]);
  }
  loadCursor(name: string) {
    return this.call<BackfillCursor | null>("loadCursor", [name]);
  }
  saveCursor(name: string, c: BackfillCursor) {
    return this.call<void>("saveCursor", [name, c]);
  }
  rollback(name: string, reason: string, automatic: boolean) {
    return this.call<unknown>("rollback", [name, reason, automatic]);
  }
  loadRepairs(name: string) {
    return this.call<RepairBatch[] | null>("loadRepairs", [name]);
  }
  writeRepairs(name: string, put: RepairBatch[], remove: string[]) {
    return this.call<void>("writeRepairs", [name, put, remove]);
  }
  writerLease(name: string, instance: string, alive: boolean) {
    return this.call<void>("writerLease", [name, instance, alive]);
  }
  loadReconcile(name: string) {
    return this.call<{ request: ReconcileRequest; cursor: ReconcileCursor | null } | null>("loadReconcile", [name]);
  }
  saveReconcile(name: string, c: ReconcileCursor) {
    return this.call<void>("saveReconcile", [name, c]);
  }

  done(id: number, ok: boolean, result: unknown, error: WireError | undefined): void {
    const w = this.waiting.get(id);
    if (!w) return;
    this.waiting.delete(id);
    if (ok) w.resolve(result);
    else w.reject(new PrismError(error!.code as Code, error!.reason, error!.message));
  }

  failAll(): void {
    for (const w of this.waiting.values()) w.reject(errors.unavailable("the primary process is gone"));
    this.waiting.clear();
  }
}

/** Entry point of a cluster worker. */
export function runWorker(): void {
  const index = Number(process.env.PRISM_WORKER_INDEX ?? 0);
  const primaryPid = Number(process.env.PRISM_PRIMARY_PID ?? process.ppid);
  const log = (level: "info" | "warn" | "error", msg: string) => stderrLog(level, `[worker ${index}] ${msg}`);
  const control = new IpcControlPlane();
  let server: RunningServer | undefined;
  let mesh: MeshServer | undefined;
  let forwarder: MeshForwarder | undefined;
  let closing = false;

  const closeAll = async () => {
    if (closing) return;
    closing = true;
    const bounded = (p: Promise<unknown>) => Promise.race([p, new Promise((r) => setTimeout(r, DRAIN_MS).unref())]);
    await bounded(server?.drain() ?? Promise.resolve());
    await bounded(mesh?.close() ?? Promise.resolve());
    forwarder?.close();
    await bounded(server?.close() ?? Promise.resolve());
    process.exit(0);
  };

  async function start(init: WorkerInit): Promise<void> {
    // Responses (BatchGet, Scan) may exceed the request limit; the peers are trusted processes of this gateway.
    forwarder = new MeshForwarder((owner) => meshSocketPath(primaryPid, owner), MAX_RESPONSE_FRAME);
    server = await startServer({
      config: init.config,
      log,
      host: init.host,
      grpcPort: init.grpcPort,
      httpPort: init.httpPort,
      namespaces: init.namespaces,
      workers: init.workers,
      workerIndex: index,
      placement: workerPlacement(index, init.workers),
      forwarder,
      control,
      clusterMetrics: true,
      accessLog: true,
    });
    mesh = await startMeshServer(server.gateway, meshSocketPath(primaryPid, index), init.config.server.max_message_bytes + FRAME_OVERHEAD, `mesh peer of worker ${index}`);
    send({ t: "listening", grpcPort: server.grpcPort, httpPort: server.httpPort });
  }

  async function onApply(id: number, resolved: ResolvedNamespace): Promise<void> {
    try {
      await server!.router.apply(resolved);
      send({ t: "ack", id, ok: true });
    } catch (e) {
      send({ t: "ack", id, ok: false, error: toWire(e) });
    }
  }

  async function onDelete(id: number, name: string): Promise<void> {
    try {
      await server!.router.delete(name);
      send({ t: "ack", id, ok: true });
    } catch (e) {
      send({ t: "ack", id, ok: false, error: toWire(e) });
    }
  }

  process.on("message", (msg: ToWorker) => {
    switch (msg.t) {
      case "init":
        start(msg.init).catch((e) => {
          send({ t: "failed", message: (e as Error).message });
          log("error", `cannot start: ${(e as Error).message}`);
          setTimeout(() => process.exit(1), 50).unref();
        });
        return;
      case "apply":
        void onApply(msg.id, msg.resolved);
        return;
      case "delete":
        void onDelete(msg.id, msg.name);
        return;
      case "ctl-done":
        control.done(msg.id, msg.ok, msg.result, msg.error);
        return;
      case "drain":
        // Stop taking calls from clients; keep the mesh and backends for peers still finishing theirs.
        void Promise.race([server?.drain() ?? Promise.resolve(), new Promise((r) => setTimeout(r, DRAIN_MS).unref())]).then(() =>
          send({ t: "drained" }),
        );
        return;
      case "close":
        void closeAll();
        return;
    }
  });
  // The primary coordinates shutdown (a terminal's Ctrl-C reaches the whole process group).
  process.on("SIGINT", () => {});
  process.on("SIGTERM", () => {});
  // The primary died without telling us: shut down on our own.
  process.on("disconnect", () => {
    control.failAll();
    void closeAll();
  });
  send({ t: "hello" });
}
