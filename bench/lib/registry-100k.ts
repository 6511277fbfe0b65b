/**
 * Multicast Registry at 100K members (issue 13): register 100,000 members
 * through the TypeScript SDK over WebSocket, enumerate them all (pages of
 * 1,000), enumerate a 10% filter, multicast to 10% and to everyone, and print
 * the time of each step with Prism's CPU. Two registries: memstore (the
 * pattern's own cost) and Redis (a real backend; messaging Redis pub/sub, and
 * the durable variant with delivery: queue on Redis).
 *
 * No same-run baseline: the point is the order of magnitude at 100K and that
 * every member is enumerated and counted exactly once.
 */
import { connect } from "@prism/client";
import { cpuMicros, rssBytes } from "./proc.js";
import { startPrism } from "./spawn.js";
import { dropRedisPrefix } from "./scenarios.js";
import { round3 } from "./hist.js";
import type { Row } from "./report.js";
import type { BenchOptions } from "./scenarios.js";
import type { Measurement } from "./ws-load.js";

const REDIS_URL = process.env.PRISM_BENCH_REDIS_URL ?? "redis://127.0.0.1:6379";
const MEMBERS = Number(process.env.PRISM_BENCH_REGISTRY_MEMBERS ?? 100_000);
const ZONES = 10;
const IN_FLIGHT = 512;

interface Variant {
  id: string;
  label: string;
  yaml: (ns: string) => string;
  cleanup?: (ns: string) => Promise<void>;
}

const VARIANTS: Variant[] = [
  {
    id: "registry-100k-memstore",
    label: "registry memstore, messaging memstore pubsub",
    yaml: (ns) => `namespaces:\n  - name: ${ns}\n    pattern: multicast-registry\n    slots:\n      registry: { type: memstore }\n      messaging: { type: memstore }\n`,
  },
  {
    id: "registry-100k-redis",
    label: "registry redis, messaging redis pubsub",
    yaml: (ns) => `namespaces:\n  - name: ${ns}\n    pattern: multicast-registry\n    slots:\n      registry: { type: redis, url: "${REDIS_URL}", key_prefix: prismbench${ns} }\n      messaging: { type: redis, url: "${REDIS_URL}", key_prefix: prismbench${ns}ps }\n`,
    cleanup: (ns) => dropRedisPrefix(`prismbench${ns}`),
  },
  {
    id: "registry-100k-redis-queue",
    label: "registry redis, messaging redis queue (delivery: queue)",
    yaml: (ns) =>
      `namespaces:\n  - name: ${ns}\n    pattern: multicast-registry\n    options: { delivery: queue }\n    slots:\n      registry: { type: redis, url: "${REDIS_URL}", key_prefix: prismbench${ns} }\n      messaging: { type: redis, url: "${REDIS_URL}", key_prefix: prismbench${ns}q }\n`,
    cleanup: async (ns) => {
      await dropRedisPrefix(`prismbench${ns}`);
      await dropRedisPrefix(`prismbench${ns}q`);
    },
  },
];

async function timed<T>(pid: number, fn: () => Promise<T>): Promise<{ value: T; ms: number; cpuMs: number }> {
  const c0 = cpuMicros(pid);
  const t0 = performance.now();
  const value = await fn();
  return { value, ms: Math.round(performance.now() - t0), cpuMs: Math.round((cpuMicros(pid) - c0) / 1000) };
}

async function runVariant(o: BenchOptions, v: Variant): Promise<Row> {
  const ns = `benchreg${process.pid}${Date.now().toString(36)}`;
  const p = await startPrism(v.yaml(ns));
  try {
    const prism = await connect(`ws://127.0.0.1:${p.ports.http}/v1/ws`, { timeoutMs: 600_000 });
    try {
      const r = prism.registry(ns);
      o.log(`${v.id}: registering ${MEMBERS} members`);
      const reg = await timed(p.pid, async () => {
        let next = 0;
        await Promise.all(
          Array.from({ length: IN_FLIGHT }, async () => {
            for (let i = next++; i < MEMBERS; i = next++) await r.register(`dev-${i}`, { zone: `z${i % ZONES}`, floor: String(i % 7), type: i % 2 ? "temperature" : "humidity" });
          }),
        );
      });
      const enumerateAll = (filter: string) =>
        timed(p.pid, async () => {
          let n = 0;
          let cursor = "";
          do {
            const page = await r.enumerate(filter, { cursor, limit: 1000 });
            n += page.members.length;
            cursor = page.nextCursor;
          } while (cursor !== "");
          return n;
        });
      o.log(`${v.id}: enumerating`);
      const all = await enumerateAll("");
      const tenth = await enumerateAll('zone = "z3"');
      o.log(`${v.id}: multicasting`);
      const mc10 = await timed(p.pid, () => r.multicast('zone = "z3"', "hello"));
      const mcAll = await timed(p.pid, () => r.multicast("", "hello"));
      const ok = all.value === MEMBERS && tenth.value === MEMBERS / ZONES && mc10.value.delivered === MEMBERS / ZONES && mcAll.value.delivered === MEMBERS && mcAll.value.failed === 0;
      const perSec = (n: number, ms: number) => Math.round(n / Math.max(ms / 1000, 1e-3));
      const m: Measurement = {
        ops: MEMBERS,
        errors: ok ? 0 : 1,
        opsPerSec: perSec(MEMBERS, mcAll.ms),
        latency: { p50: -1, p90: -1, p99: -1, p999: -1, max: -1 },
        cpuUsPerOp: round3((mcAll.cpuMs * 1000) / MEMBERS),
        serverBusy: round3(mcAll.cpuMs / Math.max(mcAll.ms, 1)),
        clientBusy: -1,
      };
      return {
        id: v.id,
        title: `Multicast Registry, ${MEMBERS} members, WebSocket, ${v.label}: register, enumerate, multicast (ops/s = members multicast per second; CPU µs/op = Prism CPU per member of the multicast to all)`,
        kind: "throughput",
        prism: m,
        prismRssMb: Math.round((rssBytes(p.pid) / (1024 * 1024)) * 10) / 10,
        baselineName: "-",
        target: `every member enumerated once and every multicast delivered to each match`,
        met: ok,
        command: `npm run bench -- --only ${v.id}`,
        note:
          `register ${MEMBERS}: ${reg.ms} ms (${perSec(MEMBERS, reg.ms)}/s, ${IN_FLIGHT} in flight, Prism CPU ${reg.cpuMs} ms); ` +
          `enumerate all (pages of 1000): ${all.ms} ms for ${all.value} members (CPU ${all.cpuMs} ms); enumerate zone = "z3": ${tenth.ms} ms for ${tenth.value} (CPU ${tenth.cpuMs} ms); ` +
          `multicast to 10%: ${mc10.ms} ms, ${mc10.value.delivered}/${mc10.value.total} delivered (CPU ${mc10.cpuMs} ms); multicast to all: ${mcAll.ms} ms, ${mcAll.value.delivered}/${mcAll.value.total} delivered, ${mcAll.value.failed} failed (CPU ${mcAll.cpuMs} ms)`,
      };
    } finally {
      await prism.close();
    }
  } finally {
    await p.stop();
    await v.cleanup?.(ns);
  }
}

export const registry100k: Record<string, (o: BenchOptions) => Promise<Row>> = Object.fromEntries(VARIANTS.map((v) => [v.id, (o: BenchOptions) => runVariant(o, v)]));
