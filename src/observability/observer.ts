/**
 * The gateway observer: one object per gateway that feeds metrics, the access
 * log and traces from the Gateway's seam (src/core/gateway.ts GatewayObserver).
 *
 * Per call it allocates one CallState (no closures). Latency, codes and spans
 * are recorded when the call settles; response bytes and the access-log line
 * are written once per tick, after the ingress has encoded the response and
 * set ctx.bytesOut (the ingress continuation runs in the same tick, before
 * setImmediate).
 */
import type { RequestContext } from "../core/context.js";
import type { BackendCall, GatewayObserver } from "../core/gateway.js";
import type { NamespaceRuntime, Router } from "../router/router.js";
import type { Span } from "@opentelemetry/api";
import { NO_BACKEND, UNKNOWN_NAMESPACE, type GatewayMetrics, type MethodSeries } from "./metrics.js";
import type { GaugeSeries } from "./series.js";
import type { AccessLog } from "./access-log.js";
import type { Tracing } from "./tracing.js";

class CallState {
  t0 = performance.now();
  /** -1: the call did not reach a backend. */
  backendStart = -1;
  backendMs = -1;
  latencyMs = 0;
  code = 0;
  namespace = "";
  key: string | undefined = undefined;
  ns: NamespaceRuntime | undefined = undefined;
  series: MethodSeries | undefined = undefined;
  inFlight: GaugeSeries | undefined = undefined;
  span: Span | undefined = undefined;
  logged = false;
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
  private pending: RequestContext[] = [];
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
    const st = new CallState();
    const metrics = this.metrics;
    if (metrics !== undefined) {
      const g = (st.inFlight = metrics.inFlightOf(ctx.ingress));
      g.value++;
    }
    if (this.tracing !== undefined) st.span = this.tracing.startCall(ctx);
    ctx.obs = st;
  }

  backend(ctx: RequestContext, ns: NamespaceRuntime, req: any, run: BackendCall): Promise<object> {
    const st = ctx.obs as CallState;
    st.ns = ns;
    st.backendStart = performance.now();
    // The backend call ends when the call settles (end() runs in the continuation right after it):
    // no wrapper promise per call. With tracing, the backend span times it exactly.
    return st.span !== undefined ? this.tracing!.backend(st.span, ctx, ns, req, run) : run(ns, req, ctx);
  }

  end(ctx: RequestContext, req: any, code: number): void {
    const st = ctx.obs as CallState | undefined;
    if (st === undefined) return;
    const now = performance.now();
    st.latencyMs = now - st.t0;
    if (st.backendStart >= 0) st.backendMs = now - st.backendStart;
    st.code = code;
    const admin = ctx.method.admin !== undefined;
    let rt = st.ns;
    if (rt === undefined && !admin) {
      const name = req?.namespace;
      if (typeof name === "string" && name !== "") rt = this.router.get(name);
    }
    const namespace = admin ? undefined : rt !== undefined ? rt.name : UNKNOWN_NAMESPACE;
    const backend = rt !== undefined ? rt.backendType : NO_BACKEND;
    const metrics = this.metrics;
    if (metrics !== undefined) {
      const s = (st.series = metrics.series(namespace, backend, ctx.method));
      s.requests(code).value++;
      s.duration.observe(st.latencyMs / 1000);
      if (st.backendMs >= 0) s.backendDuration.observe(st.backendMs / 1000);
      st.inFlight!.value--;
    }
    if (st.span !== undefined) this.tracing!.endCall(st.span, namespace, rt?.backendType, code);
    const access = this.access;
    if (access !== undefined && access.sampled()) {
      st.logged = true;
      st.namespace = namespace ?? "";
      if (typeof req?.key === "string" && rt?.config.observability?.log_keys !== false) st.key = req.key;
    } else if (metrics === undefined) return;
    this.pending.push(ctx);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushBound);
    }
  }

  /** Response sizes and access-log lines of the calls that settled this tick. */
  flush(): void {
    this.scheduled = false;
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    for (const ctx of batch) {
      const st = ctx.obs as CallState;
      const s = st.series;
      if (s !== undefined) {
        s.bytesIn.value += ctx.bytesIn;
        s.bytesOut.value += ctx.bytesOut;
      }
      if (st.logged) {
        this.access!.write({
          namespace: st.namespace,
          method: `${ctx.method.service}/${ctx.method.name}`,
          code: st.code,
          latencyMs: st.latencyMs,
          backendMs: st.backendMs,
          ingress: ctx.ingress,
          peer: ctx.peer,
          traceId: st.span !== undefined ? this.tracing!.traceIdOf(st.span) : traceIdOf(ctx.traceparent),
          bytesIn: ctx.bytesIn,
          bytesOut: ctx.bytesOut,
          key: st.key,
        });
      }
    }
  }

  shed(namespace: string, priority: string): void {
    this.metrics?.shed(namespace, priority);
  }

  rateLimited(namespace: string): void {
    this.metrics?.rateLimited(namespace);
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
