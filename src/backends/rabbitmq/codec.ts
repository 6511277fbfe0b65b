/**
 * Attributes travel in one binary AMQP header (`prism-a`): AMQP field-table
 * keys are short strings (at most 255 bytes) and Prism allows longer keys,
 * so they cannot map one to one onto headers.
 *
 * Layout: u16 count, then per entry u16 key length, key, u32 value length, value (UTF-8).
 */
import type { Attributes } from "../driver.js";

export function encodeAttrs(attrs: Attributes): Buffer | undefined {
  let n = 0;
  let size = 2;
  for (const k in attrs) {
    n++;
    size += 6 + Buffer.byteLength(k) + Buffer.byteLength(attrs[k]!);
  }
  if (n === 0) return undefined;
  const out = Buffer.allocUnsafe(size);
  let pos = out.writeUInt16BE(n, 0);
  for (const k in attrs) {
    const kl = out.write(k, pos + 2);
    out.writeUInt16BE(kl, pos);
    pos += 2 + kl;
    const vl = out.write(attrs[k]!, pos + 4);
    out.writeUInt32BE(vl, pos);
    pos += 4 + vl;
  }
  return out;
}

export function decodeAttrs(buf: unknown): Attributes {
  const attrs: Attributes = {};
  if (!Buffer.isBuffer(buf) || buf.length < 2) return attrs;
  const n = buf.readUInt16BE(0);
  let pos = 2;
  for (let i = 0; i < n && pos < buf.length; i++) {
    const kl = buf.readUInt16BE(pos);
    const k = buf.toString("utf8", pos + 2, pos + 2 + kl);
    pos += 2 + kl;
    const vl = buf.readUInt32BE(pos);
    attrs[k] = buf.toString("utf8", pos + 4, pos + 4 + vl);
    pos += 4 + vl;
  }
  return attrs;
}

/** A header value as a number (AMQP numbers may arrive as number, bigint or a typed {type, value}). */
export function headerNumber(v: unknown): number {
  if (typeof v === "number") return v;
  if (typeof v === "bigint") return Number(v);
  if (v && typeof v === "object" && "value" in v) return Number((v as { value: unknown }).value) || 0;
  return 0;
}
