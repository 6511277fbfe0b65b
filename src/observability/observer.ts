/**
 * The gateway observer: one object per gateway that feeds metrics, the access
 * log and traces from the Gateway's seam (src/core/gateway.ts GatewayObserver).
 *
 * Per call it allocates nothing: the start times live in plain fields of the
 * RequestContext (obsStart, obsBackendStart, obsNs; the trace span in ctx.obs),
 * the series are cached on the NamespaceRuntime by method id. Latency, codes and
 * spans are recorded when the call settles; request and response bytes and the
 * access-log line are written once per tick, after the ingress has encoded the
 * response and set ctx.bytesOut (the ingress continuation runs in the same
 * tick, before setImmediate). A scrape writes the pending batch first.
 */
import type { RequestContext } from "../core/context.js";
import type { BackendCall, GatewayObserver, PrincipalLimitName } from "../core/gateway.js";
import type { NamespaceRuntime, Router } from "../router/router.js";
import type { Span } from "@opentelemetry/api";
import { NO_BACKEND, UNKNOWN_NAMESPACE, type GatewayMetrics, type MethodSeries } from "./metrics.js";
import type { AccessLog } from "./access-log.js";
import type { Tracing } from "./tracing.js";
import { maskKey } from "../pii/mask.js";

/** A sampled access-log line, completed with the byte counts at flush. */
interface PendingLine {
  ctx: RequestContext;
  namespace: string;
  key: string | undefined;
  code: number;
  latencyMs: number;
  backendMs: number;
  span: Span | undefined;
}

export interface ObserverParts {
  router: Router;
  metrics?: GatewayMetrics;
  access?: AccessLog;
  tracing?: Tracing;
}

export class Observer implements GatewayObserver {
  private readonly router: Router;
  private readonly metrics: GatewayMetrics | undefined;
  private readonly access: AccessLog | undefined;
  private readonly tracing: Tracing | undefined;
  /** Pairs (series, ctx) whose bytes are added at flush; reused across ticks. */
  private readonly pending: (MethodSeries | RequestContext)[] = [];
  private lines: PendingLine[] = [];
  private scheduled = false;
  private readonly flushBound = () => this.flush();

  constructor(parts: ObserverParts) {
    this.router = parts.router;
    this.metrics = parts.metrics;
    this.access = parts.access;
    this.tracing = parts.tracing;
  }

  start(ctx: RequestContext): void {
    if (ctx.ingress === "mesh") return; // observed by the worker that received it
    ctx.obsStart = performance.now();
    if (this.metrics !== undefined) this.metrics.inFlightOf(ctx.ingress).value++;
    if (this.tracing !== undefined) ctx.obs = this.tracing.startCall(ctx);
  }

  backend(ctx: RequestContext, ns: NamespaceRuntime, req: any, run: BackendCall): Promise<object> {
    if (ctx.obsStart === 0) return run(ns, req, ctx);
    ctx.obsNs = ns;
    ctx.obsBackendStart = performance.now();
    // The backend call ends when the call settles (end() runs in the continuation right after it):
    // no wrapper promise per call. With tracing, the backend span times it exactly.
    const span = ctx.obs as Span | undefined;
    return span !== undefined ? this.tracing!.backend(span, ctx, ns, req, run) : run(ns, req, ctx);
  }

  end(ctx: RequestContext, req: any, code: number): void {
    const t0 = ctx.obsStart;
    if (t0 === 0) return;
    const now = performance.now();
    const latencyMs = now - t0;
    const backendMs = ctx.obsBackendStart >= 0 ? now - ctx.obsBackendStart : -1;
    const admin = ctx.method.admin !== undefined;
    let rt = ctx.obsNs as NamespaceRuntime | undefined;
    if (rt === undefined && !admin) {
      const name = req?.namespace;
      if (typeof name === "string" && name !== "") rt = this.router.get(name);
    }
    const metrics = this.metrics;
    let s: MethodSeries | undefined;
    if (metrics !== undefined) {
      s = rt !== undefined ? metrics.seriesOf(rt, ctx.method) : metrics.series(admin ? undefined : UNKNOWN_NAMESPACE, NO_BACKEND, ctx.method);
      s.requests(code).value++;
      s.duration.observe(latencyMs / 1000);
      if (backendMs >= 0) s.backendDuration.observe(backendMs / 1000);
      metrics.inFlightOf(ctx.ingress).value--;
      this.pending.push(s, ctx);
    }
    const span = ctx.obs as Span | undefined;
    const access = this.access;
    if (span !== undefined || access !== undefined) {
      const namespace = admin ? undefined : rt !== undefined ? rt.name : UNKNOWN_NAMESPACE;
      if (span !== undefined) this.tracing!.endCall(span, namespace, rt?.backendType, code);
      if (access !== undefined && access.sampled()) {
        const cfg = rt?.config;
        // pii: mask (src/pii/mask.ts): the key is logged masked.
        const key = typeof req?.key === "string" && cfg?.observability?.log_keys !== false ? (cfg?.pii === "mask" ? maskKey(req.key) : (req.key as string)) : undefined;
        this.lines.push({ ctx, namespace: namespace ?? "", key, code, latencyMs, backendMs, span });
      } else if (s === undefined) return;
    } else if (s === undefined) return;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushBound);
    }
  }

  /** Request / response sizes and access-log lines of the calls that settled this tick. */
  flush(): void {
    this.scheduled = false;
    const b = this.pending;
    const n = b.length;
    if (n !== 0) {
      for (let i = 0; i < n; i += 2) {
        const s = b[i] as MethodSeries;
        const ctx = b[i + 1] as RequestContext;
        s.bytesIn.value += ctx.bytesIn;
        s.bytesOut.value += ctx.bytesOut;
      }
      b.length = 0;
    }
    const lines = this.lines;
    if (lines.length === 0) return;
    this.lines = [];
    for (const l of lines) {
      const ctx = l.ctx;
      this.access!.write({
        namespace: l.namespace,
        method: `${ctx.method.service}/${ctx.method.name}`,
        code: l.code,
        latencyMs: l.latencyMs,
        backendMs: l.backendMs,
        ingress: ctx.ingress,
        peer: ctx.peer,
        traceId: l.span !== undefined ? this.tracing!.traceIdOf(l.span) : traceIdOf(ctx.traceparent),
        bytesIn: ctx.bytesIn,
        bytesOut: ctx.bytesOut,
        key: l.key,
      });
    }
  }

  shed(namespace: string, priority: string): void {
    this.metrics?.shed(namespace, priority);
  }

  rateLimited(namespace: string): void {
    this.metrics?.rateLimited(namespace);
  }

  principalLimited(limit: PrincipalLimitName): void {
    this.metrics?.principalLimited(limit);
  }

  breakerState(namespace: string, backend: string, state: number): void {
    this.metrics?.setBreakerState(namespace, backend, state);
  }

  /** Writes what is pending (server shutdown). */
  close(): void {
    this.flush();
    this.access?.flush();
  }
}

function traceIdOf(traceparent: string | undefined): string | undefined {
  return traceparent !== undefined && traceparent.length >= 35 ? traceparent.slice(3, 35) : undefined;
}
