/**
 * Binary WebSocket framing (proto/prism/v1/frame.proto), server side.
 *
 * Client frames: `u8 kind, u8 flags, u32 request_id LE, u16 method LE`, then the
 * optional fields announced by `flags` (in bit order), then the protobuf body.
 * Server frames: `u8 kind, u8 flags(0), u32 request_id LE`, then the body.
 *
 * The TypeScript SDK keeps its own copy of this format; the proto file is the
 * shared source of truth.
 */
import { requireCjs } from "../core/require-cjs.js";
import type { MessageCodec } from "../core/methods.js";
import { prism } from "../gen/prism.js";

const protobuf = requireCjs("protobufjs/minimal.js") as typeof import("protobufjs/minimal.js");

/** Client → server kinds. */
export const REQUEST = 1;
export const CANCEL = 2;
/** Credentials for the connection's later calls (body: prism.v1.AuthFrame; method 0). */
export const AUTH = 3;

/** Server → client kinds. */
export const RESPONSE = 1;
export const ERROR = 2;
export const STREAM_MESSAGE = 3;
export const STREAM_READY = 4;
export const STREAM_END = 5;

/** Flag bits of a client frame. */
export const FLAG_TIMEOUT = 1;
export const FLAG_PRIORITY = 2;
export const FLAG_TRACEPARENT = 4;
const KNOWN_FLAGS = FLAG_TIMEOUT | FLAG_PRIORITY | FLAG_TRACEPARENT;

export const CLIENT_HEADER_BYTES = 8;
export const SERVER_HEADER_BYTES = 6;

/** The u8 priority field, by value (0 is the most important). */
export const PRIORITIES = ["critical", "high", "normal", "low"] as const;

/**
 * A reusable parser for client frame headers: one instance per connection,
 * overwritten by every `parse` (frames are handled synchronously one at a time,
 * so no per-frame object is allocated).
 */
export class FrameHeader {
  kind = 0;
  flags = 0;
  /** 0 until the id bytes were readable. */
  id = 0;
  method = 0;
  /** 0: no timeout field. */
  timeoutMs = 0;
  /** -1: no priority field. */
  priority = -1;
  traceparent: string | undefined = undefined;
  /** Where the protobuf body starts. */
  bodyOffset = 0;

  /** Reads the header of `buf`. Returns null when valid, else why not (`id` holds what could be read). */
  parse(buf: Uint8Array): string | null {
    this.id = 0;
    this.timeoutMs = 0;
    this.priority = -1;
    this.traceparent = undefined;
    const len = buf.length;
    if (len < SERVER_HEADER_BYTES) return `frame of ${len} bytes is shorter than the ${CLIENT_HEADER_BYTES}-byte header`;
    this.kind = buf[0]!;
    this.flags = buf[1]!;
    this.id = (buf[2]! | (buf[3]! << 8) | (buf[4]! << 16) | (buf[5]! << 24)) >>> 0;
    if (this.kind !== REQUEST && this.kind !== CANCEL && this.kind !== AUTH) return `unknown frame kind ${this.kind} (1 = REQUEST, 2 = CANCEL, 3 = AUTH)`;
    if (len < CLIENT_HEADER_BYTES) {
      // A CANCEL needs only the id; tolerate clients that omit the method.
      if (this.kind === CANCEL && this.flags === 0) {
        this.method = 0;
        this.bodyOffset = len;
        return null;
      }
      return `frame of ${len} bytes is shorter than the ${CLIENT_HEADER_BYTES}-byte header`;
    }
    this.method = buf[6]! | (buf[7]! << 8);
    if ((this.flags & ~KNOWN_FLAGS) !== 0) return `unknown flag bits 0x${(this.flags & ~KNOWN_FLAGS).toString(16)}`;
    let off = CLIENT_HEADER_BYTES;
    if (this.flags & FLAG_TIMEOUT) {
      if (off + 4 > len) return "frame ends inside the timeout_ms field";
      this.timeoutMs = (buf[off]! | (buf[off + 1]! << 8) | (buf[off + 2]! << 16) | (buf[off + 3]! << 24)) >>> 0;
      off += 4;
    }
    if (this.flags & FLAG_PRIORITY) {
      if (off + 1 > len) return "frame ends inside the priority field";
      this.priority = buf[off]!;
      off += 1;
      if (this.priority >= PRIORITIES.length) return `priority ${this.priority} is not 0 (critical) .. 3 (low)`;
    }
    if (this.flags & FLAG_TRACEPARENT) {
      if (off + 1 > len) return "frame ends inside the traceparent field";
      const n = buf[off]!;
      off += 1;
      if (off + n > len) return "frame ends inside the traceparent field";
      this.traceparent = Buffer.from(buf.buffer, buf.byteOffset + off, n).toString("latin1");
      off += n;
    }
    this.bodyOffset = off;
    return null;
  }
}

const Writer = protobuf.Writer;

/**
 * A server frame with a protobuf body, built in one buffer: the 6-byte header is
 * written into the same protobufjs Writer before the message (kind and flags
 * are < 128, so their varints are one byte each; the id is fixed32 LE), and
 * `finish()` allocates and fills the frame once.
 */
export function messageFrame(kind: number, id: number, codec: MessageCodec, message: object): Uint8Array {
  const w = Writer.create().uint32(kind).uint32(0).fixed32(id);
  return codec.encode(message, w).finish();
}

/** A server frame without a body (STREAM_READY, STREAM_END). */
export function emptyFrame(kind: number, id: number): Uint8Array {
  const b = Buffer.allocUnsafe(SERVER_HEADER_BYTES);
  b[0] = kind;
  b[1] = 0;
  b.writeUInt32LE(id >>> 0, 2);
  return b;
}

/** An ERROR frame carrying a prism.v1.Status. */
export function errorFrame(id: number, code: number, message: string, reason: string): Uint8Array {
  return messageFrame(ERROR, id, prism.v1.Status as unknown as MessageCodec, { code, message, reason });
}
