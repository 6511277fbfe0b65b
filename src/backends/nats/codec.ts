/**
 * Message headers: Prism's metadata rides in NATS headers, the payload stays
 * raw bytes. Attributes travel in one header as a URL-encoded form
 * (`k=v&k2=v2`), so any UTF-8 key or value survives NATS header rules (ASCII,
 * no CR/LF) and header-key canonicalisation.
 */
import { headers, type MsgHdrs } from "@nats-io/transport-node";
import type { Attributes } from "../driver.js";
import type { TraceHeaders } from "../../observability/propagate.js";

export const H_ID = "Prism-Id";
export const H_TIME = "Prism-Time";
export const H_ATTRS = "Prism-Attrs";
/** The request hash of a keyed write (the *_idempotent interfaces), read back when JetStream reports a duplicate. */
export const H_IDEM = "Prism-Idem-Hash";

const NO_ATTRS: Attributes = Object.freeze({}) as Attributes;

export function encodeAttributes(attrs: Attributes): string {
  let out = "";
  for (const k in attrs) out += `${out ? "&" : ""}${encodeURIComponent(k)}=${encodeURIComponent(attrs[k]!)}`;
  return out;
}

export function decodeAttributes(s: string | undefined): Attributes {
  if (!s) return {};
  const out: Attributes = {};
  for (const part of s.split("&")) {
    const eq = part.indexOf("=");
    if (eq > 0) out[decodeURIComponent(part.slice(0, eq))] = decodeURIComponent(part.slice(eq + 1));
  }
  return out;
}

/** Headers for a message: id and time when given, attributes when any, the trace context when given. */
export function messageHeaders(id: string | undefined, timeMs: number | undefined, attrs: Attributes, trace?: TraceHeaders): MsgHdrs | undefined {
  let h: MsgHdrs | undefined;
  if (trace !== undefined) {
    h = headers();
    h.set("traceparent", trace.traceparent);
    if (trace.tracestate !== undefined) h.set("tracestate", trace.tracestate);
  }
  if (id !== undefined) (h ??= headers()).set(H_ID, id);
  if (timeMs !== undefined) (h ??= headers()).set(H_TIME, String(timeMs));
  const a = encodeAttributes(attrs);
  if (a) (h ??= headers()).set(H_ATTRS, a);
  return h;
}

export function attributesOf(h: MsgHdrs | undefined): Attributes {
  const a = h?.get(H_ATTRS);
  return a ? decodeAttributes(a) : { ...NO_ATTRS };
}
