/** Messages between the primary and its workers (node:cluster IPC, JSON). */
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NamespaceConfig, PrismConfig } from "../config/schema.js";

export interface WireError {
  code: number;
  reason: string;
  message: string;
}

/** What a worker needs to serve; sent by the primary after the worker says hello. */
export interface WorkerInit {
  config: PrismConfig;
  workers: number;
  host: string;
  grpcPort: number;
  httpPort: number;
}

export type ToPrimary =
  | { t: "hello" }
  | { t: "listening"; grpcPort: number; httpPort: number }
  | { t: "failed"; message: string }
  | { t: "ctl"; id: number; op: "apply"; config: NamespaceConfig }
  | { t: "ctl"; id: number; op: "delete"; name: string }
  | { t: "ack"; id: number; ok: boolean; created?: boolean; error?: WireError }
  | { t: "drained" };

export type ToWorker =
  | { t: "init"; init: WorkerInit }
  | { t: "apply"; id: number; config: NamespaceConfig }
  | { t: "delete"; id: number; name: string }
  | { t: "ctl-done"; id: number; ok: boolean; result?: boolean; error?: WireError }
  | { t: "drain" }
  | { t: "close" };

/** Worker `index`'s mesh socket. Unix socket paths are short (108 bytes): keep it in the temp dir. */
export function meshSocketPath(primaryPid: number, index: number): string {
  return join(tmpdir(), `prism-${primaryPid}-w${index}.sock`);
}
