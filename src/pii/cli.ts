/**
 * `prism keys rotate [--config FILE] [--dry-run]`: re-wraps every data key
 * of the config store that is not wrapped by security.kek with it (the old
 * KEK must be listed in security.previous_keks to unwrap them). The data in
 * the backends is not touched: the data keys stay the same. Running Prism
 * processes pick the re-wrapped keys up like any config change (roll the new
 * security block out to every process first, then rotate; then the old KEK
 * can leave previous_keks).
 */
import { parseArgs } from "node:util";
import { UsageError, KEYS_USAGE } from "../cli/usage.js";
import { reportConfigError, resolveConfig } from "../cli/config.js";
import { withDefaultStore, configStoreSpec } from "../control/store-spec.js";
import { openConfigStore } from "../control/stores.js";
import type { ConfigStore, WriteOp } from "../control/store.js";
import { DATAKEY_KIND, Keyring, type WrappedDataKey } from "./keyring.js";

/** Re-wraps the store's data keys with the keyring's current KEK; returns what changed (nothing written on a dry run). */
export async function rotateDataKeys(store: ConfigStore, keyring: Keyring, dryRun = false): Promise<{ rewrapped: { namespace: string; id: string; from: string }[]; total: number }> {
  const snap = await store.snapshot();
  const ops: WriteOp[] = [];
  const rewrapped: { namespace: string; id: string; from: string }[] = [];
  let total = 0;
  for (const e of snap.entries) {
    if (e.kind !== DATAKEY_KIND || e.spec === null) continue;
    total++;
    const w = e.spec as WrappedDataKey;
    const next = keyring.rewrap(w);
    if (next === undefined) continue;
    ops.push({ kind: DATAKEY_KIND, name: e.name, spec: next });
    rewrapped.push({ namespace: w.namespace, id: w.id, from: w.kek });
  }
  if (ops.length && !dryRun) await store.write(ops);
  return { rewrapped, total };
}

export async function keysCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { config: { type: "string", short: "c" }, "dry-run": { type: "boolean" } } });
  if (positionals.length !== 1 || positionals[0] !== "rotate") throw new UsageError(KEYS_USAGE);
  let config;
  try {
    config = (await resolveConfig(values.config)).config;
  } catch (e) {
    return reportConfigError(e);
  }
  let keyring: Keyring | undefined;
  try {
    keyring = Keyring.load(config.security, config.server.data_dir);
  } catch (e) {
    process.stderr.write(`prism keys rotate: ${(e as Error).message}\n`);
    return 2;
  }
  if (!keyring) {
    process.stderr.write("prism keys rotate: no security.kek in the configuration\n");
    return 2;
  }
  const store = await openConfigStore(configStoreSpec(withDefaultStore(config.server)));
  try {
    const r = await rotateDataKeys(store, keyring, values["dry-run"] === true);
    for (const k of r.rewrapped) process.stdout.write(`${values["dry-run"] ? "would re-wrap" : "re-wrapped"} data key ${k.id} of namespace ${k.namespace}: KEK ${k.from} → ${keyring.currentId}\n`);
    process.stdout.write(`${r.rewrapped.length} of ${r.total} data key(s) ${values["dry-run"] ? "to re-wrap" : "re-wrapped"}; all others already use KEK ${keyring.currentId}\n`);
    return 0;
  } catch (e) {
    process.stderr.write(`prism keys rotate: ${(e as Error).message}\n`);
    return 1;
  } finally {
    await store.close();
  }
}
