/**
 * OpenTelemetry traces, off unless the standard environment asks for them:
 * on when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is
 * set or OTEL_TRACES_EXPORTER is "otlp"; off when OTEL_SDK_DISABLED=true or
 * OTEL_TRACES_EXPORTER=none. Export: OTLP/HTTP (JSON) with a batch processor;
 * the exporter and processor read the other OTEL_* variables themselves
 * (headers, timeouts, OTEL_BSP_SCHEDULE_DELAY, OTEL_SERVICE_NAME, ...).
 *
 * The OTel packages are imported only when tracing is on, so a gateway
 * without it loads nothing and creates no span objects.
 *
 * Spans: one SERVER span per call (parent: the caller's W3C traceparent from
 * gRPC metadata, the HTTP header or the WebSocket frame field), and one CLIENT
 * span per backend call, its child, active while the driver runs; its
 * context leaves the process in the messages the drivers send
 * (src/observability/propagate.ts).
 */
import type * as Api from "@opentelemetry/api";
import type { RequestContext } from "../core/context.js";
import type { NamespaceRuntime } from "../router/router.js";
import type { BackendCall } from "../core/gateway.js";
import { codeName } from "../core/errors.js";
import { setTraceSource, type TraceHeaders } from "./propagate.js";

/** Whether the environment turns tracing on. */
export function tracingEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  if ((env.OTEL_SDK_DISABLED ?? "").toLowerCase() === "true") return false;
  const exporters = (env.OTEL_TRACES_EXPORTER ?? "").toLowerCase();
  if (exporters === "none") return false;
  return !!env.OTEL_EXPORTER_OTLP_ENDPOINT || !!env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || exporters.split(",").includes("otlp");
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

let contextManagerSet = false;

export class Tracing {
  private constructor(
    private readonly api: typeof Api,
    private readonly tracer: Api.Tracer,
    private readonly provider: { shutdown(): Promise<void>; forceFlush(): Promise<void> },
  ) {}

  /** Loads the SDK and the OTLP exporter; undefined when the environment leaves tracing off. */
  static async load(env: NodeJS.ProcessEnv = process.env): Promise<Tracing | undefined> {
    if (!tracingEnabled(env)) return undefined;
    const [api, base, otlp, resources, hooks] = await Promise.all([
      import("@opentelemetry/api"),
      import("@opentelemetry/sdk-trace-base"),
      import("@opentelemetry/exporter-trace-otlp-http"),
      import("@opentelemetry/resources"),
      import("@opentelemetry/context-async-hooks"),
    ]);
    if (!contextManagerSet) {
      // Makes the backend span the active context inside the driver call (async_hooks propagation).
      api.context.setGlobalContextManager(new hooks.AsyncLocalStorageContextManager().enable());
      contextManagerSet = true;
    }
    const resource = resources
      .defaultResource()
      .merge(resources.detectResources({ detectors: [resources.envDetector] }))
      .merge(resources.resourceFromAttributes(env.OTEL_SERVICE_NAME ? {} : { "service.name": "prism" }));
    const provider = new base.BasicTracerProvider({
      resource,
      spanProcessors: [new base.BatchSpanProcessor(new otlp.OTLPTraceExporter())],
    });
    const tracing = new Tracing(api, provider.getTracer("prism", "0.1.0"), provider);
    setTraceSource(tracing.activeHeaders);
    return tracing;
  }

  /** The active span's W3C trace context (the backend span while a driver runs). */
  private readonly activeHeaders = (): TraceHeaders | undefined => {
    const sc = this.api.trace.getSpanContext(this.api.context.active());
    if (sc === undefined || !this.api.isSpanContextValid(sc)) return undefined;
    const traceparent = `00-${sc.traceId}-${sc.spanId}-${sc.traceFlags & 1 ? "01" : "00"}`;
    const ts = sc.traceState?.serialize();
    return ts ? { traceparent, tracestate: ts } : { traceparent };
  };

  /** The SERVER span of a call, child of the caller's traceparent when it sent a valid one. */
  startCall(ctx: RequestContext): Api.Span {
    const api = this.api;
    let parent = api.ROOT_CONTEXT;
    const tp = ctx.traceparent !== undefined ? TRACEPARENT.exec(ctx.traceparent) : null;
    if (tp !== null && tp[1] !== "ff") {
      parent = api.trace.setSpanContext(parent, { traceId: tp[2]!, spanId: tp[3]!, traceFlags: parseInt(tp[4]!, 16) & 1, isRemote: true });
    }
    const m = ctx.method;
    return this.tracer.startSpan(
      `prism.v1.${m.service}/${m.name}`,
      {
        kind: api.SpanKind.SERVER,
        attributes: {
          "rpc.system": ctx.ingress === "grpc" ? "grpc" : "prism",
          "rpc.service": `prism.v1.${m.service}`,
          "rpc.method": m.name,
          "prism.method": `${m.service}/${m.name}`,
          "prism.ingress": ctx.ingress,
          "client.address": ctx.peer,
        },
      },
      parent,
    );
  }

  /** Runs the backend call inside a CLIENT span (active while it runs), child of `call`. */
  async backend(call: Api.Span, ctx: RequestContext, ns: NamespaceRuntime, req: unknown, run: BackendCall): Promise<object> {
    const api = this.api;
    const m = ctx.method;
    const parent = api.trace.setSpan(api.ROOT_CONTEXT, call);
    const span = this.tracer.startSpan(
      `${ns.backendType} ${m.service}/${m.name}`,
      {
        kind: api.SpanKind.CLIENT,
        attributes: {
          "prism.namespace": ns.name,
          "prism.method": `${m.service}/${m.name}`,
          "prism.backend": ns.backendType,
          "db.system.name": ns.backendType,
          ...(ns.owner !== undefined ? { "prism.owner_worker": ns.owner } : {}),
        },
      },
      parent,
    );
    try {
      const res = await api.context.with(api.trace.setSpan(parent, span), run, undefined, ns, req, ctx);
      span.end();
      return res;
    } catch (e) {
      this.fail(span, e);
      span.end();
      throw e;
    }
  }

  /** Ends the SERVER span with the call's outcome. */
  endCall(span: Api.Span, namespace: string | undefined, backend: string | undefined, code: number): void {
    if (namespace !== undefined) span.setAttribute("prism.namespace", namespace);
    if (backend !== undefined) span.setAttribute("prism.backend", backend);
    span.setAttribute("rpc.grpc.status_code", code);
    if (code !== 0) span.setStatus({ code: this.api.SpanStatusCode.ERROR, message: codeName[code] ?? String(code) });
    span.end();
  }

  traceIdOf(span: Api.Span): string {
    return span.spanContext().traceId;
  }

  private fail(span: Api.Span, e: unknown): void {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "number") span.setAttribute("rpc.grpc.status_code", code);
    span.setStatus({ code: this.api.SpanStatusCode.ERROR, message: typeof code === "number" ? (codeName[code] ?? String(code)) : String((e as Error)?.message ?? e) });
  }

  /** Exports what is buffered and stops. */
  async shutdown(): Promise<void> {
    setTraceSource(undefined);
    await this.provider.forceFlush().catch(() => {});
    await this.provider.shutdown().catch(() => {});
  }
}
