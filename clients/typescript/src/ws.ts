/**
 * Binary WebSocket transport (frame.proto): one connection, many calls in
 * flight, matched by request id. A request frame is
 * `u8 kind, u8 flags, u32 id LE, u16 method LE, [u32 timeout_ms][u8 priority], body`;
 * a server frame is `u8 kind, u8 flags, u32 id LE, body`.
 */
import WebSocket from "ws";
import protobuf from "protobufjs/minimal.js";
import { prism } from "./gen/prism.js";
import { Code, PrismError, cancelled, codeFromHttpStatus, connectionLost, deadlineExceeded, unavailable } from "./errors.js";
import type { Codec, MethodInfo } from "./methods.js";
import { PRIORITY_BYTE, type Attempt, type OpenOptions, type StreamHandle, type StreamSink, type Transport } from "./transport.js";

const KIND_REQUEST = 1;
const KIND_CANCEL = 2;
const S_RESPONSE = 1;
const S_ERROR = 2;
const S_MESSAGE = 3;
const S_READY = 4;
const S_END = 5;
const FLAG_TIMEOUT = 1;
const FLAG_PRIORITY = 2;
const SERVER_HEADER = 6;
/** Deadline sweep period: one coarse timer for all calls, not one per call. */
const SWEEP_MS = 50;

/** One unary call in flight. */
class Pending {
  /** Removes the abort listener of the call's signal, if any. */
  unlisten: (() => void) | undefined;
  constructor(
    readonly resolve: (msg: unknown) => void,
    readonly reject: (err: PrismError) => void,
    readonly type: Codec,
    /** Date.now() deadline; 0: none. */
    readonly deadline: number,
  ) {}
}

/** One server stream in flight. */
class StreamEntry implements StreamHandle {
  constructor(
    readonly transport: WsTransport,
    readonly id: number,
    readonly method: MethodInfo,
    readonly type: Codec,
    readonly sink: StreamSink,
  ) {}
  cancel(): void {
    this.transport.cancelStream(this);
  }
}

function encodeError(method: MethodInfo, e: unknown): PrismError {
  return new PrismError(Code.INVALID_ARGUMENT, `${method.service}/${method.name}: cannot encode request: ${(e as Error).message}`);
}

function statusError(body: Uint8Array): PrismError {
  try {
    const s = prism.v1.Status.decode(body);
    return new PrismError(s.code, s.message, s.reason);
  } catch {
    return new PrismError(Code.INTERNAL, "malformed ERROR frame from server");
  }
}

/** @internal The binary WebSocket transport. */
export class WsTransport implements Transport {
  private readonly pending = new Map<number, Pending>();
  private readonly streams = new Map<number, StreamEntry>();
  private nextId = 0;
  private wrapped = false;
  private timed = 0;
  private sweeper: NodeJS.Timeout | undefined;
  private closedError: PrismError | undefined;
  private closing: Promise<void> | undefined;
  private readonly priority: number;
  private readonly lost: (err: PrismError) => void;

  private constructor(
    private readonly ws: WebSocket,
    opts: OpenOptions,
  ) {
    this.priority = opts.priority ? PRIORITY_BYTE[opts.priority] : -1;
    this.lost = opts.lost;
    ws.on("message", (data, isBinary) => {
      if (isBinary) this.onFrame(data as Buffer);
    });
    ws.on("close", (code) => {
      if (this.closedError) return; // closed by the client
      const err = connectionLost(`WebSocket connection closed${code && code !== 1005 ? ` (${code})` : ""}`);
      this.onClosed(err);
      this.lost(err);
    });
    ws.on("error", () => {}); // 'close' follows every 'error'
  }

  /** Opens the connection (auth headers on the upgrade request); rejects with UNAVAILABLE when it cannot. */
  static async open(url: string, opts: OpenOptions): Promise<WsTransport> {
    const headers = opts.auth.dynamic ? await opts.auth.dynamic() : opts.auth.fixed;
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, {
        perMessageDeflate: false,
        handshakeTimeout: opts.connectTimeoutMs,
        headers,
      });
      const onError = (err: Error) => {
        ws.removeAllListeners();
        ws.on("error", () => {});
        reject(unavailable(`connect ${url}`, err));
      };
      ws.once("error", onError);
      // A refused upgrade (401 without a valid token, 403, 429 …): its status says why, not "unavailable".
      ws.once("unexpected-response", (_req, res) => {
        const status = res.statusCode ?? 0;
        res.resume();
        ws.removeAllListeners();
        ws.on("error", () => {});
        ws.terminate();
        const code = status === 401 || status === 403 || status === 429 ? codeFromHttpStatus(status) : Code.UNAVAILABLE;
        reject(new PrismError(code, `connect ${url}: the server refused the WebSocket upgrade with HTTP ${status}`));
      });
      ws.once("open", () => {
        ws.off("error", onError);
        resolve(new WsTransport(ws, opts));
      });
    });
  }

  /** Set while the socket is corked for this turn. */
  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    (this.ws as unknown as { _socket?: { uncork(): void } })._socket?.uncork();
  };

  /**
   * Sends one frame. The frames of one run of callbacks (e.g. the next calls of every caller whose
   * answer arrived in one read) leave in one socket write: the socket is corked at the first frame
   * and uncorked by a process.nextTick, once the microtasks of that run are done (a setImmediate
   * would add a loop iteration of latency to every call). One write per frame was about 30% of a
   * busy client's CPU: 64 callers enqueueing spent 17 µs of client CPU per call, 10-11 µs corked.
   */
  private send(frame: Uint8Array): void {
    if (!this.corked) {
      const socket = (this.ws as unknown as { _socket?: { cork(): void } })._socket;
      if (socket !== undefined) {
        socket.cork();
        this.corked = true;
        process.nextTick(this.uncork);
      }
    }
    this.ws.send(frame);
  }

  unary(method: MethodInfo, request: object, attempt: Attempt): Promise<any> {
    if (this.closedError) return Promise.reject(this.closedError);
    const signal = attempt.signal;
    if (signal?.aborted) return Promise.reject(cancelled(signal));
    let timeout = 0;
    if (attempt.deadline > 0) {
      timeout = attempt.deadline - Date.now();
      if (timeout <= 0) return Promise.reject(deadlineExceeded());
    }
    const id = this.allocId();
    let frame: Uint8Array;
    try {
      frame = this.frame(KIND_REQUEST, id, method, timeout, request);
    } catch (e) {
      return Promise.reject(encodeError(method, e));
    }
    return new Promise((resolve, reject) => {
      const call = new Pending(resolve, reject, method.responseType, timeout > 0 ? attempt.deadline : 0);
      this.pending.set(id, call);
      // One sweep interval per connection: started when the first timed call is pending, stopped by
      // the sweep itself once none is (a call answered in between does not start a second one).
      if (timeout > 0 && this.timed++ === 0 && this.sweeper === undefined) this.startSweep();
      if (signal) {
        const onAbort = () => {
          if (this.pending.get(id) !== call) return;
          this.forget(id, call);
          // CANCEL ends a unary call on the server too (frame.proto); its late answer, if any, is dropped.
          if (!this.closedError) this.send(this.frame(KIND_CANCEL, id, method, 0, undefined));
          reject(cancelled(signal));
        };
        signal.addEventListener("abort", onAbort, { once: true });
        call.unlisten = () => signal.removeEventListener("abort", onAbort);
      }
      this.send(frame);
    });
  }

  /** Drops a pending call (answered, timed out, cancelled). */
  private forget(id: number, call: Pending): void {
    this.pending.delete(id);
    if (call.deadline > 0) this.timed--;
    call.unlisten?.();
  }

  serverStream(method: MethodInfo, request: object, sink: StreamSink): StreamHandle {
    const id = this.allocId();
    const entry = new StreamEntry(this, id, method, method.responseType, sink);
    if (this.closedError) {
      queueMicrotask(() => sink.onError(this.closedError!));
      return entry;
    }
    let frame: Uint8Array;
    try {
      frame = this.frame(KIND_REQUEST, id, method, 0, request);
    } catch (e) {
      const err = encodeError(method, e);
      queueMicrotask(() => sink.onError(err));
      return entry;
    }
    this.streams.set(id, entry);
    this.send(frame);
    return entry;
  }

  /** @internal */
  cancelStream(entry: StreamEntry): void {
    if (this.streams.get(entry.id) !== entry) return;
    this.streams.delete(entry.id);
    if (!this.closedError) this.send(this.frame(KIND_CANCEL, entry.id, entry.method, 0, undefined));
  }

  idle(): boolean {
    return this.pending.size === 0 && this.streams.size === 0;
  }

  close(): Promise<void> {
    return (this.closing ??= new Promise<void>((resolve) => {
      if (this.ws.readyState === WebSocket.CLOSED) return resolve();
      // Give the server a moment to answer the close handshake, then drop the socket.
      const kill = setTimeout(() => this.ws.terminate(), 2000);
      kill.unref();
      this.ws.once("close", () => {
        clearTimeout(kill);
        resolve();
      });
      this.onClosed(unavailable("connection closed by the client"));
      if (this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate();
      else this.ws.close(1000);
    }));
  }

  private allocId(): number {
    let id = this.nextId + 1;
    if (id > 0xffffffff) {
      id = 1;
      this.wrapped = true;
    }
    // After the first wrap-around an id may still be in use by a long-lived call.
    if (this.wrapped) while (this.pending.has(id) || this.streams.has(id)) id = id >= 0xffffffff ? 1 : id + 1;
    return (this.nextId = id);
  }

  /**
   * Header and body written by one protobuf Writer into one buffer (no copy):
   * the 8-byte header as two little-endian fixed32 words, the optional timeout
   * as a fixed32 and the priority (0..3) as a one-byte varint.
   */
  private frame(kind: number, id: number, method: MethodInfo | undefined, timeout: number, request: object | undefined): Uint8Array {
    let flags = 0;
    if (timeout > 0) flags |= FLAG_TIMEOUT;
    if (this.priority >= 0 && kind === KIND_REQUEST) flags |= FLAG_PRIORITY;
    const w = protobuf.Writer.create();
    w.fixed32((kind | (flags << 8) | ((id & 0xffff) << 16)) >>> 0);
    w.fixed32(((id >>> 16) | ((method?.id ?? 0) << 16)) >>> 0);
    if (flags & FLAG_TIMEOUT) w.fixed32(Math.min(timeout, 0xffffffff));
    if (flags & FLAG_PRIORITY) w.uint32(this.priority);
    if (request && method) method.requestType.encode(request, w);
    return w.finish();
  }

  private onFrame(data: Buffer): void {
    if (data.length < SERVER_HEADER) return;
    const kind = data[0]!;
    const id = data.readUInt32LE(2);
    // A plain Uint8Array view: protobufjs then decodes bytes fields as Uint8Array, not Buffer.
    const body = new Uint8Array(data.buffer, data.byteOffset + SERVER_HEADER, data.length - SERVER_HEADER);
    const call = this.pending.get(id);
    if (call) {
      if (kind !== S_RESPONSE && kind !== S_ERROR) return;
      this.forget(id, call);
      if (kind === S_ERROR) return call.reject(statusError(body));
      let msg: unknown;
      try {
        msg = call.type.decode(body);
      } catch (e) {
        return call.reject(new PrismError(Code.INTERNAL, `malformed response from server: ${(e as Error).message}`));
      }
      return call.resolve(msg);
    }
    const stream = this.streams.get(id);
    if (!stream) return; // late frame of a cancelled or timed-out call
    switch (kind) {
      case S_MESSAGE: {
        let msg: unknown;
        try {
          msg = stream.type.decode(body);
        } catch (e) {
          this.cancelStream(stream);
          return stream.sink.onError(new PrismError(Code.INTERNAL, `malformed stream message from server: ${(e as Error).message}`));
        }
        return stream.sink.onMessage(msg);
      }
      case S_READY:
        return stream.sink.onReady();
      case S_ERROR:
        this.streams.delete(id);
        return stream.sink.onError(statusError(body));
      case S_END:
        this.streams.delete(id);
        return stream.sink.onEnd();
    }
  }

  private startSweep(): void {
    if (this.sweeper !== undefined) return;
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweeper.unref();
  }

  private sweep(): void {
    const now = Date.now();
    for (const [id, call] of this.pending) {
      if (call.deadline > 0 && call.deadline <= now) {
        this.forget(id, call);
        call.reject(deadlineExceeded());
      }
    }
    if (this.timed <= 0) this.stopSweep();
  }

  private stopSweep(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = undefined;
    this.timed = 0;
  }

  private onClosed(err: PrismError): void {
    if (this.closedError) return;
    this.closedError = err;
    this.stopSweep();
    const calls = [...this.pending.values()];
    const streams = [...this.streams.values()];
    this.pending.clear();
    this.streams.clear();
    for (const c of calls) {
      c.unlisten?.();
      c.reject(err);
    }
    for (const s of streams) s.sink.onError(err);
  }
}
