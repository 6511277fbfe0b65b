/** The SDK as the CLI uses it (`@prism/client`), loaded only by the commands that talk to a server. */
import { parseArgs, type ParseArgsConfig } from "node:util";
import type { BackendInstanceInfo, NamespaceInfo, PatternInfo } from "@prism/client";

export type { BackendInstanceInfo, NamespaceInfo, PatternInfo };

export interface CliClient {
  kv(ns: string): {
    get(key: string): Promise<Uint8Array | null>;
    set(key: string, value: Uint8Array | string, opts?: { ttl?: number }): Promise<unknown>;
    delete(key: string): Promise<boolean>;
  };
  admin: {
    listNamespaces(): Promise<NamespaceInfo[]>;
    /** NOT_FOUND when the namespace is not configured. */
    getNamespace(name: string): Promise<NamespaceInfo>;
    applyNamespace(config: string | object, opts?: { dryRun?: boolean }): Promise<{ namespace: NamespaceInfo; created: boolean; revision: number; applied: boolean }>;
    deleteNamespace(name: string): Promise<boolean>;
    applyBackend(
      name: string,
      backend: { type: string } & Record<string, unknown>,
      opts?: { dryRun?: boolean },
    ): Promise<{ backend: BackendInstanceInfo; created: boolean; revision: number; applied: boolean; namespaces: string[] }>;
    /** FAILED_PRECONDITION while namespaces use it. */
    deleteBackend(name: string): Promise<boolean>;
    listBackendInstances(): Promise<BackendInstanceInfo[]>;
    listPatterns(): Promise<PatternInfo[]>;
    listBackends(): Promise<{ type: string; interfaces: string[]; description: string }[]>;
    migration(namespace: string, op?: "status" | "start" | "advance" | "rollback" | "finish", reason?: string | { reason?: string; dryRun?: boolean }): Promise<Record<string, unknown>>;
  };
  close(): Promise<void> | void;
}

export const DEFAULT_ADDR = "ws://127.0.0.1:8981";

/** Deadline of each CLI call (connect included): a server that stops answering fails the command instead of hanging it. */
export function cliTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  const v = Number(env.PRISM_CLI_TIMEOUT_MS ?? 30_000);
  return Number.isFinite(v) && v > 0 ? v : 30_000;
}

/** --addr, else $PRISM_ADDR, else the local default. */
export async function connectClient(addr: string | undefined): Promise<CliClient> {
  const sdk = (await import("@prism/client")) as unknown as { connect(addr: string, o: { timeoutMs: number; reconnect: boolean }): Promise<CliClient> };
  return sdk.connect(addr ?? process.env.PRISM_ADDR ?? DEFAULT_ADDR, { timeoutMs: cliTimeoutMs(), reconnect: false });
}

/** Connects, runs `fn`, closes. */
export async function withClient<T>(addr: string | undefined, fn: (c: CliClient) => Promise<T>): Promise<T> {
  const client = await connectClient(addr);
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

/** Common flags of the client commands. */
export const CLIENT_OPTIONS = {
  ns: { type: "string", default: "default" },
  addr: { type: "string" },
} as const satisfies ParseArgsConfig["options"];

export function parseClientArgs(
  argv: string[],
  extra: ParseArgsConfig["options"],
): { values: Record<string, string | boolean | (string | boolean)[] | undefined>; positionals: string[] } {
  return parseArgs({ args: argv, options: { ...CLIENT_OPTIONS, ...extra }, allowPositionals: true, strict: true });
}

/** The flags of the admin commands: --addr and `extra` (no --ns). */
export function parseAdminArgs(
  argv: string[],
  extra: ParseArgsConfig["options"],
): { values: Record<string, string | boolean | (string | boolean)[] | undefined>; positionals: string[] } {
  return parseArgs({ args: argv, options: { addr: CLIENT_OPTIONS.addr, ...extra }, allowPositionals: true, strict: true });
}

/** A PrismError from the SDK → "CODE_NAME: message". */
export function describeError(e: unknown): string {
  const err = e as { code?: unknown; reason?: string; message?: string };
  return err.reason ? `${err.reason}: ${err.message}` : String(err.message ?? e);
}

/** Rows as left-aligned columns (two spaces apart, the last one not padded). */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")).join("\n") + "\n";
}
