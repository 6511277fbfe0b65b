/**
 * Prism's Prometheus metrics (README "Observability" lists them).
 *
 * Hot path: the observer asks `seriesOf(runtime, method)` once per call (an
 * array index on the NamespaceRuntime; the label objects are built on the
 * first call of a namespace/method only) and adds to plain number fields.
 * Backend health is collected at scrape time; event-loop delay and process
 * metrics come from prom-client's default collectors.
 */
import type { MetricObjectWithValues, MetricValue } from "prom-client";
import { requireCjs } from "../core/require-cjs.js";
import { codeName } from "../core/errors.js";
import { METHODS, type MethodDef } from "../core/methods.js";
import type { NamespaceRuntime, Router } from "../router/router.js";
import { CounterFamily, GaugeFamily, HistogramFamily, type CounterSeries, type FamilyJson, type GaugeSeries, type HistogramSeries } from "./series.js";

const { Registry, collectDefaultMetrics } = requireCjs("prom-client") as typeof import("prom-client");

/** Seconds: 100 µs … 10 s. */
export const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Label value for calls naming a namespace that is not configured (bounded cardinality: never the caller's string). */
export const UNKNOWN_NAMESPACE = "_unknown";
/** Label value for Admin calls, which have no namespace. */
export const ADMIN_NAMESPACE = "_admin";
export const NO_BACKEND = "none";

/** `KeyValue/Get`, by method id. */
const METHOD_LABEL: string[] = [];
for (const m of METHODS) METHOD_LABEL[m.id] = `${m.service}/${m.name}`;

/** The series of one namespace × method. */
export class MethodSeries {
  /** By gRPC status code. */
  private readonly byCode: (CounterSeries | undefined)[] = [];
  readonly duration: HistogramSeries;
  readonly backendDuration: HistogramSeries;
  readonly bytesIn: CounterSeries;
  readonly bytesOut: CounterSeries;

  constructor(
    private readonly metrics: GatewayMetrics,
    private readonly labels: { namespace: string; method: string; backend: string },
  ) {
    this.duration = metrics.duration.child(labels);
    this.backendDuration = metrics.backendDuration.child(labels);
    this.bytesIn = metrics.bytesIn.child(labels);
    this.bytesOut = metrics.bytesOut.child(labels);
  }

  requests(code: number): CounterSeries {
    return (this.byCode[code] ??= this.metrics.requests.child({ ...this.labels, code: codeName[code] ?? String(code) }));
  }
}

class NamespaceSeries {
  readonly methods: (MethodSeries | undefined)[] = [];
  constructor(
    readonly name: string,
    readonly backend: string,
  ) {}
}

export interface MetricsOptions {
  router: Router;
  /** process_* and nodejs_* metrics (event-loop delay, GC, memory). Default true. */
  defaultMetrics?: boolean;
}

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly requests = new CounterFamily("prism_requests_total", "Calls by namespace, method, backend and final status code (gRPC code name).").register(this.registry);
  readonly duration = new HistogramFamily(
    "prism_request_duration_seconds",
    "Time from the decoded call entering the gateway to its response (routing, policies, backend call).",
    LATENCY_BUCKETS,
  ).register(this.registry);
  readonly backendDuration = new HistogramFamily(
    "prism_backend_duration_seconds",
    "Time spent in the backend call (primitive handler + driver, or the worker owning the namespace); the difference with prism_request_duration_seconds is proxy overhead.",
    LATENCY_BUCKETS,
  ).register(this.registry);
  readonly inFlight = new GaugeFamily("prism_requests_in_flight", "Calls in progress, by ingress.").register(this.registry);
  readonly bytesIn = new CounterFamily("prism_request_bytes_total", "Request bytes received (HTTP bodies, WebSocket frames, gRPC messages).").register(this.registry);
  readonly bytesOut = new CounterFamily("prism_response_bytes_total", "Response bytes sent (HTTP bodies, WebSocket frames, gRPC messages).").register(this.registry);
  readonly shedTotal = new CounterFamily("prism_shed_total", "Calls refused by load shedding, by namespace and priority.").register(this.registry);
  readonly rateLimitedTotal = new CounterFamily("prism_rate_limited_total", "Calls refused by a namespace rate limit.").register(this.registry);
  readonly principalLimitedTotal = new CounterFamily("prism_principal_limited_total", "Calls refused by their principal's limit (server.per_principal), by limit: max_in_flight, max_long_polls, max_buffered_bytes.").register(this.registry);
  readonly breaker = new GaugeFamily("prism_circuit_breaker_state", "Circuit breaker per namespace backend: 0 closed, 1 half-open, 2 open.", "max").register(this.registry);
  private readonly backendUp = new GaugeFamily("prism_backend_up", "1 when the namespace's backend answers its health check (namespace readiness), else 0.", "min");
  private readonly backendHealthLatency = new GaugeFamily("prism_backend_health_latency_seconds", "Latency of the last backend health check.", "max");

  /** Composed patterns' own counts (cache-aside hit, miss, fill, coalesced, cache_error, fill_dropped), read from the runtimes at scrape. */
  private readonly patternEvents = new CounterFamily("prism_pattern_events_total", "Events of composed patterns by namespace, pattern and event (cache-aside: hit, miss, fill, coalesced, cache_error, fill_dropped).");

  /** Migrations in progress on this instance, read from the runtimes at scrape (src/migrations). */
  private readonly migration = new GaugeFamily(
    "prism_migration",
    "Migrations by namespace and measure: phase_<name> (1 in that phase), cutover_pct, backfill_keys, backfill_estimated_total, shadow_reads, shadow_mismatches, diff_pct, to_error_rate, to_p99_ms, from_error_rate, from_p99_ms, dual_write_errors, repairs_pending, rolled_back, rollbacks (in this migration, kept across its re-applies).",
    "max",
  );

  private readonly byNamespace = new Map<string, NamespaceSeries>();
  private readonly inFlightByIngress = new Map<string, GaugeSeries>();
  /** The last ingress asked for (a load usually arrives over one): no Map lookup per call. */
  private lastIngress = "";
  private lastInFlight: GaugeSeries | undefined = undefined;
  private readonly router: Router;
  private health: Promise<void> | undefined;
  /** Runs before each collection (the observer writes its per-tick batch, so a scrape sees every answered call). */
  beforeCollect: (() => void) | undefined = undefined;

  constructor(opts: MetricsOptions) {
    this.router = opts.router;
    // Health is probed at scrape time (once per scrape for both families).
    const probe = () => (this.health ??= this.probeHealth().finally(() => (this.health = undefined)));
    for (const fam of [this.backendUp, this.backendHealthLatency]) {
      const get = fam.get.bind(fam);
      fam.get = async () => {
        await probe();
        return get();
      };
      fam.register(this.registry);
    }
    const events = this.patternEvents;
    const getEvents = events.get.bind(events);
    events.get = async () => {
      events.reset();
      for (const rt of this.router.list()) {
        const c = rt.patternCounters;
        if (!c) continue;
        for (const [event, n] of Object.entries(c)) events.child({ namespace: rt.name, pattern: rt.resolved.pattern, event }).value = n;
      }
      return getEvents();
    };
    events.register(this.registry);
    const mig = this.migration;
    const getMig = mig.get.bind(mig);
    mig.get = async () => {
      mig.reset();
      for (const rt of this.router.list()) {
        const m = rt.migration;
        if (!m) continue;
        const set = (measure: string, v: number) => (mig.child({ namespace: rt.name, from: m.settings.from, to: m.settings.to, measure }).value = v);
        set(`phase_${m.state.phase}`, 1);
        set("rolled_back", m.state.rolledBack || m.kv?.isRolledBack ? 1 : 0);
        if (!m.kv) set("rollbacks", m.state.rollbacks ?? 0);
        if (m.kv) {
          const s = m.kv.snapshot();
          set("cutover_pct", m.kv.cutoverPct);
          const b = m.kv.backfillProgress;
          if (b) {
            set("backfill_keys", b.copied + b.skipped);
            set("backfill_estimated_total", b.estimatedTotal);
          }
          set("shadow_reads", s.shadowReads);
          set("shadow_mismatches", s.shadowMismatches);
          set("diff_pct", s.diffPct);
          set("to_error_rate", s.toErrorRate);
          set("to_p99_ms", s.toP99Ms);
          set("from_error_rate", s.fromErrorRate);
          set("from_p99_ms", s.fromP99Ms);
          set("dual_write_errors", s.dualWriteErrors);
          set("repairs_pending", s.repairsPending);
          set("rollbacks", s.rollbacks);
        }
      }
      return getMig();
    };
    mig.register(this.registry);
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 20 });
  }

  /** The series of a call. `namespace` undefined: an Admin call. */
  series(namespace: string | undefined, backend: string, m: MethodDef): MethodSeries {
    const name = namespace ?? ADMIN_NAMESPACE;
    let ns = this.byNamespace.get(name);
    if (ns === undefined || ns.backend !== backend) this.byNamespace.set(name, (ns = new NamespaceSeries(name, backend)));
    return (ns.methods[m.id] ??= new MethodSeries(this, { namespace: name, method: METHOD_LABEL[m.id] ?? m.path, backend }));
  }

  /** The series of a call that reached namespace runtime `rt`; cached on the runtime by method id. */
  seriesOf(rt: NamespaceRuntime, m: MethodDef): MethodSeries {
    let c = rt.metricSeries;
    if (c === undefined || c.owner !== this) rt.metricSeries = c = { owner: this, byMethod: [] };
    return (c.byMethod[m.id] ??= this.series(rt.name, rt.backendType, m)) as MethodSeries;
  }

  inFlightOf(ingress: string): GaugeSeries {
    if (ingress === this.lastIngress) return this.lastInFlight!;
    let g = this.inFlightByIngress.get(ingress);
    if (g === undefined) this.inFlightByIngress.set(ingress, (g = this.inFlight.child({ ingress })));
    this.lastIngress = ingress;
    return (this.lastInFlight = g);
  }

  shed(namespace: string, priority: string): void {
    this.shedTotal.child({ namespace, priority }).value++;
  }

  rateLimited(namespace: string): void {
    this.rateLimitedTotal.child({ namespace }).value++;
  }

  /** By limit name only: principals are not labels (unbounded, and not every scraper may see who calls). */
  principalLimited(limit: string): void {
    this.principalLimitedTotal.child({ limit }).value++;
  }

  /** 0 closed, 1 half-open, 2 open. */
  setBreakerState(namespace: string, backend: string, state: number): void {
    this.breaker.child({ namespace, backend }).value = state;
  }

  private async probeHealth(): Promise<void> {
    this.backendUp.reset(); // deleted namespaces drop out
    this.backendHealthLatency.reset();
    await Promise.all(
      this.router.list().map(async (ns) => {
        const labels = { namespace: ns.name, backend: ns.backendType };
        // State owned by another worker: that worker reports it (the gauges aggregate with min / max).
        if (ns.owner !== undefined) return;
        const inst = this.router.instanceOf(ns.name);
        let ok = false;
        let latencyMs = 0;
        if (inst) {
          try {
            const h = await withTimeout(inst.health(), 2000);
            ok = h.ok;
            latencyMs = h.latencyMs;
          } catch {
            ok = false;
          }
        }
        this.backendUp.child(labels).value = ok ? 1 : 0;
        this.backendHealthLatency.child(labels).value = latencyMs / 1000;
      }),
    );
  }

  /** Prometheus text exposition of this process. */
  text(): Promise<string> {
    this.beforeCollect?.();
    return this.registry.metrics();
  }

  /** This process's metrics in prom-client's JSON form (for aggregation across workers). */
  json(): Promise<MetricObjectWithValues<MetricValue<string>>[]> {
    this.beforeCollect?.();
    return this.registry.getMetricsAsJSON();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

export type { FamilyJson };

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("health check timed out")), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}
