/** The result row, the printed table and the JSON written to perf/results/. */
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { ROOT } from "./spawn.js";
import type { Measurement } from "./ws-load.js";

export interface Row {
  /** Stable id: perf/baseline.json and the dashboard key on it. */
  id: string;
  /** The SCENARIOS entry that produced it (one scenario may produce several rows). */
  scenario?: string;
  title: string;
  /** throughput: ratio = Prism ops/s ÷ baseline ops/s; latency: open loop at a fixed rate, added = p99 difference; memory: RSS only. */
  kind: "throughput" | "latency" | "memory";
  prism: Measurement;
  prismRssMb: number;
  baselineName: string;
  baseline?: Measurement;
  ratio?: number;
  /** Prism p50/p99 minus the baseline's, in ms. */
  addedP50Ms?: number;
  addedP99Ms?: number;
  /** The issue-4 target this row is checked against, and whether it held. */
  target?: string;
  met?: boolean;
  /** The command that reproduces this row. */
  command: string;
  note?: string;
}

export interface Result {
  version: 1;
  date: string;
  commit: string;
  dirty: boolean;
  node: string;
  machine: { cpus: number; model: string; loadavg: number[] };
  secondsPerMeasurement: number;
  rows: Row[];
}

function git(args: string[]): string {
  try {
    return execFileSync("git", args, { cwd: ROOT }).toString().trim();
  } catch {
    return "";
  }
}

export function newResult(seconds: number): Result {
  return {
    version: 1,
    date: new Date().toISOString(),
    commit: git(["rev-parse", "--short", "HEAD"]) || "unknown",
    dirty: git(["status", "--porcelain", "--untracked-files=no"]) !== "",
    node: process.version,
    machine: { cpus: cpus().length, model: cpus()[0]?.model ?? "", loadavg: loadavg().map((x) => Math.round(x * 100) / 100) },
    secondsPerMeasurement: seconds,
    rows: [],
  };
}

export function writeResult(r: Result, dir = join(ROOT, "perf/results")): string {
  mkdirSync(dir, { recursive: true });
  const stamp = r.date.replace(/:/g, "-").replace(/\.\d+Z$/, "Z");
  const file = join(dir, `${stamp}-${r.commit}.json`);
  writeFileSync(file, JSON.stringify(r, null, 2) + "\n");
  return file;
}

const k = (n: number) => (n >= 10_000 ? `${(n / 1000).toFixed(1)}K` : String(n));
const ms = (x: number | undefined) => (x === undefined || x < 0 ? "-" : x.toFixed(x < 10 ? 3 : 1));

/** One line per row: scenario, Prism, baseline, ratio, latency, CPU per op, RSS. */
export function formatTable(rows: Row[]): string {
  const head = ["scenario", "Prism ops/s", "baseline", "base ops/s", "ratio", "p50 ms", "p99 ms", "base p50/p99", "CPU µs/op", "base CPU", "RSS MB", "target"];
  const lines = rows.map((r) => [
    r.id,
    r.kind === "memory" ? "-" : k(r.prism.opsPerSec),
    r.baselineName,
    r.baseline ? k(r.baseline.opsPerSec) : "-",
    r.ratio !== undefined ? r.ratio.toFixed(3) : r.addedP99Ms !== undefined ? `${r.addedP99Ms >= 0 ? "+" : ""}${r.addedP99Ms.toFixed(3)}ms p99` : "-",
    r.kind === "memory" ? "-" : ms(r.prism.latency.p50),
    r.kind === "memory" ? "-" : ms(r.prism.latency.p99),
    r.baseline ? `${ms(r.baseline.latency.p50)}/${ms(r.baseline.latency.p99)}` : "-",
    r.kind === "memory" ? "-" : r.prism.cpuUsPerOp.toFixed(1),
    r.baseline && r.baseline.cpuUsPerOp > 0 ? r.baseline.cpuUsPerOp.toFixed(1) : "-",
    r.prismRssMb.toFixed(0),
    r.target ? `${r.met ? "MET" : "MISSED"}: ${r.target}` : "",
  ]);
  const all = [head, ...lines];
  const widths = head.map((_, i) => Math.max(...all.map((l) => l[i]!.length)));
  const fmt = (l: string[]) => l.map((c, i) => (i === 0 || i === 2 || i === l.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ").trimEnd();
  return [fmt(head), widths.map((w) => "-".repeat(w)).join("  "), ...lines.map(fmt)].join("\n");
}
