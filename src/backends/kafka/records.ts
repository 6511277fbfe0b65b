/**
 * Prism attributes ↔ Kafka record headers: attribute `k` is header `a:k`
 * (UTF-8 value). Headers without the `a:` prefix belong to someone else and
 * are ignored. Payloads are the record value, raw bytes.
 */
import type { IHeaders } from "kafkajs";
import type { Attributes, Bytes } from "../driver.js";

const EMPTY = Buffer.alloc(0);

export function toHeaders(attrs: Attributes): IHeaders | undefined {
  let h: IHeaders | undefined;
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
