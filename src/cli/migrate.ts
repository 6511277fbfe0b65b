/** `prism migrate status|start|advance|rollback|finish NAMESPACE`: a namespace's migration, step by step. */
import { parseArgs } from "node:util";
import { describeError, withClient } from "./client.js";
import { MIGRATE_USAGE, UsageError } from "./usage.js";

const OPS = ["status", "start", "advance", "rollback", "finish"] as const;
type Op = (typeof OPS)[number];

/** The status as lines an operator reads: where it is, how far, and why it rolled back. */
export function formatMigration(s: Record<string, any>): string {
  const lines = [`namespace ${s.namespace}: slot ${s.slot} from "${s.from}" to "${s.to}"${s.dryRun ? " (dry run)" : ""}`];
  lines.push(`phase: ${s.phase || "not started"}${s.phase === "cutover" ? ` (${s.cutoverPct}% of keys on "${s.to}")` : ""}${s.revision ? ` (revision ${s.revision})` : ""}`);
  if (s.rolledBack) lines.push(`rolled back${s.rollbackAutomatic ? " automatically" : ""}: ${s.rollbackReason}${Number(s.rollbacks) > 1 ? ` (${s.rollbacks} rollbacks in this migration)` : ""}`);
  if (s.backfillCopied || s.backfillSkipped || s.backfillDone) {
    const done = s.backfillCopied + s.backfillSkipped;
    lines.push(`backfill: ${done}${s.backfillEstimatedTotal ? ` / ~${s.backfillEstimatedTotal}` : ""} keys (${s.backfillCopied} copied, ${s.backfillSkipped} already written by clients)${s.backfillDone ? ", done" : ""}`);
  }
  if (s.shadowReads) lines.push(`shadow reads: ${s.shadowReads}, mismatches ${s.shadowMismatches} (diff ${Number(s.diffPct).toFixed(2)}% over the window)`);
  lines.push(`"${s.to}": error rate ${(Number(s.toErrorRate) * 100).toFixed(2)}%, p99 ${s.toP99Ms} ms; "${s.from}": error rate ${(Number(s.fromErrorRate ?? 0) * 100).toFixed(2)}%, p99 ${s.fromP99Ms} ms; dual-write errors ${s.dualWriteErrors} (${s.repairsPending} to repair)`);
  return lines.join("\n");
}

export async function migrateCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: { addr: { type: "string" }, reason: { type: "string" }, "dry-run": { type: "boolean" } }, allowPositionals: true, strict: true });
  const [op, ns] = positionals;
  if (positionals.length !== 2 || !OPS.includes(op as Op)) throw new UsageError(MIGRATE_USAGE);
  // --dry-run: start a run that dual-writes and shadow-reads but never serves from `to` (cutover and finish refused).
  if (values["dry-run"] && op !== "start") throw new UsageError(MIGRATE_USAGE);
  try {
    return await withClient(values.addr, async (c) => {
      const s = await c.admin.migration(ns!, op as Op, { reason: values.reason ?? "", dryRun: !!values["dry-run"] });
      process.stdout.write(formatMigration(s) + "\n");
      return 0;
    });
  } catch (e) {
    process.stderr.write(`prism migrate ${op}: ${describeError(e)}\n`);
    return 1;
  }
}
