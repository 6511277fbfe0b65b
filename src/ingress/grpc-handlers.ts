/**
 * grpc-js handlers for the method table: a unary handler and the server-stream
 * handler of PubSub.Subscribe. Both build a RequestContext from the call
 * (peer, grpc-timeout deadline, `prism-priority` and `traceparent` metadata)
 * and hand the decoded request to the Gateway.
 *
 * Errors are answered as the PrismError's gRPC code and message, with the
 * stable reason in the `prism-reason` trailer.
 */
import { constants as http2 } from "node:http2";
import {
  Metadata,
  type handleServerStreamingCall,
  type handleUnaryCall,
  type ServerUnaryCall,
  type ServerWritableStream,
  type StatusObject,
} from "@grpc/grpc-js";
import { RequestContext, type ConnectionState, type Priority } from "../core/context.js";
import { Code, errors, toPrismError, type PrismError } from "../core/errors.js";
import type { Gateway } from "../core/gateway.js";
import type { MethodDef } from "../core/methods.js";
import type { PubSubMessage, Subscription, SubscriptionSink } from "../backends/driver.js";
import { DecodeFailure, WIRE_BYTES } from "./grpc-codec.js";
import { DISCONNECT, type Backpressure } from "../shedding/backpressure.js";
import { peerCertificateOf, toPeerCertificate, withCert } from "./tls.js";
import type { PeerCertificate } from "../auth/types.js";
import { firstValue, withHeaders } from "../auth/credentials.js";

export type Log = (level: "info" | "warn" | "error", msg: string) => void;

/** The status a PrismError is answered with; the reason travels in the `prism-reason` trailer. */
export function grpcStatus(e: PrismError): StatusObject {
  const metadata = new Metadata();
  metadata.set("prism-reason", e.reason);
  return { code: e.code, details: wellFormed(e.message), metadata };
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * grpc-js percent-encodes details with encodeURI, which throws (and took the
 * process down, found by test/e2e/fuzz-ingress) on a lone surrogate, e.g. a
 * client string cut in the middle of a pair when quoted in a message.
 */
function wellFormed(s: string): string {
  return s.replace(LONE_SURROGATE, "\uFFFD");
}

/** Any thrown value → PrismError; unexpected (INTERNAL) ones are logged for operators. */
function failure(err: unknown, m: MethodDef, log: Log): PrismError {
  const e = toPrismError(err);
  if (e.code === Code.INTERNAL) log("error", `grpc ${m.path}: ${e.message}`);
  return e;
}

const PRIORITIES: ReadonlySet<string> = new Set<Priority>(["critical", "high", "normal", "low"]);
const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

/**
 * The verified client certificate of the call's connection. getPeerCertificate() costs ~50 µs, so
 * it is read once per connection and cached on the socket (peerCertificateOf), reached through
 * grpc-js internals (call.call.stream: no interceptors); if those change, through the public
 * getAuthContext() on every call.
 */
function callCert(call: ServerUnaryCall<any, any> | ServerWritableStream<any, any>): PeerCertificate | undefined {
  const socket = (call as unknown as { call?: { stream?: { session?: { socket?: unknown } } } }).call?.stream?.session?.socket;
  if (socket !== undefined) return peerCertificateOf(socket);
  const peer = call.getAuthContext().sslPeerCertificate;
  return peer === undefined ? undefined : toPeerCertificate(peer);
}

/** The connection state of a call by its peer (src/ingress/grpc-js-limits.ts: long polls per connection). */
export type ConnLookup = (peer: string) => ConnectionState | undefined;

/**
 * The call's RequestContext. Throws INVALID_ARGUMENT for an unknown `prism-priority`.
 * mtls: put the connection's verified client certificate on ctx.credentials.
 */
export function contextOf(m: MethodDef, call: ServerUnaryCall<any, any> | ServerWritableStream<any, any>, mtls = false, conns?: ConnLookup): RequestContext {
  const peer = call.getPeer();
  const ctx = new RequestContext(m, "grpc", peer);
  if (conns !== undefined) ctx.conn = conns(peer);
  if (mtls) {
    const cert = callCert(call);
    if (cert !== undefined) ctx.credentials = withCert(ctx.credentials, cert);
  }
  const authz = md0(call, "authorization");
  const key = md0(call, "x-api-key");
  if (authz !== undefined || key !== undefined) ctx.credentials = withHeaders(ctx.credentials, authz, key);
  const d = call.getDeadline();
  const ms = typeof d === "number" ? d : d.getTime();
  if (Number.isFinite(ms)) ctx.deadline = ms;
  const md = call.metadata;
  const p = md.get("prism-priority");
  if (p.length !== 0) {
    const v = String(p[0]);
    if (!PRIORITIES.has(v)) throw errors.invalidArgument("prism-priority", `"${v.slice(0, 40)}" is not one of critical, high, normal, low`);
    ctx.priority = v as Priority;
  }
  const t = md.get("traceparent");
  // W3C trace context: a malformed traceparent is ignored, not refused.
  if (t.length !== 0 && typeof t[0] === "string" && TRACEPARENT.test(t[0])) ctx.traceparent = t[0];
  return ctx;
}

/** The first value of a metadata entry (src/auth/credentials.ts reads them). */
function md0(call: ServerUnaryCall<any, any> | ServerWritableStream<any, any>, name: string): string | undefined {
  const v = call.metadata.get(name);
  return v.length === 0 ? undefined : firstValue(v[0] as string | Buffer);
}

// One shared 'cancelled' listener (no closure per call): the context rides on the call.
const CTX = Symbol("prism.ctx");
function onCancelled(this: { [CTX]?: RequestContext }): void {
  this[CTX]?.cancel(errors.cancelled("call"));
}

export function unaryHandler(gw: Gateway, m: MethodDef, log: Log, mtls = false, conns?: ConnLookup): handleUnaryCall<any, any> {
  return (call, callback) => {
    void runUnary(gw, m, log, call, callback, mtls, conns);
  };
}

async function runUnary(
  gw: Gateway,
  m: MethodDef,
  log: Log,
  call: ServerUnaryCall<any, any>,
  callback: (err: StatusObject | null, value?: object) => void,
  mtls: boolean,
  conns: ConnLookup | undefined,
): Promise<void> {
  let res: Uint8Array;
  try {
    const req = call.request;
    if (req instanceof DecodeFailure) throw req.toError();
    const ctx = contextOf(m, call, mtls, conns);
    ctx.bytesIn = req[WIRE_BYTES] ?? 0;
    (call as unknown as { [CTX]: RequestContext })[CTX] = ctx;
    call.once("cancelled", onCancelled);
    // Encoded here (once; responseSerialize passes bytes through) so the metrics see the size.
    res = m.responseType.encode(await gw.unary(ctx, req)).finish();
    ctx.bytesOut = res.length;
  } catch (e) {
    callback(grpcStatus(failure(e, m, log)));
    return;
  }
  callback(null, res);
}

/**
 * Most messages a subscriber may have buffered (written but not yet taken by
 * HTTP/2 flow control) before the server drops it. A subscriber that stops
 * reading must not grow the gateway's memory without bound; for now it is cut
 * off (RST_STREAM ENHANCE_YOUR_CALM, which gRPC clients report as
 * RESOURCE_EXHAUSTED) rather than slowing the publishers down.
 */
export { DEFAULT_MAX_BUFFERED_MESSAGES } from "./grpc.js";

/** One live PubSub.Subscribe call: the driver's sink on one side, the gRPC stream on the other. */
class SubscribeCall implements SubscriptionSink {
  private sub: Subscription | undefined = undefined;
  private done = false;

  constructor(
    private readonly call: ServerWritableStream<any, PubSubMessage>,
    private readonly ctx: RequestContext,
    private readonly maxBuffered: number,
    private readonly active: Set<SubscribeCall>,
    private readonly log: Log,
    private readonly bp: Backpressure,
  ) {
    active.add(this);
    call.once("cancelled", () => this.finish());
    call.once("close", () => this.finish());
  }

  /** Called once the gateway resolved: tell the client the subscription is live. */
  live(sub: Subscription): void {
    if (this.done) {
      this.closeSub(sub);
      return;
    }
    this.sub = sub;
    this.call.sendMetadata(new Metadata());
  }

  onMessage(msg: PubSubMessage): void {
    if (this.done) return;
    // In object mode writableLength counts messages waiting for flow control.
    if (this.call.writableLength >= this.maxBuffered) {
      // Backpressure policy "drop": skip the message, keep the subscription (src/shedding/backpressure.ts).
      if (this.bp.drop) return this.bp.dropped1("grpc");
      this.overflow();
      return;
    }
    this.call.write(msg);
  }

  onError(err: Error): void {
    this.fail(toPrismError(err));
  }

  /** Ends the call with an error status (after the messages already written). */
  fail(e: PrismError): void {
    if (this.done) return;
    this.call.emit("error", grpcStatus(e));
    this.finish();
  }

  private overflow(): void {
    const e = errors.exhausted(`subscriber too slow: more than ${this.maxBuffered} messages buffered`);
    this.log("warn", `grpc ${this.ctx.method.path} ${this.ctx.peer}: ${e.message}; dropping the subscription`);
    // The status cannot overtake the buffered messages, so reset the stream;
    // the error status is the fallback should the HTTP/2 stream be unreachable.
    this.fail(e);
    const stream = (this.call as unknown as { call?: { stream?: { closed?: boolean; close?(code: number): void } } }).call?.stream;
    if (stream && !stream.closed && typeof stream.close === "function") stream.close(http2.NGHTTP2_ENHANCE_YOUR_CALM);
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.active.delete(this);
    this.ctx.cancel(errors.cancelled("subscription"));
    const sub = this.sub;
    this.sub = undefined;
    if (sub) this.closeSub(sub);
  }

  private closeSub(sub: Subscription): void {
    sub.close().catch((e: unknown) => this.log("warn", `grpc ${this.ctx.method.path}: closing subscription: ${(e as Error).message}`));
  }
}

/** Open subscriptions of one server, so close() can end them. */
export class Subscriptions {
  readonly active = new Set<SubscribeCall>();

  /** Ends every open subscription with UNAVAILABLE (clients reconnect elsewhere). */
  endAll(): void {
    const e = errors.unavailable("server is shutting down");
    for (const s of [...this.active]) s.fail(e);
  }
}

export function subscribeHandler(
  gw: Gateway,
  m: MethodDef,
  log: Log,
  subs: Subscriptions,
  maxBuffered: number,
  bp: Backpressure = DISCONNECT,
  mtls = false,
  conns?: ConnLookup,
): handleServerStreamingCall<any, PubSubMessage> {
  return (call) => {
    void runSubscribe(gw, m, log, subs, maxBuffered, call, bp, mtls, conns);
  };
}

async function runSubscribe(
  gw: Gateway,
  m: MethodDef,
  log: Log,
  subs: Subscriptions,
  maxBuffered: number,
  call: ServerWritableStream<any, PubSubMessage>,
  bp: Backpressure,
  mtls: boolean,
  conns: ConnLookup | undefined,
): Promise<void> {
  let s: SubscribeCall | undefined;
  try {
    const req = call.request;
    if (req instanceof DecodeFailure) throw req.toError();
    const ctx = contextOf(m, call, mtls, conns);
    s = new SubscribeCall(call, ctx, maxBuffered, subs.active, log, bp);
    s.live(await gw.subscribe(ctx, req, s));
  } catch (e) {
    const pe = failure(e, m, log);
    if (s) s.fail(pe);
    else call.emit("error", grpcStatus(pe));
  }
}
