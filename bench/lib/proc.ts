/**
 * Server-side cost readers from /proc (Linux): CPU time (utime + stime) and
 * resident memory of a process. The load generator shares the machine with
 * the server, so CPU time per request is the number that survives noise.
 */
import { readFileSync } from "node:fs";
import { execFileSync } from "node:child_process";

let clkTck = 0;
function ticksPerSecond(): number {
  if (clkTck === 0) {
    try {
      clkTck = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/** CPU time (user + system) consumed so far by `pid`, in microseconds (resolution 1/CLK_TCK s). */
export function cpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name (field 2) may contain spaces: fields are counted after its closing ")".
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return ((utime + stime) * 1e6) / ticksPerSecond();
}

/** Resident set size of `pid` in bytes (VmRSS). */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

/** RSS split from /proc/<pid>/status, in bytes: anon is private to the process; file is mapped from disk (the node binary, shared libraries) and shared with every process mapping it. */
export function rssParts(pid: number): { rss: number; anon: number; file: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0) * 1024;
  return { rss: kb("VmRSS"), anon: kb("RssAnon"), file: kb("RssFile") };
}

/** Direct children of `pid` (cluster workers). */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Machine-wide jiffies from /proc/stat: idle (idle + iowait) and total, all CPUs. */
export function machineTicks(): { idle: number; total: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!;
  const f = line.trim().split(/\s+/).slice(1, 9).map(Number);
  return { idle: f[3]! + f[4]!, total: f.reduce((a, b) => a + b, 0) };
}

/**
 * A CPU meter over a window: start() then stop() → µs of CPU used by the pids in between.
 * `tolerateExit`: a pid that exits inside the window (e.g. a short-lived postgres backend of
 * another client) counts 0 instead of failing the read; its CPU in the window is lost.
 */
export class CpuWindow {
  private before = new Map<number, number>();
  private t0 = 0;
  private m0 = { idle: 0, total: 0 };
  constructor(
    private readonly pids: number[],
    private readonly opts: { tolerateExit?: boolean } = {},
  ) {}
  start(): void {
    this.before = this.read();
    this.t0 = performance.now();
    this.m0 = machineTicks();
  }
  /** CPU µs used since start(), the wall-clock µs elapsed, and the machine's idle fraction (all cores) meanwhile. */
  stop(): { cpuUs: number; wallUs: number; machineIdle: number } {
    const m = machineTicks();
    const idle = (m.idle - this.m0.idle) / Math.max(1, m.total - this.m0.total);
    const now = this.read();
    let cpuUs = 0;
    for (const [pid, us] of now) cpuUs += us - (this.before.get(pid) ?? us);
    return { cpuUs, wallUs: (performance.now() - this.t0) * 1000, machineIdle: Math.round(idle * 100) / 100 };
  }
  private read(): Map<number, number> {
    const out = new Map<number, number>();
    for (const p of this.pids) {
      try {
        out.set(p, cpuMicros(p));
      } catch (e) {
        if (!this.opts.tolerateExit) throw e;
      }
    }
    return out;
  }
}
