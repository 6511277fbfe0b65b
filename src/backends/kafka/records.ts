/**
 * Prism attributes ↔ Kafka record headers: attribute `k` is header `a:k`
 * (UTF-8 value). Headers without the `a:` prefix belong to someone else and
 * are ignored. Payloads are the record value, raw bytes. With tracing on, a
 * record also carries the W3C `traceparent` / `tracestate` headers (the names
 * OTel Kafka instrumentations read); see src/observability/propagate.ts.
 */
import type { IHeaders } from "kafkajs";
import type { Attributes, Bytes } from "../driver.js";
import { traceHeaders } from "../../observability/propagate.js";

const EMPTY = Buffer.alloc(0);

/** Record headers for a record sent now: the attributes, and the active trace context when tracing is on. */
export function toHeaders(attrs: Attributes): IHeaders | undefined {
  const trace = traceHeaders();
  let h: IHeaders | undefined = trace === undefined ? undefined : { ...trace };
  for (const k in attrs) (h ??= {})[`a:${k}`] = attrs[k]!;
  return h;
}

export function fromHeaders(h: Record<string, Buffer | Buffer[] | string | undefined> | undefined): Attributes {
  const attrs: Attributes = {};
  if (!h) return attrs;
  for (const k in h) {
    if (!k.startsWith("a:")) continue;
    const v = h[k];
    const one = Array.isArray(v) ? v[v.length - 1] : v;
    if (one !== undefined) attrs[k.slice(2)] = one.toString();
  }
  return attrs;
}

export function asBuffer(b: Bytes): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

export function valueOf(v: Buffer | null): Buffer {
  return v ?? EMPTY;
}
