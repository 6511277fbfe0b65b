/**
 * overload-critical-p99: what priority shedding is for, as a latency — critical
 * calls keep their unloaded latency while low-priority load at twice the hard
 * limit is shed. The same setup as test/e2e/overload.test.ts (which asserts
 * the counts: no critical call refused, every low refusal a 429 with
 * Retry-After): `prism serve --workers 1`, server.shedding max_in_flight 32,
 * capacity 60% (the event-loop signal at its default, 500 ms), KeyValue Get over HTTP/1.1
 * keep-alive against Redis (keys under a prefix unique to the run).
 *
 * Rounds alternate "critical alone" (11 closed-loop critical clients) and
 * "critical under load" (the same 11 beside 53 low-priority clients in a
 * worker thread), o.seconds each, at least 4 rounds of each, so drifts of the
 * shared machine hit both sides. Row: critical p99 under load against alone
 * (lowest p99 of the rounds per side, as the suite keeps each side's best), and
 * the ratio of the two p99s (target ≤ 2x; printed as "ratio" = alone / loaded
 * so that higher is better like every other row). Checked, or the row fails:
 * no critical call refused or failed, low calls were shed, every 429 carried
 * Retry-After.
 */
import { Agent } from "node:http";
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { client, clientsInWorker, newStats, type Stats } from "../../test/e2e/overload-clients.js";
import { round3 } from "./hist.js";
import { rssBytes } from "./proc.js";
import type { Row } from "./report.js";
import type { BenchOptions } from "./scenarios.js";
import { startPrism } from "./spawn.js";
import type { Measurement } from "./ws-load.js";

export const OVERLOAD_ID = "overload-critical-p99";
const REDIS_URL = process.env.PRISM_BENCH_REDIS_URL ?? process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const MAX_IN_FLIGHT = 32;
const CRITICAL = 11;
const LOW = 2 * MAX_IN_FLIGHT - CRITICAL;
const TARGET = 2;

function quantile(sorted: number[], q: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]! : 0;
}

function measurement(s: Stats, seconds: number): Measurement {
  const xs = [...s.latencies].sort((a, b) => a - b);
  const r = (v: number) => round3(v);
  return {
    ops: s.ok,
    errors: s.shed + s.other,
    opsPerSec: s.ok / seconds,
    latency: { p50: r(quantile(xs, 0.5)), p90: r(quantile(xs, 0.9)), p99: r(quantile(xs, 0.99)), p999: r(quantile(xs, 0.999)), max: r(xs.at(-1) ?? 0) },
    cpuUsPerOp: 0,
    serverBusy: 0,
    clientBusy: 0,
  };
}

export async function overloadCriticalP99(o: BenchOptions): Promise<Row> {
  const prefix = `prismbench-overload-${randomBytes(3).toString("hex")}`;
  const yaml = [
    "server:",
    `  shedding: { max_in_flight: ${MAX_IN_FLIGHT}, capacity_pct: 60 }`,
    "  access_log_sample: 0",
    "namespaces:",
    "  - name: load",
    "    primitives: [keyvalue]",
    `    backend: { type: redis, url: "${REDIS_URL}", key_prefix: "${prefix}" }`,
    "",
  ].join("\n");
  const p = await startPrism(yaml);
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  const port = p.ports.http!;
  try {
    // Warm-up: both priorities, unmeasured.
    await Promise.all([
      Promise.all(Array.from({ length: CRITICAL }, () => client(agent, port, "critical", Date.now() + 1000, newStats()))),
      clientsInWorker(port, "low", LOW, Date.now() + 1000),
    ]);
    const alone: Stats[] = [];
    const loaded: { crit: Stats; low: Stats }[] = [];
    const rounds = Math.max(o.rounds, 4);
    const ms = o.seconds * 1000;
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? ["alone", "loaded"] : ["loaded", "alone"];
      for (const side of order) {
        o.log(`${OVERLOAD_ID}: round ${r + 1}/${rounds} critical ${side === "alone" ? "alone" : "beside low-priority load"}`);
        const until = Date.now() + ms;
        if (side === "alone") {
          const s = newStats();
          await Promise.all(Array.from({ length: CRITICAL }, () => client(agent, port, "critical", until, s)));
          alone.push(s);
        } else {
          const crit = newStats();
          const [, low] = await Promise.all([Promise.all(Array.from({ length: CRITICAL }, () => client(agent, port, "critical", until, crit))), clientsInWorker(port, "low", LOW, until)]);
          loaded.push({ crit, low });
        }
      }
    }
    const bad: string[] = [];
    const critRefused = [...alone, ...loaded.map((l) => l.crit)].reduce((a, s) => a + s.shed + s.other, 0);
    const lowShed = loaded.reduce((a, l) => a + l.low.shed, 0);
    const lowOk = loaded.reduce((a, l) => a + l.low.ok, 0);
    const retryMissing = loaded.reduce((a, l) => a + l.low.retryAfterMissing, 0);
    if (critRefused > 0) bad.push(`${critRefused} critical calls refused or failed`);
    if (lowShed === 0) bad.push("no low-priority call was shed: the server was not saturated");
    if (retryMissing > 0) bad.push(`${retryMissing} 429s without Retry-After`);
    if (bad.length) throw new Error(`${OVERLOAD_ID}: ${bad.join("; ")}`);

    const aloneM = alone.map((s) => measurement(s, o.seconds));
    const loadedM = loaded.map((l) => measurement(l.crit, o.seconds));
    const bestOf = (ms: Measurement[]) => ms.reduce((a, b) => (b.latency.p99 < a.latency.p99 ? b : a));
    const a = bestOf(aloneM);
    const l = bestOf(loadedM);
    const p99Ratio = round3(l.latency.p99 / a.latency.p99);
    const perRound = loadedM.map((m, i) => round3(m.latency.p99 / aloneM[i]!.latency.p99));
    return {
      id: OVERLOAD_ID,
      title: `Critical KeyValue Get (HTTP, Redis) beside ${LOW} low-priority clients at 2x the hard limit (max_in_flight ${MAX_IN_FLIGHT}) vs critical alone: p99`,
      kind: "latency",
      prism: l,
      prismRssMb: Math.round((rssBytes(p.pid) / (1024 * 1024)) * 10) / 10,
      baselineName: "critical alone",
      baseline: a,
      ratio: round3(a.latency.p99 / l.latency.p99),
      addedP50Ms: round3(l.latency.p50 - a.latency.p50),
      addedP99Ms: round3(l.latency.p99 - a.latency.p99),
      target: `critical p99 under load <= ${TARGET}x alone`,
      met: p99Ratio <= TARGET,
      command: `npm run bench -- --only ${OVERLOAD_ID}`,
      note:
        `critical p99 under load / alone: ${p99Ratio}x (lowest p99 per side: ${l.latency.p99} vs ${a.latency.p99} ms; per round ${perRound.join(", ")}); ` +
        `${CRITICAL} critical closed-loop clients, ${LOW} low-priority ones in a worker thread; ${rounds} rounds per side of ${o.seconds} s, alternating; ` +
        `checked: 0 critical calls refused; low: ${lowOk} ok, ${lowShed} shed with 429 + Retry-After`,
    };
  } finally {
    agent.destroy();
    await p.stop();
    const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await r.connect();
      let cursor = "0";
      do {
        const [next, keys] = await r.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
        cursor = next;
        if (keys.length) await r.del(...keys);
      } while (cursor !== "0");
    } catch {
      // nothing was written but probes; best effort
    } finally {
      r.disconnect();
    }
  }
}
