/**
 * The binary WebSocket dispatcher (proto/prism/v1/frame.proto). One Session
 * per connection; frames are parsed in place (bodies stay views of the received
 * bytes), dispatched through the method table, and answered in any order.
 *
 * Limits, per connection:
 * - A frame larger than maxMessageBytes: the `ws` library closes with 1009.
 * - More than MAX_WS_BUFFERED bytes queued for a client that does not read:
 *   the connection is closed with 1008 (its subscriptions end with it).
 * - More than server.max_in_flight_per_connection requests/subscriptions open
 *   (default 2048, below the shedding point, so one connection cannot shed
 *   everyone else): new ones get ERROR RESOURCE_EXHAUSTED.
 * - Long polls: at most server.max_long_polls_per_connection waiting (the gateway counts them).
 * - Idle connections, unfinished frames (time and bytes): src/ingress/transport.ts.
 */
import { Code, errors, toPrismError, type PrismError } from "../core/errors.js";
import { decodeStrict } from "../core/decode.js";
import { IdTable } from "../core/id-table.js";
import { RequestContext, type ConnectionState } from "../core/context.js";
import { CONNECTION_DEFAULTS } from "../config/defaults.js";
import { streamedOnly } from "../primitives/claim-check.js";
import { METHOD_BY_ID, type MessageCodec, type MethodDef } from "../core/methods.js";
import type { Gateway } from "../core/gateway.js";
import type { PubSubMessage, Subscription, SubscriptionSink } from "../backends/driver.js";
import { prism } from "../gen/prism.js";
import type { IngressOptions } from "./types.js";
import { DISCONNECT, type Backpressure } from "../shedding/backpressure.js";
import type { WsApp, WsPeer, WsSession } from "./transport.js";
import { withCert } from "./tls.js";
import type { Credentials } from "../auth/types.js";
import {
  AUTH,
  CANCEL,
  FrameHeader,
  PRIORITIES,
  RESPONSE,
  STREAM_MESSAGE,
  STREAM_READY,
  SERVER_HEADER_BYTES,
  emptyFrame,
  errorFrame,
  messageFrame,
} from "./frame.js";

export const WS_PATH = "/v1/ws";
/** Unsent bytes beyond which a client is considered stuck and disconnected (1008). */
export const MAX_WS_BUFFERED = 16 * 1024 * 1024;
/** Open requests + subscriptions per connection, when no limits are configured (server.max_in_flight_per_connection). */
export const MAX_IN_FLIGHT = CONNECTION_DEFAULTS.max_in_flight_per_connection;
/** Messages that may arrive between "live" and STREAM_READY (normally none). */
const MAX_EARLY = 10_000;

const MESSAGE_CODEC = prism.v1.PubSubMessage as unknown as MessageCodec;
const AUTH_FRAME_CODEC = prism.v1.AuthFrame as unknown as MessageCodec;
const AUTH_RESULT_CODEC = prism.v1.AuthResult as unknown as MessageCodec;

function errorFrameOf(id: number, err: PrismError): Uint8Array {
  return errorFrame(id, err.code, err.message, err.reason);
}

/** One subscription: the driver's sink, forwarding to the connection. */
/**
 * A published message reaches every matching subscription as the same object:
 * encode its protobuf body once and give each subscriber a copy behind its own
 * 6-byte header (a memcpy instead of N encodings).
 */
const encodedMessages = new WeakMap<PubSubMessage, Uint8Array>();

function streamMessageFrame(id: number, msg: PubSubMessage): Uint8Array {
  let body = encodedMessages.get(msg);
  if (body === undefined) {
    body = MESSAGE_CODEC.encode(msg).finish();
    encodedMessages.set(msg, body);
  }
  const frame = Buffer.allocUnsafe(SERVER_HEADER_BYTES + body.length);
  frame[0] = STREAM_MESSAGE;
  frame[1] = 0;
  frame.writeUInt32LE(id >>> 0, 2);
  frame.set(body, SERVER_HEADER_BYTES);
  return frame;
}

class WsStream implements SubscriptionSink {
  sub: Subscription | undefined = undefined;
  ready = false;
  over = false;
  early: Uint8Array[] | undefined = undefined;

  constructor(
    private readonly session: Session,
    readonly id: number,
    readonly ctx: RequestContext,
  ) {}

  onMessage(msg: PubSubMessage): void {
    if (this.over) return;
    const frame = streamMessageFrame(this.id, msg);
    if (this.ready) return this.session.sendMessage(frame);
    const early = (this.early ??= []);
    if (early.length >= MAX_EARLY) return this.session.streamFailed(this, errors.exhausted("subscription: too many messages before it was ready"));
    early.push(frame);
  }

  onError(err: Error): void {
    this.session.streamFailed(this, toPrismError(err));
  }

  /** Ends the subscription without telling the client (cancel, disconnect). */
  stop(): void {
    this.over = true;
    this.early = undefined;
    const sub = this.sub;
    this.sub = undefined;
    sub?.close().catch(() => {});
  }
}

class Session implements WsSession {
  private readonly header = new FrameHeader();
  /** Unary calls in flight, by request id (an IdTable: it empties and refills every loop turn under load). */
  private readonly calls = new IdTable<RequestContext>();
  private readonly streams = new Map<number, WsStream>();
  private closed_ = false;
  /** This connection's long polls (the gateway counts them against its cap). */
  private readonly conn: ConnectionState = { longPolls: 0 };
  /** Bearer token / API key for this connection's calls: the upgrade headers', replaced by an AUTH frame. */
  private creds: Credentials | undefined;

  /** Unsent bytes beyond which the backpressure policy applies. */
  private readonly maxBuffered: number;

  constructor(
    private readonly gw: Gateway,
    private readonly peer: WsPeer,
    private readonly log: IngressOptions["log"],
    private readonly bp: Backpressure,
    private readonly maxInFlight: number,
  ) {
    this.maxBuffered = bp.bytes(MAX_WS_BUFFERED);
    this.creds = peer.credentials;
  }

  get busy(): boolean {
    return this.calls.size + this.streams.size > 0;
  }

  /** The credentials this connection's next calls carry: its verified certificate, then the upgrade headers' or the last AUTH frame's. */
  get credentials(): Credentials | undefined {
    const cert = this.peer.peerCert;
    const creds = this.creds;
    if (cert === undefined) return creds;
    const c = withCert(undefined, cert);
    return creds === undefined ? c : { ...c, ...creds };
  }

  message(data: Buffer, binary: boolean): void {
    if (this.closed_) return;
    if (!binary) {
      return this.send(errorFrame(0, Code.INVALID_ARGUMENT, "text frames are not supported: send binary frames (proto/prism/v1/frame.proto)", "PRISM_ERR_MALFORMED"));
    }
    const h = this.header;
    const why = h.parse(data);
    if (why !== null) return this.send(errorFrameOf(h.id, errors.malformed(`malformed frame: ${why}`)));
    const id = h.id;
    if (h.kind === CANCEL) return this.cancel(id);
    if (h.kind === AUTH) return this.authFrame(id, data, h.bodyOffset);
    const m = METHOD_BY_ID[h.method];
    if (m === undefined) return this.send(errorFrameOf(id, errors.unknownMethod(`id ${h.method} (see prism.v1.Method)`)));
    if (this.calls.has(id) || this.streams.has(id)) {
      return this.send(errorFrameOf(id, errors.invalidArgument("request_id", `${id} is already in flight on this connection`)));
    }
    if (this.calls.size + this.streams.size >= this.maxInFlight) {
      return this.send(errorFrameOf(id, errors.exhausted(`more than ${this.maxInFlight} requests in flight on one connection (server.max_in_flight_per_connection)`)));
    }
    let req: object;
    try {
      req = decodeStrict(m.requestType, data, h.bodyOffset);
    } catch (e) {
      return this.send(errorFrameOf(id, errors.malformed(`malformed prism.v1.${m.requestTypeName}: ${(e as Error).message}`)));
    }
    const ctx = new RequestContext(m, "ws", this.peer.remoteAddress);
    ctx.conn = this.conn;
    const cert = this.peer.peerCert;
    if (cert !== undefined) ctx.credentials = withCert(ctx.credentials, cert);
    const creds = this.creds;
    if (creds !== undefined) ctx.credentials = ctx.credentials === undefined ? creds : { ...ctx.credentials, ...creds };
    ctx.bytesIn = data.length;
    if (h.timeoutMs !== 0) ctx.deadline = Date.now() + h.timeoutMs;
    if (h.priority >= 0) ctx.priority = PRIORITIES[h.priority];
    if (h.traceparent !== undefined) ctx.traceparent = h.traceparent;
    if (m.transfer !== undefined) return this.send(errorFrameOf(id, streamedOnly(m.path.slice(1))));
    if (m.streaming) void this.subscribe(id, req, ctx);
    else void this.unary(id, m, req, ctx);
  }

  /**
   * AUTH (proto/prism/v1/frame.proto): the credentials apply to the calls that
   * follow at once (each call is checked by the gateway); the answer says
   * whether they verified. Without auth configured they are accepted unread.
   */
  private authFrame(id: number, data: Buffer, offset: number): void {
    let body: prism.v1.AuthFrame;
    try {
      body = decodeStrict(AUTH_FRAME_CODEC, data, offset) as prism.v1.AuthFrame;
    } catch (e) {
      return this.send(errorFrameOf(id, errors.malformed(`malformed prism.v1.AuthFrame: ${(e as Error).message}`)));
    }
    const creds: Credentials = {};
    if (body.bearer !== "") creds.bearer = body.bearer;
    else if (body.apiKey !== "") creds.apiKey = body.apiKey;
    else return this.send(errorFrameOf(id, errors.invalidArgument("AuthFrame", "give bearer or api_key")));
    this.creds = creds;
    const gate = this.gw.auth;
    if (gate?.authenticate === undefined) return this.send(messageFrame(RESPONSE, id, AUTH_RESULT_CODEC, { principal: "" }));
    const ok = (p: { kind: string; id: string }) => this.send(messageFrame(RESPONSE, id, AUTH_RESULT_CODEC, { principal: `${p.kind}:${p.id}` }));
    const fail = (e: unknown) => this.send(errorFrameOf(id, toPrismError(e)));
    try {
      const p = gate.authenticate(creds);
      if (p instanceof Promise) p.then(ok, fail);
      else ok(p);
    } catch (e) {
      fail(e);
    }
  }

  private async unary(id: number, m: MethodDef, req: object, ctx: RequestContext): Promise<void> {
    this.calls.set(id, ctx);
    let frame: Uint8Array;
    try {
      const resp = await this.gw.unary(ctx, req);
      frame = messageFrame(RESPONSE, id, m.responseType, resp);
    } catch (e) {
      const err = toPrismError(e);
      if (err.code === Code.INTERNAL) this.log("error", `ws ${m.path}: ${err.message}`);
      frame = errorFrameOf(id, err);
    }
    ctx.bytesOut = frame.length;
    if (this.calls.get(id) !== ctx) return; // cancelled, or the connection is gone
    this.calls.delete(id);
    this.send(frame);
  }

  private async subscribe(id: number, req: object, ctx: RequestContext): Promise<void> {
    const s = new WsStream(this, id, ctx);
    this.streams.set(id, s);
    let sub: Subscription;
    try {
      sub = await this.gw.subscribe(ctx, req, s);
    } catch (e) {
      if (this.streams.get(id) === s) this.streamFailed(s, toPrismError(e));
      return;
    }
    if (s.over) {
      sub.close().catch(() => {});
      return;
    }
    s.sub = sub;
    s.ready = true;
    this.send(emptyFrame(STREAM_READY, id));
    const early = s.early;
    s.early = undefined;
    if (early) for (const f of early) if (!s.over) this.sendMessage(f);
  }

  /** The subscription failed: tell the client (ERROR ends the stream) and release it. */
  streamFailed(s: WsStream, err: PrismError): void {
    if (s.over) return;
    s.stop();
    if (this.streams.get(s.id) === s) this.streams.delete(s.id);
    this.send(errorFrameOf(s.id, err));
  }

  private cancel(id: number): void {
    const s = this.streams.get(id);
    if (s !== undefined) {
      this.streams.delete(id);
      s.stop();
      s.ctx.cancel(errors.cancelled(s.ctx.method.path));
      return;
    }
    const ctx = this.calls.get(id);
    if (ctx !== undefined) {
      this.calls.delete(id);
      ctx.cancel(errors.cancelled(ctx.method.path));
    }
  }

  /** A pub/sub message: under backpressure policy "drop" it is skipped while the client is behind (src/shedding/backpressure.ts). */
  sendMessage(frame: Uint8Array): void {
    if (this.bp.drop && this.peer.bufferedAmount > this.maxBuffered) return this.bp.dropped1("ws");
    this.send(frame);
  }

  /** Sends a frame, unless the client stopped reading (then the connection is closed with 1008). */
  send(frame: Uint8Array): void {
    if (this.closed_) return;
    if (this.peer.bufferedAmount > this.maxBuffered) {
      this.closed_ = true;
      this.peer.close(1008, `client too slow: more than ${this.maxBuffered} bytes unsent`);
      this.release();
      return;
    }
    this.peer.send(frame);
  }

  closed(): void {
    this.closed_ = true;
    this.release();
  }

  private release(): void {
    for (const s of this.streams.values()) s.stop();
    this.streams.clear();
    for (const ctx of this.calls.values()) ctx.cancel(errors.cancelled(ctx.method.path));
    this.calls.clear();
  }
}

class WsDispatcher implements WsApp {
  constructor(
    private readonly gw: Gateway,
    private readonly opts: IngressOptions,
  ) {}
  open(peer: WsPeer): WsSession {
    return new Session(this.gw, peer, this.opts.log, this.opts.backpressure ?? DISCONNECT, this.opts.limits?.maxInFlightPerConnection ?? MAX_IN_FLIGHT);
  }
}

/** The binary WebSocket dispatcher, bound to a gateway. */
export function createWsApp(gw: Gateway, opts: IngressOptions): WsApp {
  return new WsDispatcher(gw, opts);
}
