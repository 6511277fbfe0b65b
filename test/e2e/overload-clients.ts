/**
 * The overload test's HTTP clients. The low-priority clients run in a worker
 * thread (this module is its script), so that the critical clients' event
 * loop, whose latencies are measured, serves 11 clients in both phases and
 * not 64 in the loaded one.
 */
import { Agent, request } from "node:http";
import { readFileSync } from "node:fs";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";

export interface Stats {
  ok: number;
  shed: number;
  other: number;
  retryAfterMissing: number;
  latencies: number[];
  otherSample: string;
}

export const newStats = (): Stats => ({ ok: 0, shed: 0, other: 0, retryAfterMissing: 0, latencies: [], otherSample: "" });

export function p99(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * 0.99))] ?? 0;
}

export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : 0;
}

export function one(agent: Agent, port: number, priority: string, key: string): Promise<{ status: number; reason: string; retryAfter: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, agent, method: "GET", path: `/v1/ns/load/kv/${key}`, headers: { "x-prism-priority": priority } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        let reason = "";
        if (res.statusCode !== 200) {
          try {
            reason = JSON.parse(Buffer.concat(chunks).toString()).error.reason;
          } catch {}
        }
        resolve({ status: res.statusCode!, reason, retryAfter: res.headers["retry-after"] as string | undefined });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

/** A closed-loop client: one call at a time until `until`. */
export async function client(agent: Agent, port: number, priority: string, until: number, stats: Stats): Promise<void> {
  let i = 0;
  while (Date.now() < until) {
    const t0 = performance.now();
    const r = await one(agent, port, priority, `k${i++ % 50}`);
    const dt = performance.now() - t0;
    if (r.status === 200 || r.status === 404) {
      // 404: the key is absent (half of them are): the call went through to Redis all the same.
      stats.ok++;
      stats.latencies.push(dt);
    } else if (r.status === 429 && r.reason === "PRISM_ERR_OVERLOADED") {
      stats.shed++;
      if (!(Number(r.retryAfter) >= 1)) stats.retryAfterMissing++;
      // A polite client backs off a little when shed (the hint says 1 s; a short pause keeps the pressure on).
      await new Promise((res) => setTimeout(res, 20));
    } else {
      stats.other++;
      stats.otherSample ||= `${r.status} ${r.reason}`;
    }
  }
}

/** Runs `count` closed-loop clients of `priority` in a worker thread until `until`; resolves to their stats. */
export function clientsInWorker(port: number, priority: string, count: number, until: number): Promise<Stats> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL(import.meta.url), { workerData: { port, priority, count, until } });
    w.once("message", (s: Stats) => resolve(s));
    w.once("error", reject);
  });
}

if (!isMainThread && workerData?.priority !== undefined) {
  const { port, priority, count, until } = workerData as { port: number; priority: string; count: number; until: number };
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  const stats = newStats();
  await Promise.all(Array.from({ length: count }, () => client(agent, port, priority, until, stats)));
  agent.destroy();
  parentPort!.postMessage(stats);
}
