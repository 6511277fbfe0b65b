/**
 * Wires the audit log of one gateway process from `audit:` in prism.yaml.
 * With several workers (--workers N) each worker appends its own file,
 * `<name>.w<index><ext>` (audit.jsonl → audit.w0.jsonl, audit.w1.jsonl …),
 * each with its own chain and rotation: no cross-process locking on the
 * hot path, and `prism audit verify` checks each file on its own. The
 * primary serves no calls and writes none.
 */
import { parse, resolve, join } from "node:path";
import type { AuditConfig } from "../config/schema.js";
import type { Router } from "../router/router.js";
import { AuditSink } from "./sink.js";
import { FileOutput } from "./file-output.js";
import { loadKek } from "../pii/keyring.js";

export { AuditSink, auditFull, type AuditOutput } from "./sink.js";

/** The file a process writes: `file` inside data_dir, suffixed with the worker index in cluster mode. */
export function auditPath(cfg: AuditConfig, dataDir: string, worker: number | undefined): string {
  const base = resolve(dataDir, cfg.file);
  if (worker === undefined) return base;
  const p = parse(base);
  return join(p.dir, `${p.name}.w${worker}${p.ext}`);
}

/** audit.chain_key's 32 bytes (read as a KEK is); errors name the field, never the key. */
export function loadChainKey(k: { file?: string; env?: string }, dataDir: string, env: NodeJS.ProcessEnv = process.env): Buffer {
  return loadKek(k, "audit.chain_key", dataDir, env, "the chain key");
}

export async function setupAudit(opts: {
  audit: AuditConfig | undefined;
  dataDir: string;
  router: Router;
  /** Set in cluster mode (several workers). */
  worker?: number;
  log: (level: "info" | "warn" | "error", msg: string) => void;
}): Promise<AuditSink | undefined> {
  const cfg = opts.audit;
  if (cfg === undefined) return undefined;
  const output = new FileOutput(auditPath(cfg, opts.dataDir, opts.worker), cfg.rotate_bytes, cfg.keep, opts.log);
  return AuditSink.open({
    output,
    bufferRecords: cfg.buffer_records,
    onFull: cfg.on_full,
    hashChain: cfg.hash_chain,
    chainKey: cfg.chain_key !== undefined && cfg.hash_chain ? loadChainKey(cfg.chain_key, opts.dataDir) : undefined,
    namespaceOf: (name) => opts.router.get(name)?.config,
    worker: opts.worker,
    log: opts.log,
  });
}
