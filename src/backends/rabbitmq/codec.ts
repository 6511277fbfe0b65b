/**
 * Attributes travel in one binary AMQP header (`prism-a`): AMQP field-table
 * keys are short strings (at most 255 bytes) and Prism allows longer keys,
 * so they cannot map one to one onto headers.
 *
 * Layout: the shared attribute table (src/backends/common/attribute-table.ts),
 * the same bytes the Redis driver stores.
 */
import type { Attributes } from "../driver.js";
import { attributeTableSize, readAttributeTable, writeAttributeTable } from "../common/attribute-table.js";

export function encodeAttrs(attrs: Attributes): Buffer | undefined {
  const size = attributeTableSize(attrs);
  if (size === 0) return undefined;
  const out = Buffer.allocUnsafe(size);
  writeAttributeTable(out, 0, attrs);
  return out;
}

export function decodeAttrs(buf: unknown): Attributes {
  if (!Buffer.isBuffer(buf) || buf.length < 2) return {};
  return readAttributeTable(buf, 0)[0];
}

/** A header value as a number (AMQP numbers may arrive as number, bigint or a typed {type, value}). */
export function headerNumber(v: unknown): number {
  if (typeof v === "number") return v;
  if (typeof v === "bigint") return Number(v);
  if (v && typeof v === "object" && "value" in v) return Number((v as { value: unknown }).value) || 0;
  return 0;
}
