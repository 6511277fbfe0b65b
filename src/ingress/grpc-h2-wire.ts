/**
 * The gRPC-over-HTTP/2 wire pieces of the node:http2 gRPC server
 * (src/ingress/grpc-h2.ts), per grpc/doc/PROTOCOL-HTTP2.md:
 *
 * - Length-Prefixed-Message framing: 1-byte compressed flag, u32 BE length,
 *   message; reassembled across DATA chunks (no copy when a message lies in one chunk);
 * - the grpc-timeout header → milliseconds;
 * - grpc-message percent-encoding, and precomputed response headers / trailers;
 * - request decompression (grpc-encoding gzip or deflate); responses go uncompressed,
 *   which the protocol allows whatever the client accepts.
 */
import { constants, type ServerHttp2Stream } from "node:http2";
import { gunzip, gunzipSync, inflate, inflateSync, type InputType, type ZlibOptions } from "node:zlib";
import { requireCjs } from "../core/require-cjs.js";
import { Code, errors, PrismError } from "../core/errors.js";
import type { MessageCodec } from "../core/methods.js";

const protobuf = requireCjs("protobufjs/minimal.js") as typeof import("protobufjs/minimal.js");

const { HTTP2_HEADER_STATUS, HTTP2_HEADER_CONTENT_TYPE } = constants;

export const PREFIX_BYTES = 5;

/** HEADERS of every successful response (never mutated: node:http2 copies what it sends). */
export const RESPONSE_HEADERS = Object.freeze({
  [HTTP2_HEADER_STATUS]: 200,
  [HTTP2_HEADER_CONTENT_TYPE]: "application/grpc+proto",
});
/** Trailers of a call that succeeded. */
export const OK_TRAILERS = Object.freeze({ "grpc-status": "0" });
/** respond() options: trailers follow the body; no Date header (gRPC does not use it). */
export const WITH_TRAILERS = Object.freeze({ waitForTrailers: true, sendDate: false });
export const TRAILERS_ONLY = Object.freeze({ endStream: true, sendDate: false });

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const NEEDS_ENCODING = /[^\x20-\x24\x26-\x7E]/;

/**
 * grpc-message as the spec wants it: UTF-8, with '%' and every byte outside
 * 0x20-0x7E percent-encoded. Lone surrogates (a client string cut in the
 * middle of a pair and quoted in an error) become U+FFFD instead of throwing.
 */
export function percentEncode(s: string): string {
  if (!NEEDS_ENCODING.test(s)) return s;
  const utf8 = Buffer.from(s.replace(LONE_SURROGATE, "\uFFFD"), "utf8");
  let out = "";
  for (let i = 0; i < utf8.length; i++) {
    const b = utf8[i]!;
    out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b < 16 ? "0" : ""}${b.toString(16).toUpperCase()}`;
  }
  return out;
}

/** Trailers (or the trailers-only HEADERS, `headers` true) carrying a PrismError's status and reason. */
export function statusTrailers(e: PrismError, headers: boolean, extra?: Record<string, string>): Record<string, string | number> {
  const t: Record<string, string | number> = headers ? { ...RESPONSE_HEADERS } : {};
  t["grpc-status"] = String(e.code);
  t["grpc-message"] = percentEncode(e.message);
  t["prism-reason"] = e.reason;
  if (extra) Object.assign(t, extra);
  return t;
}

const TIMEOUT = /^(\d{1,8})([HMSmun])$/;
const UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/**
 * grpc-timeout (`TimeoutValue TimeoutUnit`: at most 8 digits, then one of
 * H M S m u n) → milliseconds. Throws INVALID_ARGUMENT when malformed.
 */
export function parseTimeout(v: string): number {
  const m = TIMEOUT.exec(v);
  if (m === null) throw errors.invalidArgument("grpc-timeout", `"${v.slice(0, 40)}" is not a gRPC timeout (1 to 8 digits, then one of H M S m u n)`);
  return Number(m[1]) * UNIT_MS[m[2]!]!;
}

/**
 * Encodes `msg` as one Length-Prefixed-Message in ONE buffer: five placeholder
 * bytes are written through the protobuf writer first (a fixed32 and a
 * one-byte varint), then patched with the flag and the length, so the message
 * is never copied behind a separate prefix.
 */
export function encodeFramed(codec: MessageCodec, msg: object): Buffer {
  const w = protobuf.Writer.create();
  w.fixed32(0).uint32(0);
  const buf = codec.encode(msg, w).finish() as Buffer;
  buf[0] = 0;
  buf.writeUInt32BE(buf.length - PREFIX_BYTES, 1);
  return buf;
}

/** Frames an already-encoded message (reflection), one copy. */
export function frame(body: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(PREFIX_BYTES + body.length);
  out[0] = 0;
  out.writeUInt32BE(body.length, 1);
  out.set(body, PREFIX_BYTES);
  return out;
}

/**
 * Reassembles Length-Prefixed-Messages from DATA chunks. Subclasses get each
 * whole message (`frameReceived`) or the first framing error (`framingFailed`),
 * after which nothing more is parsed.
 */
export abstract class Deframer {
  /** Bytes of the message being reassembled (its prefix included); 0: none started. */
  private have = 0;
  /** Length of that message with its prefix, once its prefix has arrived; 0: unknown yet. */
  private want = 0;
  private chunks: Buffer[] | undefined = undefined;
  /** Set once a framing error (or the subclass) stopped the parsing. */
  protected stopped = false;

  constructor(protected readonly maxMessageBytes: number) {}

  protected abstract frameReceived(compressed: number, body: Buffer): void;
  protected abstract framingFailed(e: PrismError): void;

  /** Bytes of an incomplete message still buffered (non-zero at end of stream: a truncated message). */
  protected get partial(): number {
    return this.have;
  }

  /** Request bytes this call holds that are not a finished request yet (connection limits, src/ingress/limits.ts). */
  get held(): number {
    return this.have;
  }

  push(chunk: Buffer): void {
    let off = 0;
    const n = chunk.length;
    while (off < n && !this.stopped) {
      if (this.have === 0 && n - off >= PREFIX_BYTES) {
        const len = chunk.readUInt32BE(off + 1);
        if (len > this.maxMessageBytes) return this.tooLarge(len);
        const end = off + PREFIX_BYTES + len;
        if (end <= n) {
          // The common case: a whole message inside this chunk, a view of it (no copy).
          this.frameReceived(chunk[off]!, chunk.subarray(off + PREFIX_BYTES, end));
          off = end;
          continue;
        }
      }
      off = this.stash(chunk, off);
    }
  }

  /** Buffers chunk[off..] towards the current message; returns where the next message starts. */
  private stash(chunk: Buffer, off: number): number {
    const piece = off === 0 ? chunk : chunk.subarray(off);
    const chunks = (this.chunks ??= []);
    if (this.want === 0) {
      if (this.have + piece.length < PREFIX_BYTES) {
        chunks.push(piece);
        this.have += piece.length;
        return chunk.length;
      }
      const head = Buffer.concat([...chunks, piece.subarray(0, PREFIX_BYTES - this.have)], PREFIX_BYTES);
      const len = head.readUInt32BE(1);
      if (len > this.maxMessageBytes) {
        this.tooLarge(len);
        return chunk.length;
      }
      this.want = PREFIX_BYTES + len;
    }
    const take = Math.min(piece.length, this.want - this.have);
    chunks.push(take === piece.length ? piece : piece.subarray(0, take));
    this.have += take;
    if (this.have === this.want) {
      const whole = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.want);
      this.have = this.want = 0;
      this.chunks = undefined;
      this.frameReceived(whole[0]!, whole.subarray(PREFIX_BYTES));
    }
    return off + take;
  }

  private tooLarge(len: number): void {
    this.stopped = true;
    this.chunks = undefined;
    this.framingFailed(errors.frameTooLarge(len, this.maxMessageBytes));
  }
}

/** The request encodings the server decompresses, as announced in grpc-accept-encoding. */
export const ACCEPTED_ENCODINGS = "identity,deflate,gzip";

type Inflater = (buf: InputType, options: ZlibOptions, cb: (e: Error | null, out: Buffer) => void) => void;
const INFLATERS: Readonly<Record<string, Inflater>> = { gzip: gunzip as Inflater, deflate: inflate as Inflater };

/** True when a compressed message in this grpc-encoding can be read. */
export function canInflate(encoding: string | undefined): boolean {
  return encoding !== undefined && Object.hasOwn(INFLATERS, encoding);
}

/**
 * Decompresses one message (off the event loop: zlib's thread pool). The output
 * is capped at maxBytes, so a small "zip bomb" cannot make the server allocate
 * more than a plain message could: over the cap → RESOURCE_EXHAUSTED; bytes that
 * do not inflate → INVALID_ARGUMENT naming the message type.
 */
export function inflateMessage(encoding: string, body: Buffer, maxBytes: number, typeName: string, done: (e: PrismError | null, out: Buffer) => void): void {
  INFLATERS[encoding]!(body, { maxOutputLength: maxBytes }, (e, out) => done(e === null ? null : inflateError(e, encoding, maxBytes, typeName), out));
}

/** inflateMessage on the calling thread, for the small messages of a bidi stream whose order matters (reflection). Throws the PrismError. */
export function inflateMessageSync(encoding: string, body: Buffer, maxBytes: number, typeName: string): Buffer {
  try {
    return (encoding === "gzip" ? gunzipSync : inflateSync)(body, { maxOutputLength: maxBytes });
  } catch (e) {
    throw inflateError(e as Error, encoding, maxBytes, typeName);
  }
}

function inflateError(e: Error, encoding: string, maxBytes: number, typeName: string): PrismError {
  if ((e as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") {
    return new PrismError(Code.RESOURCE_EXHAUSTED, "PRISM_ERR_FRAME_TOO_LARGE", `a ${encoding} message inflating beyond ${maxBytes} bytes exceeds the server limit of ${maxBytes}`);
  }
  return errors.malformed(`malformed ${typeName}: the ${encoding} data does not inflate (${e.message})`);
}

/** A compressed message Prism cannot read (grpc-accept-encoding tells the client what it can). */
export function compressedRefusal(encoding: string | undefined): PrismError {
  const what = encoding === undefined || encoding === "identity" ? "a compressed message without a grpc-encoding" : `grpc-encoding "${encoding.slice(0, 40)}"`;
  return new PrismError(Code.UNIMPLEMENTED, "PRISM_ERR_UNSUPPORTED_ENCODING", `${what} is not supported; send gzip, deflate or uncompressed messages (grpc-accept-encoding: ${ACCEPTED_ENCODINGS})`);
}

/** Where a stream keeps the trailers its 'wantTrailers' handler sends (OK when unset). */
export const TRAILERS = Symbol("prism.grpc.trailers");
export type TrailerStream = ServerHttp2Stream & { [TRAILERS]?: Readonly<Record<string, string | number>> };

/** The one 'wantTrailers' listener of every stream (no closure per call). */
export function onWantTrailers(this: TrailerStream): void {
  if (!this.destroyed) this.sendTrailers(this[TRAILERS] ?? OK_TRAILERS);
}
