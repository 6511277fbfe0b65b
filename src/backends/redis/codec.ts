/**
 * Compact binary encodings for what Redis stores next to payloads: queue and
 * stream attributes, and the PubSub envelope. Payloads stay raw bytes; no JSON.
 *
 * attributes: u16 count, then per entry u16 key length, key, u32 value length, value (UTF-8).
 * envelope:   u8 version (1), f64 publish time (ms), u8 id length, id, attributes, payload (the rest).
 */
import type { Attributes, Bytes } from "../driver.js";

const EMPTY = Buffer.alloc(0);

export function encodeAttrs(attrs: Attributes): Buffer {
  let n = 0;
  let size = 2;
  for (const k in attrs) {
    n++;
    size += 6 + Buffer.byteLength(k) + Buffer.byteLength(attrs[k]!);
  }
  if (n === 0) return EMPTY;
  const out = Buffer.allocUnsafe(size);
  writeAttrs(out, 0, attrs, n);
  return out;
}

function writeAttrs(out: Buffer, pos: number, attrs: Attributes, n: number): number {
  pos = out.writeUInt16BE(n, pos);
  for (const k in attrs) {
    const kl = out.write(k, pos + 2);
    out.writeUInt16BE(kl, pos);
    pos += 2 + kl;
    const vl = out.write(attrs[k]!, pos + 4);
    out.writeUInt32BE(vl, pos);
    pos += 4 + vl;
  }
  return pos;
}

/** Decodes attributes starting at pos; returns them and the position after. */
function readAttrs(buf: Buffer, pos: number): [Attributes, number] {
  const attrs: Attributes = {};
  if (buf.length < pos + 2) return [attrs, buf.length];
  const n = buf.readUInt16BE(pos);
  pos += 2;
  for (let i = 0; i < n; i++) {
    const kl = buf.readUInt16BE(pos);
    const k = buf.toString("utf8", pos + 2, pos + 2 + kl);
    pos += 2 + kl;
    const vl = buf.readUInt32BE(pos);
    attrs[k] = buf.toString("utf8", pos + 4, pos + 4 + vl);
    pos += 4 + vl;
  }
  return [attrs, pos];
}

export function decodeAttrs(buf: Buffer | null | undefined): Attributes {
  if (!buf || buf.length === 0) return {};
  return readAttrs(buf, 0)[0];
}

export interface Envelope {
  payload: Bytes;
  attributes: Attributes;
  messageId: string;
  publishTimeMs: number;
}

export function encodeEnvelope(payload: Bytes, attrs: Attributes, messageId: string, timeMs: number): Buffer {
  const a = encodeAttrs(attrs);
  const idLen = Buffer.byteLength(messageId);
  const head = 1 + 8 + 1 + idLen;
  const out = Buffer.allocUnsafe(head + (a.length || 2) + payload.length);
  out[0] = 1;
  out.writeDoubleBE(timeMs, 1);
  out[9] = idLen;
  out.write(messageId, 10);
  let pos = head;
  if (a.length) pos += a.copy(out, pos);
  else pos = out.writeUInt16BE(0, pos);
  out.set(payload, pos);
  return out;
}

/** null when the buffer is not an envelope this codec wrote. */
export function decodeEnvelope(buf: Buffer): Envelope | null {
  if (buf.length < 12 || buf[0] !== 1) return null;
  const timeMs = buf.readDoubleBE(1);
  const idLen = buf[9]!;
  const messageId = buf.toString("utf8", 10, 10 + idLen);
  const [attributes, pos] = readAttrs(buf, 10 + idLen);
  return { payload: buf.subarray(pos), attributes, messageId, publishTimeMs: timeMs };
}

/**
 * A Buffer view of caller bytes, without copying. ioredis sends only Buffers
 * as bytes: a plain Uint8Array would be stringified ("104,101,...").
 */
export function asBuffer(b: Bytes): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}
