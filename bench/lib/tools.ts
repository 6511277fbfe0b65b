/**
 * External load generators: h2load (nghttp2-client) for gRPC and wrk for
 * HTTP. Both are C and use far less CPU per request than a Node client.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { CpuWindow } from "./proc.js";
import { latencyOf, newHistogram, round3 } from "./hist.js";
import type { Measurement } from "./ws-load.js";

const run = promisify(execFile);

export async function hasTool(name: string): Promise<boolean> {
  try {
    await run("sh", ["-c", `command -v ${name}`]);
    return true;
  } catch {
    return false;
  }
}

/** A gRPC unary request as h2load sends it: the 5-byte length prefix, then the message. */
export function grpcBody(message: Uint8Array): Buffer {
  const b = Buffer.alloc(5 + message.length);
  b.writeUInt32BE(message.length, 1);
  b.set(message, 5);
  return b;
}

export interface H2loadOptions {
  /** One URL, or several: each connection cycles through them in order (h2load). */
  url: string | string[];
  body: Uint8Array;
  conns: number;
  streams: number;
  seconds: number;
  warmupSeconds?: number;
  serverPids: number[];
}

/**
 * h2load against a gRPC unary method. Latencies come from h2load's per-request
 * log (--log-file). h2load counts HTTP 200 as success: the caller checks the
 * gRPC status of the same request once with a real client.
 */
export async function runH2load(o: H2loadOptions): Promise<Measurement> {
  const dir = mkdtempSync(join(tmpdir(), "prism-h2load-"));
  try {
    const bodyFile = join(dir, "body.bin");
    const logFile = join(dir, "log.tsv");
    writeFileSync(bodyFile, grpcBody(o.body));
    const args = (secs: number, log?: string) => [
      "-c", String(o.conns), "-m", String(o.streams), "-t", "1", "-D", String(secs),
      "-d", bodyFile, "-H", "content-type: application/grpc", "-H", "te: trailers",
      ...(log ? [`--log-file=${log}`] : []), ...(Array.isArray(o.url) ? o.url : [o.url]),
    ];
    if (o.warmupSeconds ?? 1) await run("h2load", args(o.warmupSeconds ?? 1), { maxBuffer: 1 << 24 });
    const cpu = new CpuWindow(o.serverPids);
    const client0 = process.cpuUsage();
    cpu.start();
    const { stdout } = await run("h2load", args(o.seconds, logFile), { maxBuffer: 1 << 24 });
    const { cpuUs, wallUs, machineIdle } = cpu.stop();
    void client0;
    const reqs = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(stdout);
    const fin = /finished in ([\d.]+)(m?s), ([\d.]+) req\/s/.exec(stdout);
    if (!reqs || !fin) throw new Error(`h2load output not understood:\n${stdout}`);
    const ok = Number(reqs[4]);
    const hist = newHistogram();
    for (const line of readFileSync(logFile, "utf8").split("\n")) {
      const f = line.split("\t");
      if (f.length >= 3 && f[1] === "200") hist.recordValue(Math.max(1, Number(f[2])));
    }
    const secs = Number(fin[1]) / (fin[2] === "ms" ? 1000 : 1);
    const m: Measurement = {
      ops: ok,
      errors: Number(reqs[5]) + Number(reqs[6]),
      opsPerSec: Math.round(ok / secs),
      latency: latencyOf(hist),
      cpuUsPerOp: ok ? round3(cpuUs / ok) : 0,
      serverBusy: round3(cpuUs / wallUs),
      clientBusy: -1,
    machineIdle,
    };
    hist.destroy();
    return m;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function toMs(v: string, unit: string): number {
  const x = Number(v);
  return unit === "us" ? x / 1000 : unit === "ms" ? x : unit === "s" ? x * 1000 : x * 60_000;
}

export interface WrkOptions {
  url: string;
  conns: number;
  seconds: number;
  warmupSeconds?: number;
  serverPids: number[];
  /** A wrk Lua script (-s), e.g. bench/wrk/getset.lua. */
  script?: string;
}

/** wrk -t1 with --latency (p50/p90/p99 from wrk; p99.9 and max not reported by it: max is). */
export async function runWrk(o: WrkOptions): Promise<Measurement> {
  const script = o.script ? ["-s", o.script] : [];
  const args = (secs: number) => ["-t1", `-c${o.conns}`, `-d${Math.max(1, Math.round(secs))}s`, "--latency", ...script, o.url]; // wrk takes whole seconds
  if (o.warmupSeconds ?? 1) await run("wrk", args(o.warmupSeconds ?? 1));
  const cpu = new CpuWindow(o.serverPids);
  cpu.start();
  const { stdout } = await run("wrk", args(o.seconds));
  const { cpuUs, wallUs, machineIdle } = cpu.stop();
  const total = /(\d+) requests in ([\d.]+)(\w+)/.exec(stdout);
  if (!total) throw new Error(`wrk output not understood:\n${stdout}`);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(stdout)?.[1] ?? 0);
  const sockErr = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  const errors = non2xx + (sockErr ? Number(sockErr[1]) + Number(sockErr[2]) + Number(sockErr[3]) + Number(sockErr[4]) : 0);
  const pct = (p: string) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, "m").exec(stdout);
    return m ? round3(toMs(m[1]!, m[2]!)) : -1;
  };
  const maxM = /Latency\s+[\d.]+\w+\s+[\d.]+\w+\s+([\d.]+)(us|ms|s|m)/.exec(stdout);
  const ok = Number(total[1]) - non2xx;
  const secs = toMs(total[2]!, total[3]!) / 1000;
  return {
    ops: ok,
    errors,
    opsPerSec: Math.round(ok / secs),
    latency: { p50: pct("50"), p90: pct("90"), p99: pct("99"), p999: -1, max: maxM ? round3(toMs(maxM[1]!, maxM[2]!)) : -1 },
    cpuUsPerOp: ok ? round3(cpuUs / ok) : 0,
    serverBusy: round3(cpuUs / wallUs),
    clientBusy: -1,
    machineIdle,
  };
}
