/**
 * Profiles Prism (`node --cpu-prof`) under the WebSocket KeyValue Get load and
 * prints the functions with the most self time. The .cpuprofile is kept
 * (open it in Chrome DevTools or speedscope for a flame graph).
 *   node dist/bench/profile.js [--seconds N] [--scenario get|http|redis|fanout|queue|queue-redis] [--top N]
 * http: wrk -t1 -c64 on the raw KeyValue GET route (the http-kv-get-memstore bench scenario).
 * fanout: 1 publisher → 10 subscribers on memstore; queue: 4 producers, 4 consumers (bench/lib/queue-worker.ts).
 * --metrics on|off (memstore scenarios): server.metrics, with server.access_log_sample 0.
 */
import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { parseArgs } from "node:util";
import { prism as pb } from "../src/gen/prism.js";
import { benchKey, frame, getBody, kvMix } from "./lib/frames.js";
import { ROOT, memstoreYaml, startPrism } from "./lib/spawn.js";
import { runWsLoad, type Measurement } from "./lib/ws-load.js";
import { runWorkerLoad } from "./lib/worker-load.js";
import { runWrk } from "./lib/tools.js";
import { dropRedisPrefix } from "./lib/scenarios.js";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Self time per function (µs), heaviest first. */
export function selfTimes(p: CpuProfile): { name: string; where: string; us: number; pct: number }[] {
  const byNode = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) byNode.set(p.samples[i]!, (byNode.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0));
  const byFn = new Map<string, { name: string; where: string; us: number }>();
  let total = 0;
  for (const n of p.nodes) {
    const us = byNode.get(n.id) ?? 0;
    total += us;
    const f = n.callFrame;
    const where = f.url ? `${f.url.replace(`file://${ROOT}`, "").replace(/^.*node_modules\//, "node_modules/")}:${f.lineNumber + 1}` : "";
    const key = `${f.functionName}@${where}`;
    const e = byFn.get(key) ?? { name: f.functionName || "(anonymous)", where, us: 0 };
    e.us += us;
    byFn.set(key, e);
  }
  return [...byFn.values()].sort((a, b) => b.us - a.us).map((e) => ({ ...e, pct: Math.round((e.us / total) * 1000) / 10 }));
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: "string" }, scenario: { type: "string" }, top: { type: "string" }, metrics: { type: "string" } } });
  const dir = join(tmpdir(), `prism-profile-${new Date().toISOString().replace(/[:.]/g, "-")}`);
  mkdirSync(dir, { recursive: true });
  const scenario = values.scenario ?? "get";
  const seconds = Number(values.seconds ?? 5);
  const redisUrl = process.env.PRISM_BENCH_REDIS_URL ?? "redis://127.0.0.1:6379";
  const redis = scenario === "redis" || scenario === "queue-redis";
  const ns = redis ? (scenario === "redis" ? "profredis" : `profq${process.pid}`) : "bench";
  const yaml = redis ? `namespaces:\n  - name: ${ns}\n    backend: { type: redis, url: "${redisUrl}", key_prefix: prismbench }\n` : memstoreYaml(ns, values.metrics ? { metrics: values.metrics !== "off", access_log_sample: 0 } : {});
  const p = await startPrism(yaml, { nodeArgs: ["--cpu-prof", "--cpu-prof-dir", dir] });
  const url = `ws://127.0.0.1:${p.ports.http}/v1/ws`;
  try {
    let m: Measurement;
    if (scenario === "fanout") {
      const publishFrame = frame(pb.v1.Method.PUBSUB_PUBLISH, pb.v1.PublishRequest.encode({ namespace: ns, topic: "prof", payload: Buffer.alloc(64) }).finish());
      const subscribeFrame = frame(pb.v1.Method.PUBSUB_SUBSCRIBE, pb.v1.SubscribeRequest.encode({ namespace: ns, pattern: "prof" }).finish());
      m = await runWorkerLoad({ file: new URL("./lib/pubsub-worker.js", import.meta.url), data: [{ mode: "prism", url, subscribers: 10, window: 51, publishFrame, subscribeFrame }], seconds, warmupSeconds: 1, serverPids: [p.pid] });
    } else if (scenario === "queue" || scenario === "queue-redis") {
      const data = { url, namespace: ns, queue: `prof${Date.now()}`, producers: 4, consumers: 4, window: 256, consumerDepth: 2, maxMessages: 16, waitSeconds: 1, payloadBytes: 64 };
      m = await runWorkerLoad({ file: new URL("./lib/queue-worker.js", import.meta.url), data: [data], seconds, warmupSeconds: 1, serverPids: [p.pid] });
    } else if (scenario === "http") {
      await fetch(`http://127.0.0.1:${p.ports.http}/v1/ns/${ns}/kv/${encodeURIComponent(benchKey(1))}`, { method: "PUT", body: "x".repeat(64) });
      m = await runWrk({ url: `http://127.0.0.1:${p.ports.http}/v1/ns/${ns}/kv/${encodeURIComponent(benchKey(1))}`, conns: 64, seconds, warmupSeconds: 1, serverPids: [p.pid] });
    } else {
      for (let i = 0; i < 100; i++) await fetch(`http://127.0.0.1:${p.ports.http}/v1/ns/${ns}/kv/${encodeURIComponent(benchKey(i))}`, { method: "PUT", body: "x".repeat(64) });
      const templates = redis ? Array.from({ length: 100 }, (_, i) => frame(pb.v1.Method.KV_GET, getBody(ns, benchKey(i)))) : kvMix(ns, 100, 100);
      m = await runWsLoad({ url, conns: redis ? 4 : 8, depth: redis ? 16 : 64, threads: 1, templates, seconds, serverPids: [p.pid] });
    }
    console.log(`load: ${m.opsPerSec} ops/s, ${m.cpuUsPerOp} µs CPU/op, p50 ${m.latency.p50} ms, p99 ${m.latency.p99} ms, ${m.errors} errors`);
  } finally {
    await p.stop();
    if (scenario === "queue-redis") await dropRedisPrefix(`prismbench:{${ns}}`);
  }
  const file = readdirSync(dir).find((f) => f.endsWith(".cpuprofile"));
  if (!file) throw new Error(`no .cpuprofile written in ${dir} (did prism exit cleanly on SIGTERM?)`);
  const rows = selfTimes(JSON.parse(readFileSync(join(dir, file), "utf8")) as CpuProfile).slice(0, Number(values.top ?? 25));
  console.log(`profile: ${join(dir, file)}\n\n self%   self ms  function  (location)`);
  for (const r of rows) console.log(`${r.pct.toFixed(1).padStart(5)}  ${(r.us / 1000).toFixed(0).padStart(8)}  ${r.name}  ${r.where}`);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
