/**
 * `npm run bench`: every scenario (or --only a,b), one table, one JSON file in
 * perf/results/. Options: --seconds N (default 5, env PRISM_BENCH_SECONDS),
 * --warmup N (default 1), --threads N (WebSocket client threads, default 1),
 * --rounds N (alternating baseline/Prism rounds, best kept, default 2),
 * --only id,id, --list, --no-write.
 */
import { parseArgs } from "node:util";
import { SCENARIOS, type BenchOptions } from "./lib/scenarios.js";
import { formatTable, newResult, writeResult, type Row } from "./lib/report.js";

export function benchOptions(values: { seconds?: string; warmup?: string; threads?: string; rounds?: string }): BenchOptions {
  return {
    rounds: Number(values.rounds ?? process.env.PRISM_BENCH_ROUNDS ?? 2),
    seconds: Number(values.seconds ?? process.env.PRISM_BENCH_SECONDS ?? 5),
    warmupSeconds: Number(values.warmup ?? 1),
    threads: Number(values.threads ?? process.env.PRISM_BENCH_THREADS ?? 1),
    log: (m) => process.stderr.write(`[bench] ${m}\n`),
  };
}

/** Runs the scenarios in order; a failing scenario is reported and skipped, not fatal. */
export async function runScenarios(ids: string[], o: BenchOptions): Promise<{ rows: Row[]; failures: string[] }> {
  const rows: Row[] = [];
  const failures: string[] = [];
  for (const id of ids) {
    const fn = SCENARIOS[id];
    if (!fn) throw new Error(`unknown scenario "${id}" (--list shows them)`);
    try {
      const out = await fn(o);
      for (const r of Array.isArray(out) ? out : [out]) rows.push({ ...r, scenario: id });
    } catch (e) {
      failures.push(`${id}: ${(e as Error).message}`);
      o.log(`${id} FAILED: ${(e as Error).message}`);
    }
  }
  return { rows, failures };
}

/** The details under the table: saturation of server and client (is the client the limit?), notes. */
export function describe(r: Row): string {
  const busy = (m: Row["prism"]) =>
    `server ${m.serverBusy.toFixed(2)} core${m.clientBusy >= 0 ? `, client ${m.clientBusy.toFixed(2)} cores` : ""}${m.machineIdle !== undefined ? `, machine idle ${Math.round(m.machineIdle * 100)}%` : ""}`;
  const parts = [`prism: ${busy(r.prism)}`];
  if (r.baseline) parts.push(`${r.baselineName}: ${busy(r.baseline)}`);
  if (r.note) parts.push(r.note);
  return `  ${r.id}: ${parts.join("; ")}`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { seconds: { type: "string" }, warmup: { type: "string" }, threads: { type: "string" }, rounds: { type: "string" }, only: { type: "string" }, list: { type: "boolean" }, "no-write": { type: "boolean" } },
  });
  if (values.list) {
    console.log(Object.keys(SCENARIOS).join("\n"));
    return;
  }
  const o = benchOptions(values);
  const ids = values.only ? values.only.split(",").map((s) => s.trim()).filter(Boolean) : Object.keys(SCENARIOS);
  const result = newResult(o.seconds);
  const { rows, failures } = await runScenarios(ids, o);
  result.rows = rows;
  console.log(formatTable(rows));
  for (const r of rows) console.log(describe(r));
  if (!values["no-write"] && rows.length) console.log(`\nwrote ${writeResult(result)}`);
  if (failures.length) {
    console.error(`\n${failures.length} scenario(s) failed:\n  ${failures.join("\n  ")}`);
    process.exitCode = 1;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
