/**
 * Baselines that talk to a backend directly from the bench process, with the
 * same number of requests in flight as the Prism scenario: ioredis GET (one
 * auto-pipelined connection, as Prism's redis driver uses) and pg SELECT
 * through a pool (Prism's postgres driver default: 10).
 */
import { readdirSync, readFileSync } from "node:fs";
import { Redis } from "ioredis";
import pg from "pg";
import { CpuWindow } from "./proc.js";
import { latencyOf, newHistogram, round3 } from "./hist.js";
import { sleep, type Measurement } from "./ws-load.js";

/** Pids of processes whose command name is `comm` (e.g. all postgres backends). */
export function pidsByComm(comm: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/comm`, "utf8").trim() === comm) out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

type Op = (i: number) => Promise<unknown>;

/** Closed loop: `inflight` concurrent chains of `op` for warm-up then `seconds`. */
async function closedLoop(op: Op, inflight: number, seconds: number, warmupSeconds: number, serverPids: () => number[]): Promise<Measurement> {
  const hist = newHistogram();
  let phase = 0;
  let ops = 0;
  let errors = 0;
  let n = 0;
  const chain = async () => {
    while (phase < 2) {
      const t = performance.now();
      let ok = true;
      try {
        await op(n++);
      } catch {
        ok = false;
      }
      if (phase === 1) {
        hist.recordValue(Math.max(1, Math.round((performance.now() - t) * 1000)));
        if (ok) ops++;
        else errors++;
      }
    }
  };
  const chains = Array.from({ length: inflight }, chain);
  await sleep(warmupSeconds * 1000);
  const cpu = new CpuWindow(serverPids());
  const client0 = process.cpuUsage();
  cpu.start();
  phase = 1;
  await sleep(seconds * 1000);
  phase = 2;
  const { cpuUs, wallUs, machineIdle } = cpu.stop();
  const cu = process.cpuUsage(client0);
  await Promise.all(chains);
  const m: Measurement = {
    ops,
    errors,
    opsPerSec: Math.round(ops / (wallUs / 1e6)),
    latency: latencyOf(hist),
    cpuUsPerOp: ops ? round3(cpuUs / ops) : 0,
    serverBusy: round3(cpuUs / wallUs),
    clientBusy: round3((cu.user + cu.system) / wallUs),
    machineIdle,
  };
  hist.destroy();
  return m;
}

export async function redisPid(url: string): Promise<number> {
  const r = new Redis(url, { lazyConnect: true });
  await r.connect();
  const info = await r.info("server");
  r.disconnect();
  return Number(/process_id:(\d+)/.exec(info)?.[1] ?? 0);
}

export async function runRedisDirect(o: { url: string; keys: string[]; inflight: number; seconds: number; warmupSeconds?: number }): Promise<Measurement> {
  const r = new Redis(o.url, { enableAutoPipelining: true });
  try {
    const value = Buffer.alloc(64, 0x61);
    for (const k of o.keys) await r.set(k, value);
    const pid = await redisPid(o.url);
    const keys = o.keys;
    return await closedLoop((i) => r.getBuffer(keys[i % keys.length]!), o.inflight, o.seconds, o.warmupSeconds ?? 1, () => [pid]);
  } finally {
    r.disconnect();
  }
}

export async function runPgDirect(o: { url: string; keys: string[]; inflight: number; poolMax: number; seconds: number; warmupSeconds?: number }): Promise<Measurement> {
  const pool = new pg.Pool({ connectionString: o.url, max: o.poolMax });
  try {
    await pool.query("CREATE TABLE IF NOT EXISTS prism_bench_kv (k text PRIMARY KEY, v bytea NOT NULL)");
    const value = Buffer.alloc(64, 0x61);
    for (const k of o.keys) await pool.query("INSERT INTO prism_bench_kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = $2", [k, value]);
    const keys = o.keys;
    const q = { name: "prism_bench_get", text: "SELECT v FROM prism_bench_kv WHERE k = $1", values: [""] };
    return await closedLoop((i) => pool.query({ ...q, values: [keys[i % keys.length]!] }), o.inflight, o.seconds, o.warmupSeconds ?? 1, () => pidsByComm("postgres"));
  } finally {
    await pool.end();
  }
}
