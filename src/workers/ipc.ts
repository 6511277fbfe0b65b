/** Messages between the primary and its workers (node:cluster IPC, JSON). */
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { PrismConfig } from "../config/schema.js";
import type { ResolvedNamespace } from "../config/resolve.js";
import type { ControlPlane } from "../core/gateway.js";

export interface WireError {
  code: number;
  reason: string;
  message: string;
}

/** What a worker needs to serve; sent by the primary after the worker says hello. */
export interface WorkerInit {
  config: PrismConfig;
  /** The namespaces as the primary's control agent resolved them. */
  namespaces: ResolvedNamespace[];
  workers: number;
  host: string;
  grpcPort: number;
  httpPort: number;
}

export type ToPrimary =
  | { t: "hello" }
  | { t: "listening"; grpcPort: number; httpPort: number }
  | { t: "failed"; message: string }
  /** An Admin change, run by the primary's control agent. */
  | { t: "ctl"; id: number; op: ControlOp; args: unknown[] }
  | { t: "ack"; id: number; ok: boolean; error?: WireError }
  | { t: "drained" };

export type ToWorker =
  | { t: "init"; init: WorkerInit }
  | { t: "apply"; id: number; resolved: ResolvedNamespace }
  | { t: "delete"; id: number; name: string }
  | { t: "ctl-done"; id: number; ok: boolean; result?: unknown; error?: WireError }
  | { t: "drain" }
  | { t: "close" };

export type ControlOp = keyof ControlPlane;
export const CONTROL_OPS: readonly ControlOp[] = [
  "applyNamespace",
  "deleteNamespace",
  "applyBackend",
  "deleteBackend",
  "listBackendInstances",
  "migrationStatus",
  "startMigration",
  "advanceMigration",
  "rollbackMigration",
  "finishMigration",
  "loadCursor",
  "saveCursor",
  "rollback",
  "loadRepairs",
  "writeRepairs",
  "writerLease",
  "loadReconcile",
  "saveReconcile",
];

/** Worker `index`'s mesh socket. Unix socket paths are short (108 bytes): keep it in the temp dir. */
export function meshSocketPath(primaryPid: number, index: number): string {
  return join(tmpdir(), `prism-${primaryPid}-w${index}.sock`);
}
