/**
 * The binary attribute table that drivers storing attributes next to raw
 * payloads share (Redis values and envelopes, the RabbitMQ `prism-a` header):
 *
 *   u16 count, then per entry: u16 key length, key, u32 value length, value (UTF-8).
 *
 * No JSON: one allocation to encode, no parse of the payload around it.
 */
import type { Attributes } from "../driver.js";

/** Encoded size of `attrs`; 0 when there are none (callers then store nothing, or an empty table). */
export function attributeTableSize(attrs: Attributes): number {
  let size = 2;
  let any = false;
  for (const k in attrs) {
    any = true;
    size += 6 + Buffer.byteLength(k) + Buffer.byteLength(attrs[k]!);
  }
  return any ? size : 0;
}

/** Writes the table at `pos` (`out` has attributeTableSize(attrs) bytes there, at least 2); returns the position after. */
export function writeAttributeTable(out: Buffer, pos: number, attrs: Attributes): number {
  const start = pos;
  let n = 0;
  pos += 2;
  for (const k in attrs) {
    n++;
    const kl = out.write(k, pos + 2);
    out.writeUInt16BE(kl, pos);
    pos += 2 + kl;
    const vl = out.write(attrs[k]!, pos + 4);
    out.writeUInt32BE(vl, pos);
    pos += 4 + vl;
  }
  out.writeUInt16BE(n, start);
  return pos;
}

/**
 * Reads a table at `pos`; returns the attributes and the position after.
 * A buffer that ends before a table starts reads as none (position: the end);
 * one that ends inside a table stops at its end.
 */
export function readAttributeTable(buf: Buffer, pos: number): [Attributes, number] {
  const attrs: Attributes = {};
  if (buf.length < pos + 2) return [attrs, buf.length];
  const n = buf.readUInt16BE(pos);
  pos += 2;
  for (let i = 0; i < n && pos < buf.length; i++) {
    const kl = buf.readUInt16BE(pos);
    const k = buf.toString("utf8", pos + 2, pos + 2 + kl);
    pos += 2 + kl;
    const vl = buf.readUInt32BE(pos);
    attrs[k] = buf.toString("utf8", pos + 4, pos + 4 + vl);
    pos += 4 + vl;
  }
  return [attrs, pos];
}
