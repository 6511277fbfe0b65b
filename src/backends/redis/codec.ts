/**
 * Compact binary encodings for what Redis stores next to payloads: queue and
 * stream attributes, and the PubSub envelope. Payloads stay raw bytes; no JSON.
 *
 * attributes: the shared attribute table (src/backends/common/attribute-table.ts).
 * envelope:   u8 version (1), f64 publish time (ms), u8 id length, id, attribute table, payload (the rest).
 */
import type { Attributes, Bytes } from "../driver.js";
import { attributeTableSize, readAttributeTable, writeAttributeTable } from "../common/attribute-table.js";

const EMPTY = Buffer.alloc(0);

export function encodeAttrs(attrs: Attributes): Buffer {
  const size = attributeTableSize(attrs);
  if (size === 0) return EMPTY;
  const out = Buffer.allocUnsafe(size);
  writeAttributeTable(out, 0, attrs);
  return out;
}

export function decodeAttrs(buf: Buffer | null | undefined): Attributes {
  if (!buf || buf.length === 0) return {};
  return readAttributeTable(buf, 0)[0];
}

export interface Envelope {
  payload: Bytes;
  attributes: Attributes;
  messageId: string;
  publishTimeMs: number;
}

export function encodeEnvelope(payload: Bytes, attrs: Attributes, messageId: string, timeMs: number): Buffer {
  const idLen = Buffer.byteLength(messageId);
  const head = 1 + 8 + 1 + idLen;
  const out = Buffer.allocUnsafe(head + (attributeTableSize(attrs) || 2) + payload.length);
  out[0] = 1;
  out.writeDoubleBE(timeMs, 1);
  out[9] = idLen;
  out.write(messageId, 10);
  out.set(payload, writeAttributeTable(out, head, attrs));
  return out;
}

/** null when the buffer is not an envelope this codec wrote. */
export function decodeEnvelope(buf: Buffer): Envelope | null {
  if (buf.length < 12 || buf[0] !== 1) return null;
  const timeMs = buf.readDoubleBE(1);
  const idLen = buf[9]!;
  const messageId = buf.toString("utf8", 10, 10 + idLen);
  const [attributes, pos] = readAttributeTable(buf, 10 + idLen);
  return { payload: buf.subarray(pos), attributes, messageId, publishTimeMs: timeMs };
}

/**
 * A Buffer view of caller bytes, without copying. ioredis sends only Buffers
 * as bytes: a plain Uint8Array would be stringified ("104,101,...").
 */
export function asBuffer(b: Bytes): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}
