/** Finding and loading the configuration for `prism serve` / `prism validate`. */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ConfigError } from "../config/errors.js";
import type { PrismConfig } from "../config/schema.js";

/** Exit status for a configuration the user must fix. */
export const EXIT_CONFIG = 2;

/** --config, else $PRISM_CONFIG, else ./prism.yaml when present, else the built-in default. */
export async function resolveConfig(flag: string | undefined): Promise<{ config: PrismConfig; source: string }> {
  const file = flag ?? process.env.PRISM_CONFIG ?? (existsSync("prism.yaml") ? "prism.yaml" : undefined);
  const { defaultConfig, loadConfigFile } = await import("../config/load.js");
  if (file === undefined) return { config: defaultConfig(), source: "(built-in default)" };
  return { config: await loadConfigFile(file), source: file };
}

/** The hidden command that prints the resolved configuration as JSON (see resolveConfigInChild). */
export const RESOLVE_CONFIG_COMMAND = "__resolve-config";

/**
 * resolveConfig in a short-lived child process (`prism __resolve-config`),
 * for `prism serve`: the validator (yaml, zod, every backend's options schema)
 * costs a serving process ~4 MB of heap for its whole life, and a module once
 * loaded is never unloaded. The child's problems go straight to stderr; a bad
 * config rejects with a ConfigError carrying no lines of its own.
 */
export function resolveConfigInChild(flag: string | undefined): Promise<{ config: PrismConfig; source: string }> {
  const bin = fileURLToPath(new URL("../../../bin/prism.js", import.meta.url));
  const child = spawn(process.execPath, [bin, RESOLVE_CONFIG_COMMAND, ...(flag === undefined ? [] : [flag])], { stdio: ["ignore", "pipe", "inherit"] });
  const chunks: Buffer[] = [];
  child.stdout.on("data", (c: Buffer) => chunks.push(c));
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === EXIT_CONFIG) return reject(new ConfigError([], "prism.yaml"));
      if (code !== 0) return reject(new Error(`validating the configuration failed (exit ${code})`));
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")) as { config: PrismConfig; source: string });
      } catch (e) {
        reject(e as Error);
      }
    });
  });
}

/** `prism __resolve-config [file]`: the resolved config as JSON on stdout. */
export async function printResolvedConfig(argv: string[]): Promise<number> {
  try {
    const json = JSON.stringify(await resolveConfig(argv[0]));
    // Wait for the write: the caller exits right after, and pipes are asynchronous on some platforms (macOS).
    await new Promise<void>((resolve, reject) => process.stdout.write(json, (e) => (e ? reject(e) : resolve())));
    return 0;
  } catch (e) {
    return reportConfigError(e);
  }
}

/** Prints a ConfigError's lines (file: path: reason) and returns the exit code; rethrows anything else. */
export function reportConfigError(e: unknown): number {
  if (e instanceof ConfigError) {
    if (e.problems.length) process.stderr.write(`${e.message}\n`);
    return EXIT_CONFIG;
  }
  throw e;
}
