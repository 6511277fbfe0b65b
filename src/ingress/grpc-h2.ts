/**
 * The gRPC ingress on node:http2 directly (server.grpc_server: "http2"): the
 * same method table, codecs, errors and subscription policy as the grpc-js
 * ingress (src/ingress/grpc.ts), without grpc-js's per-call machinery
 * (interceptor chain, Metadata objects, per-call deadline timers, an extra
 * copy of every message).
 *
 * gRPC over HTTP/2 (grpc/doc/PROTOCOL-HTTP2.md), h2c with prior knowledge:
 * - `:path` → MethodDef; unknown → trailers-only UNIMPLEMENTED; a method other
 *   than POST → UNIMPLEMENTED; a content-type not application/grpc* → HTTP 415.
 * - Unary and server-streaming calls take exactly one request message (zero or
 *   a second one: UNIMPLEMENTED, as grpc-js); a message above maxMessageBytes:
 *   RESOURCE_EXHAUSTED; a gzip or deflate message is inflated (up to that
 *   limit); any other compression: UNIMPLEMENTED with `grpc-accept-encoding:
 *   identity,deflate,gzip`; a stream ending inside a message or a body that
 *   does not decode: INVALID_ARGUMENT ("malformed prism.v1.X: …").
 * - `grpc-timeout` → ctx.deadline (malformed: INVALID_ARGUMENT); `prism-priority`
 *   and `traceparent` → the context; RST_STREAM from the client cancels it.
 * - Errors: grpc-status, percent-encoded grpc-message and `prism-reason`, in
 *   trailers (trailers-only when nothing was sent).
 * - PubSub.Subscribe: HEADERS once the subscription is live (the SDK waits for
 *   them), one DATA per message, trailers on error or UNAVAILABLE on close;
 *   a subscriber that stops reading meets the backpressure policy.
 * - Server reflection (bidirectional) from protoc's descriptor set (grpc-h2-reflection.ts).
 */
import type { Socket } from "node:net";
import { createServer, createSecureServer, constants, type Http2SecureServer, type Http2Server, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import type { AddressInfo } from "node:net";
import { RequestContext, type Priority } from "../core/context.js";
import { decodeStrict } from "../core/decode.js";
import { Code, errors, PrismError, toPrismError } from "../core/errors.js";
import type { Gateway } from "../core/gateway.js";
import { METHOD_BY_PATH, type MethodDef } from "../core/methods.js";
import type { PubSubMessage, Subscription, SubscriptionSink } from "../backends/driver.js";
import { DISCONNECT, type Backpressure } from "../shedding/backpressure.js";
import type { Listening } from "./types.js";
import { bufferExhausted, defaultConnectionLimits, type ConnectionLimits } from "./limits.js";
import type { ConnectionState } from "../core/context.js";
import { DEFAULT_MAX_BUFFERED_MESSAGES, type GrpcOptions } from "./grpc.js";
import { REFLECTION_PATHS, ReflectionCall } from "./grpc-h2-reflection.js";
import { transferH2Call } from "./transfer.js";
import { peerCertificateOf, withCert } from "./tls.js";
import { withHeaders } from "../auth/credentials.js";
import type { Credentials, PeerCertificate } from "../auth/types.js";
import {
  ACCEPTED_ENCODINGS,
  canInflate,
  compressedRefusal,
  inflateMessage,
  Deframer,
  encodeFramed,
  onWantTrailers,
  parseTimeout,
  PREFIX_BYTES,
  RESPONSE_HEADERS,
  statusTrailers,
  TRAILERS,
  TRAILERS_ONLY,
  WITH_TRAILERS,
  type TrailerStream,
} from "./grpc-h2-wire.js";

const { HTTP2_HEADER_STATUS, HTTP_STATUS_UNSUPPORTED_MEDIA_TYPE, NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_NO_ERROR } = constants;

type Log = GrpcOptions["log"];

/** What every call of one server shares. */
interface Shared {
  readonly limits: ConnectionLimits;
  /** Calls whose request has not completed yet (client half-close), for the completion timeout. */
  readonly receiving: Set<Intake>;
  readonly gw: Gateway;
  readonly log: Log;
  readonly maxMessageBytes: number;
  readonly maxBuffered: number;
  readonly bp: Backpressure;
  readonly reflection: boolean;
  /** Open subscriptions, so close() can end them. */
  readonly subs: Set<SubscribeCall>;
}

/** The per-stream state the shared stream listeners reach through the stream. */
interface H2Call {
  push(chunk: Buffer): void;
  clientEnd(): void;
  closed(): void;
  /** Request bytes held that are not a finished request yet. */
  readonly held: number;
  /** Client-streaming calls (ClaimCheck.Put): request messages received so far; each one restarts the completion clock. */
  readonly messages?: number;
  /** Ends the call with an error (limits: too many bytes, too slow). */
  fail(e: PrismError): void;
}

/** Per connection: open streams, unfinished request bytes, and since when it is idle (src/ingress/limits.ts). */
interface SessionState {
  streams: number;
  /** Unfinished request bytes of all its streams (a holder in the worker's RequestBudget). */
  held: number;
  /** Date.now() of its last request bytes. */
  lastData: number;
  /** Ends every stream of the session still receiving, releasing their bytes, and closes it (RequestBudget eviction). */
  evict(): void;
  /** When the session last had no stream open (0: streams are open). */
  idleSince: number;
  /** A stream was ever opened (a session that never completes a request head is closed after header_timeout_ms). */
  started: boolean;
  readonly createdAt: number;
  conn: ConnectionState;
  /** The verified mTLS client certificate of this connection (server.tls.client_ca). */
  cert: PeerCertificate | undefined;
}

/** One call's request side, against its connection's and the worker's limits on unfinished request bytes. */
class Intake {
  held = 0;
  /** call.messages when last seen. */
  messages = 0;
  /** Since when the request has been incomplete (0: complete, or a bidirectional call between messages). */
  since: number;
  /** The principal `held` is charged to (server.per_principal.max_buffered_bytes), named at the first DATA; undefined: not yet. */
  key: string | undefined = undefined;
  constructor(
    readonly call: H2Call,
    readonly stream: Stream,
    readonly state: SessionState,
    /** Unary and server-streaming calls: incomplete from their HEADERS until the client half-closes. */
    readonly single: boolean,
    /** The credentials of the call's HEADERS (and the connection's certificate), which name its principal. */
    readonly creds: Credentials | undefined,
  ) {
    this.since = Date.now();
  }
}

const CALL = Symbol("prism.grpc.call");
const INTAKE = Symbol("prism.grpc.intake");
const PEER = Symbol("prism.grpc.peer");
const STATE = Symbol("prism.grpc.state");
const SHARED = Symbol("prism.grpc.shared");
type Stream = TrailerStream & { [CALL]?: H2Call; [INTAKE]?: Intake; [SHARED]?: Shared };
type Session = Http2Session & { [PEER]?: string; [STATE]?: SessionState; pingPending?: boolean };

/** Ends a call that broke a limit and stops its stream (RST_STREAM after the status, so the client stops sending). */
function cutCall(i: Intake, shared: Shared, e: PrismError): void {
  releaseIntake(i, shared);
  i.call.fail(e);
  if (!i.stream.destroyed) i.stream.close(NGHTTP2_NO_ERROR);
}

function releaseIntake(i: Intake, shared: Shared): void {
  if (i.held !== 0) {
    shared.limits.budget.release(i.held);
    if (i.key !== undefined) shared.limits.principalBytes!.release(i.key, i.held);
    i.state.held -= i.held;
    i.held = 0;
  }
  i.since = 0;
  shared.receiving.delete(i);
}

// Shared stream listeners: no closure per call.
function noop(): void {}
function onData(this: Stream, chunk: Buffer): void {
  const call = this[CALL]!;
  call.push(chunk);
  const i = this[INTAKE];
  if (i === undefined) return;
  const held = call.held;
  const msgs = call.messages;
  // A long upload is never "complete" until it ends: what must complete in time is each of its messages.
  if (msgs !== undefined && msgs !== i.messages) {
    i.messages = msgs;
    i.since = held === 0 ? 0 : Date.now();
  }
  const delta = held - i.held;
  if (delta === 0) return;
  const shared = this[SHARED]!;
  if (delta > 0) {
    i.state.lastData = Date.now();
    const l = shared.limits;
    if (i.state.held + delta > l.maxConnectionBufferedBytes) return cutCall(i, shared, bufferExhausted("this connection", l.maxConnectionBufferedBytes));
    // Per principal (named by the HEADERS' credentials), before the worker's budget that everyone shares.
    const pb = l.principalBytes;
    if (pb !== undefined) {
      const key = (i.key ??= pb.keyOf(i.creds));
      if (!pb.reserve(key, delta)) return cutCall(i, shared, pb.refusal(key));
    }
    if (!l.budget.reserve(delta, i.state)) {
      if (pb !== undefined) pb.release(i.key!, delta);
      return cutCall(i, shared, bufferExhausted("the server", l.budget.max));
    }
    if (i.since === 0) i.since = Date.now();
  } else {
    shared.limits.budget.release(-delta);
    if (i.key !== undefined) shared.limits.principalBytes!.release(i.key, -delta);
    if (held === 0 && !i.single) i.since = 0;
  }
  i.state.held += delta;
  i.held = held;
}
function onEnd(this: Stream): void {
  const i = this[INTAKE];
  if (i !== undefined) releaseIntake(i, this[SHARED]!);
  this[CALL]!.clientEnd();
}
function onClose(this: Stream): void {
  const i = this[INTAKE];
  if (i !== undefined) {
    const shared = this[SHARED]!;
    releaseIntake(i, shared);
    this[INTAKE] = undefined;
    if (--i.state.streams === 0) i.state.idleSince = Date.now();
  }
  this[CALL]!.closed();
}

const UNSUPPORTED_MEDIA = Object.freeze({ [HTTP2_HEADER_STATUS]: HTTP_STATUS_UNSUPPORTED_MEDIA_TYPE });
const ACCEPT_ENCODINGS = Object.freeze({ "grpc-accept-encoding": ACCEPTED_ENCODINGS });

function first(v: string | string[] | undefined): string | undefined {
  return typeof v === "string" || v === undefined ? v : v[0];
}

/** Answers a call that never reached a handler: trailers-only, and nothing read. */
function refuse(stream: ServerHttp2Stream, e: PrismError): void {
  if (!stream.destroyed && !stream.headersSent) stream.respond(statusTrailers(e, true, e.reason === "PRISM_ERR_UNSUPPORTED_ENCODING" ? ACCEPT_ENCODINGS : undefined), TRAILERS_ONLY);
  // Whatever the client still sends is read and dropped (flow control must not stall the session).
  stream.resume();
}

const PRIORITIES: ReadonlySet<string> = new Set<Priority>(["critical", "high", "normal", "low"]);
const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

/** The call's RequestContext from its headers. Throws INVALID_ARGUMENT for a bad `prism-priority` or `grpc-timeout`. */
function contextOf(m: MethodDef, stream: ServerHttp2Stream, headers: IncomingHttpHeaders): RequestContext {
  const session = stream.session as Session | undefined;
  const ctx = new RequestContext(m, "grpc", session?.[PEER] ?? "unknown");
  const state = session?.[STATE];
  ctx.conn = state?.conn;
  if (state?.cert !== undefined) ctx.credentials = withCert(ctx.credentials, state.cert);
  ctx.credentials = withHeaders(ctx.credentials, first(headers.authorization), first(headers["x-api-key"]));
  const timeout = headers["grpc-timeout"];
  if (timeout !== undefined) ctx.deadline = Date.now() + parseTimeout(first(timeout)!);
  const p = first(headers["prism-priority"]);
  if (p !== undefined) {
    if (!PRIORITIES.has(p)) throw errors.invalidArgument("prism-priority", `"${p.slice(0, 40)}" is not one of critical, high, normal, low`);
    ctx.priority = p as Priority;
  }
  // W3C trace context: a malformed traceparent is ignored, not refused.
  const t = first(headers.traceparent);
  if (t !== undefined && TRACEPARENT.test(t)) ctx.traceparent = t;
  return ctx;
}

/**
 * The request side of unary and server-streaming calls: exactly one message,
 * decoded strictly once the client half-closed.
 */
abstract class SingleRequestCall extends Deframer implements H2Call {
  private body: Buffer | undefined = undefined;
  /** The request message arrived compressed (in this.encoding). */
  private compressed = false;
  /** The call was answered (or the stream is gone): nothing more is sent. */
  protected done = false;

  constructor(
    protected readonly stream: Stream,
    protected readonly m: MethodDef,
    protected readonly ctx: RequestContext,
    protected readonly shared: Shared,
    private readonly encoding: string | undefined,
  ) {
    super(shared.maxMessageBytes);
  }

  protected frameReceived(compressed: number, body: Buffer): void {
    if (this.body !== undefined) {
      this.stopped = true;
      return this.fail(new PrismError(Code.UNIMPLEMENTED, "PRISM_ERR_MALFORMED", `received a second request message for ${this.m.streaming ? "server-streaming" : "unary"} method ${this.m.path}`));
    }
    if (compressed !== 0) {
      if (!canInflate(this.encoding)) {
        this.stopped = true;
        return this.fail(compressedRefusal(this.encoding));
      }
      this.compressed = true;
    }
    this.body = body;
  }

  protected framingFailed(e: PrismError): void {
    this.fail(e);
  }

  /** The message being reassembled plus the complete one waiting for the client's half-close. */
  override get held(): number {
    return this.partial + (this.body?.length ?? 0);
  }

  clientEnd(): void {
    if (this.stopped || this.done) return;
    this.stopped = true;
    if (this.partial !== 0) return this.fail(errors.malformed(`malformed prism.v1.${this.m.requestTypeName}: the stream ended inside a gRPC message`));
    const body = this.body;
    if (body === undefined) return this.fail(new PrismError(Code.UNIMPLEMENTED, "PRISM_ERR_MALFORMED", `received no request message for method ${this.m.path}`));
    this.body = undefined;
    this.ctx.bytesIn = body.length;
    if (!this.compressed) return this.decodeAndRun(body);
    inflateMessage(this.encoding!, body, this.shared.maxMessageBytes, `prism.v1.${this.m.requestTypeName}`, (e, out) => {
      if (e !== null) this.fail(e);
      else if (!this.done) this.decodeAndRun(out);
    });
  }

  private decodeAndRun(body: Buffer): void {
    let req: object;
    try {
      req = decodeStrict(this.m.requestType, body);
    } catch (e) {
      return this.fail(errors.malformed(`malformed prism.v1.${this.m.requestTypeName}: ${e instanceof Error ? e.message : String(e)}`));
    }
    this.run(req);
  }

  protected abstract run(req: object): void;
  abstract closed(): void;

  /** Ends the call with the error's status: trailers-only, or trailers after what was sent. */
  fail(e: PrismError): void {
    if (this.done) return;
    this.done = true;
    if (e.code === Code.INTERNAL) this.shared.log("error", `grpc ${this.m.path}: ${e.message}`);
    const s = this.stream;
    if (s.destroyed || s.closed) return;
    if (!s.headersSent) return refuse(s, e);
    s[TRAILERS] = statusTrailers(e, false);
    s.end();
  }
}

class UnaryCall extends SingleRequestCall {
  protected run(req: object): void {
    void this.answer(req);
  }

  private async answer(req: object): Promise<void> {
    let res: object;
    try {
      res = await this.shared.gw.unary(this.ctx, req);
    } catch (e) {
      this.fail(toPrismError(e));
      return;
    }
    if (this.done) return;
    const s = this.stream;
    if (s.destroyed || s.closed) return;
    let buf: Buffer;
    try {
      buf = encodeFramed(this.m.responseType, res);
    } catch (e) {
      this.fail(toPrismError(e));
      return;
    }
    // Same tick as the gateway's settle: the observer reads it (metrics, access log).
    this.ctx.bytesOut = buf.length - PREFIX_BYTES;
    if (buf.length - PREFIX_BYTES > this.shared.maxMessageBytes) {
      this.fail(errors.exhausted(`response of ${buf.length - PREFIX_BYTES} bytes exceeds the server limit of ${this.shared.maxMessageBytes} bytes`));
      return;
    }
    this.done = true;
    s.respond(RESPONSE_HEADERS, WITH_TRAILERS);
    s.end(buf);
  }

  closed(): void {
    this.stopped = true;
    if (this.done) return;
    this.done = true;
    this.ctx.cancel(errors.cancelled("call"));
  }
}

/**
 * One live PubSub.Subscribe call: the driver's sink on one side, the HTTP/2
 * stream on the other. What waits for flow control is bounded in messages
 * (maxBuffered): the stream's writableLength counts the bytes not yet taken
 * by HTTP/2, and the sizes of the last messages written say how many messages
 * those bytes are.
 */
class SubscribeCall extends SingleRequestCall implements SubscriptionSink {
  private sub: Subscription | undefined = undefined;
  private sizes: number[] = [];
  private head = 0;
  /** Sum of sizes[head..]. */
  private queued = 0;

  protected run(req: object): void {
    this.shared.subs.add(this);
    void this.open(req);
  }

  private async open(req: object): Promise<void> {
    let sub: Subscription;
    try {
      sub = await this.shared.gw.subscribe(this.ctx, req, this);
    } catch (e) {
      this.fail(toPrismError(e));
      this.finish();
      return;
    }
    if (this.done) return this.closeSub(sub);
    this.sub = sub;
    // HEADERS now: the client's "the subscription is live" signal.
    if (!this.stream.headersSent) this.stream.respond(RESPONSE_HEADERS, WITH_TRAILERS);
  }

  onMessage(msg: PubSubMessage): void {
    if (this.done) return;
    if (this.pending() >= this.shared.maxBuffered) {
      // Backpressure policy "drop": skip the message, keep the subscription (src/shedding/backpressure.ts).
      if (this.shared.bp.drop) return this.shared.bp.dropped1("grpc");
      return this.overflow();
    }
    const buf = encodeFramed(this.m.responseType, msg);
    // A driver may deliver before its subscribe() resolved: the HEADERS go first (a write would send bare ones).
    if (!this.stream.headersSent) this.stream.respond(RESPONSE_HEADERS, WITH_TRAILERS);
    this.sizes.push(buf.length);
    this.queued += buf.length;
    this.stream.write(buf);
  }

  onError(err: Error): void {
    this.fail(toPrismError(err));
    this.finish();
  }

  /** Messages written but not yet taken by HTTP/2 flow control (the oldest may be partly sent). */
  private pending(): number {
    const unsent = this.stream.writableLength;
    const sizes = this.sizes;
    while (this.head < sizes.length && this.queued - sizes[this.head]! >= unsent) this.queued -= sizes[this.head++]!;
    if (this.head > 1024 && this.head * 2 > sizes.length) {
      this.sizes = sizes.slice(this.head);
      this.head = 0;
    }
    return this.sizes.length - this.head;
  }

  private overflow(): void {
    const e = errors.exhausted(`subscriber too slow: more than ${this.shared.maxBuffered} messages buffered`);
    this.shared.log("warn", `grpc ${this.m.path} ${this.ctx.peer}: ${e.message}; dropping the subscription`);
    // Trailers cannot overtake the buffered messages: reset the stream (gRPC clients report RESOURCE_EXHAUSTED).
    this.done = true;
    this.stream.close(NGHTTP2_ENHANCE_YOUR_CALM);
    this.finish();
  }

  /** Ends the subscription with `e` (server shutdown: UNAVAILABLE). */
  end(e: PrismError): void {
    this.fail(e);
    this.finish();
  }

  closed(): void {
    this.stopped = true;
    this.done = true;
    this.finish();
  }

  private finished = false;
  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.shared.subs.delete(this);
    this.ctx.cancel(errors.cancelled("subscription"));
    const sub = this.sub;
    this.sub = undefined;
    this.sizes = [];
    if (sub) this.closeSub(sub);
  }

  private closeSub(sub: Subscription): void {
    sub.close().catch((e: unknown) => this.shared.log("warn", `grpc ${this.m.path}: closing subscription: ${(e as Error).message}`));
  }
}

/** A reflection call whose stream listeners match H2Call. */
class ReflectionH2Call implements H2Call {
  constructor(private readonly call: ReflectionCall) {}
  get held(): number {
    return this.call.held;
  }
  fail(e: PrismError): void {
    this.call.abort(e);
  }
  push(chunk: Buffer): void {
    this.call.push(chunk);
  }
  clientEnd(): void {
    this.call.clientEnd();
  }
  closed(): void {
    this.call.closed();
  }
}

function onStream(shared: Shared, stream: Stream, headers: IncomingHttpHeaders): void {
  stream.on("error", noop);
  if (headers[":method"] !== "POST") return refuse(stream, new PrismError(Code.UNIMPLEMENTED, "PRISM_ERR_UNKNOWN_METHOD", `gRPC calls are POST requests, not ${String(headers[":method"]).slice(0, 20)}`));
  const ct = headers["content-type"];
  if (typeof ct !== "string" || !ct.startsWith("application/grpc")) {
    if (!stream.destroyed) stream.respond(UNSUPPORTED_MEDIA, TRAILERS_ONLY);
    stream.resume();
    return;
  }
  const path = headers[":path"] ?? "";
  const m = METHOD_BY_PATH.get(path);
  const encoding = first(headers["grpc-encoding"]);
  let call: H2Call;
  let creds: Credentials | undefined;
  if (m === undefined) {
    if (!shared.reflection || !REFLECTION_PATHS.has(path)) return refuse(stream, errors.unknownMethod(path.slice(0, 200)));
    call = new ReflectionH2Call(new ReflectionCall(stream, shared.maxMessageBytes, encoding));
    if (shared.limits.principalBytes !== undefined) {
      const cert = (stream.session as Session | undefined)?.[STATE]?.cert;
      creds = withHeaders(cert === undefined ? undefined : withCert(undefined, cert), first(headers.authorization), first(headers["x-api-key"]));
    }
  } else {
    let ctx: RequestContext;
    try {
      ctx = contextOf(m, stream, headers);
    } catch (e) {
      return refuse(stream, toPrismError(e));
    }
    creds = ctx.credentials;
    call =
      m.transfer !== undefined
        ? transferH2Call(m, stream, ctx, shared.gw, shared.log, shared.maxMessageBytes, encoding)
        : m.streaming
          ? new SubscribeCall(stream, m, ctx, shared, encoding)
          : new UnaryCall(stream, m, ctx, shared, encoding);
  }
  stream[CALL] = call;
  const state = (stream.session as Session | undefined)?.[STATE];
  if (state !== undefined) {
    // A ClaimCheck upload is incomplete for as long as it streams: only a pause between its messages counts (as for reflection).
    const intake = new Intake(call, stream, state, m !== undefined && m.transfer !== "upload", creds);
    stream[INTAKE] = intake;
    stream[SHARED] = shared;
    shared.receiving.add(intake);
    state.streams++;
    state.idleSince = 0;
    state.started = true;
  }
  stream.on("data", onData);
  stream.once("end", onEnd);
  stream.once("close", onClose);
  stream.once("wantTrailers", onWantTrailers);
}

function destroySession(s: Session): void {
  if (!s.destroyed) s.destroy();
}

/** `host:port` as grpc-js names peers. */
function peerOf(session: Http2Session): string {
  const sock = session.socket;
  const a = sock?.remoteAddress ?? "unknown";
  return a.includes(":") ? `[${a}]:${sock?.remotePort}` : `${a}:${sock?.remotePort}`;
}

/** Pings idle peers so dead ones (and their subscriptions) are found within minutes, as the grpc-js ingress does. */
const KEEPALIVE_MS = 120_000;

export async function startGrpcH2(gw: Gateway, opts: GrpcOptions): Promise<Listening> {
  const limits = opts.limits ?? defaultConnectionLimits(opts.maxMessageBytes);
  const shared: Shared = {
    limits,
    receiving: new Set(),
    gw,
    log: opts.log,
    maxMessageBytes: opts.maxMessageBytes,
    maxBuffered: opts.maxBufferedMessages ?? DEFAULT_MAX_BUFFERED_MESSAGES,
    bp: opts.backpressure ?? DISCONNECT,
    reflection: opts.reflection !== false,
    subs: new Set(),
  };
  const h2options = {
    // nghttp2's own budget (header tables, queued output, streams); the request bytes Prism buffers are
    // bounded per connection and per worker below (src/ingress/limits.ts).
    maxSessionMemory: limits.maxSessionMemoryMb,
    settings: { maxConcurrentStreams: limits.maxStreamsPerConnection, initialWindowSize: 1 << 20, maxHeaderListSize: 64 * 1024 },
  };
  // server.tls: TLS with ALPN h2 only (src/ingress/tls.ts); the certificate follows the files on disk.
  const tls = opts.tls;
  let server: Http2Server | Http2SecureServer;
  let detachTls: (() => void) | undefined;
  if (tls) {
    const secure = createSecureServer({ ...h2options, ...tls.createOptions(limits.headerTimeoutMs) });
    detachTls = tls.attach(secure);
    server = secure;
  } else server = createServer(h2options);
  // The worker's cap on open connections (src/ingress/connection-cap.ts): TCP level, before TLS and HTTP/2.
  const cap = limits.connections;
  if (cap !== undefined) server.on("connection", (socket: Socket) => cap.admit(socket));
  const sessions = new Set<Session>();
  server.on("session", (session: Session) => {
    session[PEER] = peerOf(session);
    const now = Date.now();
    const state: SessionState = {
      streams: 0,
      held: 0,
      lastData: now,
      evict: () => {
        const e = bufferExhausted("the server (this connection held the most of them)", limits.budget.max);
        for (const i of shared.receiving) if (i.state === state) cutCall(i, shared, e);
        destroySession(session);
      },
      idleSince: now,
      started: false,
      createdAt: now,
      conn: { longPolls: 0 },
      cert: tls?.mtls ? peerCertificateOf(session.socket) : undefined,
    };
    session[STATE] = state;
    sessions.add(session);
    session.on("error", noop);
    session.once("close", () => {
      sessions.delete(session);
      limits.budget.forget(state);
    });
  });
  server.on("sessionError", noop);
  server.on("stream", (stream: Stream, headers: IncomingHttpHeaders) => {
    const st = (stream.session as Session | undefined)?.[STATE];
    if (st !== undefined) st.started = true;
    onStream(shared, stream, headers);
  });

  const keepalive = setInterval(() => {
    for (const s of sessions) {
      if (s.destroyed || s.closed) continue;
      // No answer to the previous ping for a whole interval: the peer is gone.
      if (s.pingPending) {
        s.destroy();
        continue;
      }
      s.pingPending = true;
      try {
        s.ping((err) => {
          if (!err) s.pingPending = false;
        });
      } catch {
        s.pingPending = false;
      }
    }
  }, KEEPALIVE_MS);
  keepalive.unref();

  // Connection limits: sessions that never complete a request (silent, half a HEADERS) or sit idle are
  // closed; a request that does not complete within request_timeout_ms is ended and its bytes released.
  const limitsSweep = setInterval(() => {
    const now = Date.now();
    const rt = limits.requestTimeoutMs;
    if (rt > 0) {
      for (const i of shared.receiving) {
        if (i.since !== 0 && now - i.since > rt) cutCall(i, shared, errors.exhausted(`the request did not complete within ${rt} ms (server.request_timeout_ms)`));
      }
    }
    for (const s of sessions) {
      const st = s[STATE];
      if (st === undefined || s.destroyed) continue;
      if (!st.started) {
        if (limits.headerTimeoutMs > 0 && now - st.createdAt > limits.headerTimeoutMs) s.destroy();
        continue;
      }
      if (st.streams === 0 && limits.idleTimeoutMs > 0 && st.idleSince !== 0 && now - st.idleSince > limits.idleTimeoutMs) {
        if (!s.closed) s.close();
        setTimeout(destroySession, 1000, s).unref();
      }
    }
  }, 1000);
  limitsSweep.unref();

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (e) => opts.log("error", `grpc: ${e.message}`));
  const port = (server.address() as AddressInfo).port;
  const shown = opts.host.includes(":") && !opts.host.startsWith("[") ? `[${opts.host}]:${port}` : `${opts.host}:${port}`;
  opts.log("info", `grpc: listening on ${shown} (node:http2${tls ? ", TLS" : ""})`);

  const grace = opts.shutdownGraceMs ?? 2000;
  let closed: Promise<void> | undefined;
  return {
    port,
    close: () =>
      (closed ??= new Promise<void>((resolve) => {
        clearInterval(keepalive);
        clearInterval(limitsSweep);
        detachTls?.();
        // Subscriptions never end on their own: end them first (UNAVAILABLE: clients reconnect elsewhere).
        const bye = errors.unavailable("server is shutting down");
        for (const s of [...shared.subs]) s.end(bye);
        // No new connections; GOAWAY on the open ones, whose calls in progress may finish.
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        for (const s of sessions) if (!s.closed && !s.destroyed) s.close();
        const timer = setTimeout(() => {
          for (const s of sessions) s.destroy();
        }, grace);
        timer.unref();
      })),
  };
}
