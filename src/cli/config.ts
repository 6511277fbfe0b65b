/** Finding and loading the configuration for `prism serve` / `prism validate`. */
import { existsSync } from "node:fs";
import { ConfigError, defaultConfig, loadConfigFile } from "../config/load.js";
import type { PrismConfig } from "../config/schema.js";

/** Exit status for a configuration the user must fix. */
export const EXIT_CONFIG = 2;

/** --config, else $PRISM_CONFIG, else ./prism.yaml when present, else the built-in default. */
export async function resolveConfig(flag: string | undefined): Promise<{ config: PrismConfig; source: string }> {
  const file = flag ?? process.env.PRISM_CONFIG ?? (existsSync("prism.yaml") ? "prism.yaml" : undefined);
  if (file === undefined) return { config: defaultConfig(), source: "(built-in default)" };
  return { config: await loadConfigFile(file), source: file };
}

/** Prints a ConfigError's lines (file: path: reason) and returns the exit code; rethrows anything else. */
export function reportConfigError(e: unknown): number {
  if (e instanceof ConfigError) {
    process.stderr.write(`${e.message}\n`);
    return EXIT_CONFIG;
  }
  throw e;
}
