/**
 * One scrape for the whole gateway with `--workers N`.
 *
 * The worker that receives GET /metrics asks the primary ("prism-metrics-req");
 * the primary asks every live worker for its registry as JSON
 * ("prism-metrics-collect" → "prism-metrics-data"), aggregates them with
 * prom-client's AggregatorRegistry (counters and histograms summed, gauges by
 * each metric's aggregator) and answers the asking worker
 * ("prism-metrics-res"). A worker that does not answer within COLLECT_MS is
 * left out of that scrape (prism_scrape_workers_missing says how many).
 *
 * These messages ride the node:cluster IPC channel next to src/workers/ipc.ts's;
 * each side ignores the other's.
 */
import cluster, { type Worker } from "node:cluster";
import type { MetricObjectWithValues, MetricValue } from "prom-client";
import { requireCjs } from "../core/require-cjs.js";
import type { GatewayMetrics } from "./metrics.js";

const { AggregatorRegistry } = requireCjs("prom-client") as typeof import("prom-client");

const COLLECT_MS = 3000;

type Json = MetricObjectWithValues<MetricValue<string>>[];

type MetricsMsg =
  | { t: "prism-metrics-req"; id: number }
  | { t: "prism-metrics-collect"; id: number }
  | { t: "prism-metrics-data"; id: number; metrics: Json }
  | { t: "prism-metrics-res"; id: number; body: string; contentType: string };

export interface Scrape {
  contentType: string;
  body: string;
}

function isMetricsMsg(m: unknown): m is MetricsMsg {
  return typeof m === "object" && m !== null && typeof (m as { t?: unknown }).t === "string" && (m as { t: string }).t.startsWith("prism-metrics-");
}

/**
 * Worker side: answers the primary's collection requests from `metrics`, and
 * returns the scrape function for GET /metrics (whole-gateway text).
 */
export function workerScrape(metrics: GatewayMetrics): { scrape(): Promise<Scrape>; close(): void } {
  let nextId = 1;
  const waiting = new Map<number, (s: Scrape) => void>();
  const onMessage = (msg: unknown) => {
    if (!isMetricsMsg(msg)) return;
    if (msg.t === "prism-metrics-collect") {
      void metrics.json().then((json) => process.send?.({ t: "prism-metrics-data", id: msg.id, metrics: json } satisfies MetricsMsg));
    } else if (msg.t === "prism-metrics-res") {
      const w = waiting.get(msg.id);
      waiting.delete(msg.id);
      w?.({ contentType: msg.contentType, body: msg.body });
    }
  };
  process.on("message", onMessage);
  return {
    scrape: async () => {
      if (!process.connected) return { contentType: metrics.contentType, body: await metrics.text() };
      const id = nextId++;
      return new Promise<Scrape>((resolve) => {
        waiting.set(id, resolve);
        process.send!({ t: "prism-metrics-req", id } satisfies MetricsMsg);
      });
    },
    close: () => {
      process.off("message", onMessage);
    },
  };
}

/** Primary side: serves the workers' scrape requests. Call once, in the primary. */
export function servePrimaryMetrics(): void {
  let nextId = 1;
  const collections = new Map<number, { from: Worker; fromId: number; waiting: Set<number>; got: Json[]; timer: NodeJS.Timeout }>();

  const finish = (id: number) => {
    const c = collections.get(id);
    if (!c) return;
    collections.delete(id);
    clearTimeout(c.timer);
    const missing = c.waiting.size;
    const registry = AggregatorRegistry.aggregate(c.got);
    void registry.metrics().then((text) => {
      const body = `${text}# HELP prism_scrape_workers_missing Workers that did not answer this scrape in time.\n# TYPE prism_scrape_workers_missing gauge\nprism_scrape_workers_missing ${missing}\n`;
      if (c.from.isConnected()) c.from.send({ t: "prism-metrics-res", id: c.fromId, body, contentType: registry.contentType } satisfies MetricsMsg);
    });
  };

  cluster.on("message", (worker: Worker, msg: unknown) => {
    if (!isMetricsMsg(msg)) return;
    if (msg.t === "prism-metrics-req") {
      const id = nextId++;
      const live = Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w && w.isConnected());
      const c = { from: worker, fromId: msg.id, waiting: new Set(live.map((w) => w.id)), got: [] as Json[], timer: setTimeout(() => finish(id), COLLECT_MS) };
      collections.set(id, c);
      for (const w of live) w.send({ t: "prism-metrics-collect", id } satisfies MetricsMsg);
      if (live.length === 0) finish(id);
    } else if (msg.t === "prism-metrics-data") {
      const c = collections.get(msg.id);
      if (!c || !c.waiting.delete(worker.id)) return;
      c.got.push(msg.metrics);
      if (c.waiting.size === 0) finish(msg.id);
    }
  });
}
