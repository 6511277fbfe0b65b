/** The SDK as the CLI uses it (`@prism/client`), loaded only by the commands that talk to a server. */
import { parseArgs, type ParseArgsConfig } from "node:util";

export interface CliClient {
  kv(ns: string): {
    get(key: string): Promise<Uint8Array | null>;
    set(key: string, value: Uint8Array | string, opts?: { ttl?: number }): Promise<unknown>;
    delete(key: string): Promise<boolean>;
  };
  admin: {
    listNamespaces(): Promise<{ name: string; primitives: string[]; backendType: string }[]>;
  };
  close(): Promise<void> | void;
}

export const DEFAULT_ADDR = "ws://127.0.0.1:8981";

/** --addr, else $PRISM_ADDR, else the local default. */
export async function connectClient(addr: string | undefined): Promise<CliClient> {
  const sdk = (await import("@prism/client")) as unknown as { connect(addr: string): Promise<CliClient> };
  return sdk.connect(addr ?? process.env.PRISM_ADDR ?? DEFAULT_ADDR);
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

/** A PrismError from the SDK → "CODE_NAME: message". */
export function describeError(e: unknown): string {
  const err = e as { code?: unknown; reason?: string; message?: string };
  return err.reason ? `${err.reason}: ${err.message}` : String(err.message ?? e);
}
