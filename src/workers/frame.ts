/**
 * Mesh framing: the public WebSocket frame format (proto/prism/v1/frame.proto)
 * on a stream socket, each frame preceded by a u32 little-endian length.
 *
 *   u32 length | request:  u8 kind, u8 flags, u32 id, u16 method, [u32 timeout_ms], [u8 priority], [u8 len + traceparent], body
 *              | server:   u8 kind, u8 flags, u32 id, body
 */
import type { Priority } from "../core/context.js";

export const REQ_REQUEST = 1;
export const REQ_CANCEL = 2;

export const RES_RESPONSE = 1;
export const RES_ERROR = 2;
export const RES_STREAM_MESSAGE = 3;
export const RES_STREAM_READY = 4;
export const RES_STREAM_END = 5;

export const FLAG_TIMEOUT = 1;
export const FLAG_PRIORITY = 2;
export const FLAG_TRACEPARENT = 4;

export const PRIORITIES: readonly Priority[] = ["critical", "high", "normal", "low"];

const EMPTY = new Uint8Array(0);

/** A length-prefixed request frame. */
export function encodeRequest(
  kind: number,
  id: number,
  method: number,
  body: Uint8Array = EMPTY,
  timeoutMs = 0,
  priority: Priority | undefined = undefined,
  traceparent: string | undefined = undefined,
): Buffer {
  let flags = 0;
  let extra = 0;
  if (timeoutMs > 0) {
    flags |= FLAG_TIMEOUT;
    extra += 4;
  }
  if (priority !== undefined) {
    flags |= FLAG_PRIORITY;
    extra += 1;
  }
  if (traceparent !== undefined) {
    flags |= FLAG_TRACEPARENT;
    extra += 1 + traceparent.length;
  }
  const len = 8 + extra + body.length;
  const b = Buffer.allocUnsafe(4 + len);
  b.writeUInt32LE(len, 0);
  b[4] = kind;
  b[5] = flags;
  b.writeUInt32LE(id, 6);
  b.writeUInt16LE(method, 10);
  let o = 12;
  if (flags & FLAG_TIMEOUT) {
    b.writeUInt32LE(Math.min(timeoutMs, 0xffffffff), o);
    o += 4;
  }
  if (flags & FLAG_PRIORITY) b[o++] = PRIORITIES.indexOf(priority!);
  if (flags & FLAG_TRACEPARENT) {
    b[o++] = traceparent!.length;
    o += b.write(traceparent!, o, "latin1");
  }
  b.set(body, o);
  return b;
}

/** A length-prefixed server frame. */
export function encodeServerFrame(kind: number, id: number, body: Uint8Array = EMPTY): Buffer {
  const len = 6 + body.length;
  const b = Buffer.allocUnsafe(4 + len);
  b.writeUInt32LE(len, 0);
  b[4] = kind;
  b[5] = 0;
  b.writeUInt32LE(id, 6);
  b.set(body, 10);
  return b;
}

/**
 * Splits a byte stream into frames (without their length prefix). Chunks are
 * kept as received and only copied when a frame spans several of them.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private size = 0;

  constructor(
    private readonly maxFrameBytes: number,
    private readonly onFrame: (frame: Buffer) => void,
  ) {}

  /** Feeds bytes; throws when a frame announces more than maxFrameBytes (the stream is then unusable). */
  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size >= 4) {
      const head = this.chunks[0]!.length >= 4 ? this.chunks[0]! : this.take(4, false);
      const len = head.readUInt32LE(0);
      if (len > this.maxFrameBytes) throw new Error(`mesh frame of ${len} bytes exceeds ${this.maxFrameBytes}`);
      if (this.size < 4 + len) return;
      const all = this.take(4 + len, true);
      this.onFrame(all.subarray(4));
    }
  }

  /** The first n bytes (consumed when `consume`). */
  private take(n: number, consume: boolean): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (consume) {
        if (first.length === n) this.chunks.shift();
        else this.chunks[0] = first.subarray(n);
      }
    } else {
      out = Buffer.allocUnsafe(n);
      let o = 0;
      let i = 0;
      while (o < n) {
        const c = this.chunks[i]!;
        const k = Math.min(c.length, n - o);
        c.copy(out, o, 0, k);
        o += k;
        if (consume) {
          if (k === c.length) {
            this.chunks.shift();
            continue;
          }
          this.chunks[0] = c.subarray(k);
        } else i++;
      }
    }
    if (consume) this.size -= n;
    return out;
  }
}

/** Corks a socket on the first write of a tick and uncorks at the end of it: a burst of frames is one write. */
export class TickWriter {
  private corked = false;
  constructor(private readonly socket: { cork(): void; uncork(): void; write(b: Uint8Array): boolean; destroyed: boolean }) {}

  write(b: Uint8Array): void {
    if (this.socket.destroyed) return;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.flush);
    }
    this.socket.write(b);
  }

  private readonly flush = (): void => {
    this.corked = false;
    this.socket.uncork();
  };
}
