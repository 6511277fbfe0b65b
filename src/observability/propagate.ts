/**
 * W3C trace context out of the process: what Prism writes into the messages
 * it sends to a backend, so the trace continues past the broker.
 *
 * With tracing on (src/observability/tracing.ts installs the source), the
 * ACTIVE context while a driver runs is Prism's backend (CLIENT) span, so a
 * message's `traceparent` names that span as its parent. With tracing off
 * nothing is installed: both functions are one undefined check, and allocate
 * nothing. This module never imports OpenTelemetry itself.
 *
 * Two carriers, on purpose:
 * - the message's Prism attributes (`withTraceAttributes`, called by the
 *   primitives, so every backend behaves alike): consumers see `traceparent`
 *   (and `tracestate`) in the delivered message's attributes and can continue
 *   the trace, as with CloudEvents' distributed-tracing extension or Dapr;
 * - the protocol's own per-message metadata (`traceHeaders`, called by the
 *   drivers whose protocol has it: NATS headers, Kafka record headers, AMQP
 *   headers, MQTT 5 user properties), where OTel-instrumented tools that read
 *   the broker directly look for it.
 */
import type { Attributes } from "../backends/driver.js";

export interface TraceHeaders {
  traceparent: string;
  /** Only when the span context has one. */
  tracestate?: string;
}

type Source = () => TraceHeaders | undefined;

let source: Source | undefined;

/** Installed by Tracing.load; cleared by its shutdown. Undefined: tracing is off. */
export function setTraceSource(fn: Source | undefined): void {
  source = fn;
}

/** The active span's W3C trace context; undefined when tracing is off or no span is active. */
export function traceHeaders(): TraceHeaders | undefined {
  return source === undefined ? undefined : source();
}

/**
 * `attrs` plus `traceparent` (and `tracestate`) of the active span, as a new
 * object; `attrs` itself when tracing is off, no span is active, or the
 * caller already set `traceparent` or `tracestate` (a caller's attributes are
 * never changed: its own trace context wins).
 */
export function withTraceAttributes(attrs: Attributes): Attributes {
  if (source === undefined || attrs.traceparent !== undefined || attrs.tracestate !== undefined) return attrs;
  const t = source();
  if (t === undefined) return attrs;
  const out: Attributes = { ...attrs, traceparent: t.traceparent };
  if (t.tracestate !== undefined) out.tracestate = t.tracestate;
  return out;
}

/** Sets `traceparent` (and `tracestate`) of the active span on a message's header map; nothing when tracing is off. */
export function putTraceHeaders(headers: Record<string, unknown>): void {
  if (source === undefined) return;
  const t = source();
  if (t === undefined) return;
  headers.traceparent = t.traceparent;
  if (t.tracestate !== undefined) headers.tracestate = t.tracestate;
}
