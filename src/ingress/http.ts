/**
 * HTTP/JSON routes (docs/protocol.md): health, the OpenAPI document, the
 * contract (protoc's descriptor set and the .proto files), raw-bytes
 * KeyValue routes, one POST route per unary method, and Server-Sent Events
 * subscriptions. Transport-neutral: it sees only HttpExchange (transport.ts).
 *
 * SSE backpressure: a subscriber whose unsent events exceed MAX_SSE_PENDING
 * bytes gets `event: error` (RESOURCE_EXHAUSTED) and its stream ends; Prism
 * never queues without bound for a slow reader.
 */
import { Code, PrismError, RetryableError, codeName, errors, httpStatus, toPrismError } from "../core/errors.js";
import { DISCONNECT, type Backpressure } from "../shedding/backpressure.js";
import { RequestContext, type Priority } from "../core/context.js";
import { METHOD_BY_ID, methodByName, type MessageCodec, type MethodDef } from "../core/methods.js";
import type { Gateway } from "../core/gateway.js";
import type { PubSubMessage, Subscription, SubscriptionSink } from "../backends/driver.js";
import { prism } from "../gen/prism.js";
import type { IngressOptions } from "./types.js";
import type { Cancelable, HttpApp, HttpExchange } from "./transport.js";
import { withCert } from "./tls.js";
import { withHeaders } from "../auth/credentials.js";
import { fromJson, toJson } from "./http-json.js";
import { applyIdempotencyHeader, IDEMPOTENCY_HEADER } from "./idempotency-header.js";
import { openApiDocument } from "./openapi.js";
import { descriptorIndex, protoSource } from "./descriptor-set.js";
import { WS_PATH } from "./ws.js";
import { isJsonContentType } from "./browser.js";
import { scanJson } from "./limits.js";
import { CONNECTION_DEFAULTS } from "../config/defaults.js";
import { payloadRoute } from "./transfer.js";

/** Unsent SSE bytes beyond which a slow subscriber is cut off. */
export const MAX_SSE_PENDING = 1024 * 1024;
/** Messages that may arrive between "live" and the ready event (normally none). */
const MAX_SSE_EARLY = 10_000;

const M = prism.v1.Method;
const KV_GET = METHOD_BY_ID[M.KV_GET]!;
const KV_SET = METHOD_BY_ID[M.KV_SET]!;
const KV_DELETE = METHOD_BY_ID[M.KV_DELETE]!;
const SUBSCRIBE = METHOD_BY_ID[M.PUBSUB_SUBSCRIBE]!;
const MEMBER_SUBSCRIBE = METHOD_BY_ID[M.REGISTRY_SUBSCRIBE]!;
const MESSAGE_CODEC = prism.v1.PubSubMessage as unknown as MessageCodec;

const PRIORITIES: ReadonlySet<string> = new Set(["critical", "high", "normal", "low"]);
const UINT = /^[0-9]+$/;

/** A routing failure with its own HTTP status (404 route, 405 method, 426 upgrade). */
class RouteError extends PrismError {
  constructor(
    readonly status: number,
    code: Code,
    reason: string,
    message: string,
    readonly allow?: string,
  ) {
    super(code, reason, message);
  }
}

const noRoute = (method: string, path: string) =>
  new RouteError(404, Code.NOT_FOUND, "PRISM_ERR_NOT_FOUND", `no route for ${method} ${path} (see /v1/openapi.json)`);
const notAllowed = (method: string, path: string, allow: string) =>
  new RouteError(405, Code.UNIMPLEMENTED, "PRISM_ERR_METHOD_NOT_ALLOWED", `${method} is not allowed on ${path} (allowed: ${allow})`, allow);

function errorBody(err: PrismError): string {
  return JSON.stringify({ error: { code: err.code, status: codeName[err.code] ?? "UNKNOWN", reason: err.reason, message: err.message } });
}

function statusOf(err: PrismError): number {
  if (err instanceof RouteError) return err.status;
  if (err.reason === "PRISM_ERR_FRAME_TOO_LARGE") return 413;
  return httpStatus(err.code);
}

/** Sends a JSON body; returns its size in bytes (metrics). */
function sendJson(ex: HttpExchange, status: number, body: string): number {
  const n = Buffer.byteLength(body);
  ex.send(status, { "content-type": "application/json", "content-length": n }, body);
  return n;
}

function decodeSegment(raw: string, field: string): string {
  if (raw.indexOf("%") < 0) return raw;
  try {
    return decodeURIComponent(raw);
  } catch {
    throw errors.invalidArgument(field, `invalid percent-encoding in ${JSON.stringify(raw.slice(0, 200))}`);
  }
}

/** The request context, with the optional deadline / priority / trace headers. */
function context(m: MethodDef, ex: HttpExchange): RequestContext {
  const ctx = new RequestContext(m, "http", ex.remoteAddress);
  const p = ex.header("x-prism-priority");
  if (p !== undefined) {
    if (!PRIORITIES.has(p)) throw errors.invalidArgument("x-prism-priority", `must be critical, high, normal or low, got ${JSON.stringify(p)}`);
    ctx.priority = p as Priority;
  }
  const t = ex.header("x-prism-timeout-ms");
  if (t !== undefined) {
    if (!UINT.test(t) || Number(t) <= 0) throw errors.invalidArgument("x-prism-timeout-ms", `must be a positive integer, got ${JSON.stringify(t)}`);
    ctx.deadline = Date.now() + Number(t);
  }
  const tp = ex.header("traceparent");
  if (tp !== undefined) ctx.traceparent = tp;
  ctx.conn = ex.conn;
  const cert = ex.peerCert;
  if (cert !== undefined) ctx.credentials = withCert(ctx.credentials, cert);
  ctx.credentials = withHeaders(ctx.credentials, ex.header("authorization"), ex.header("x-api-key"));
  ex.abortTarget = ctx;
  return ctx;
}

/** One SSE subscription: the driver's sink on one side, the HTTP stream on the other. */
class SseStream implements SubscriptionSink, Cancelable {
  sub: Subscription | undefined = undefined;
  ready = false;
  over = false;
  /** An error that arrived before the stream started. */
  failure: PrismError | undefined = undefined;
  private early: string[] | undefined = undefined;

  constructor(
    private readonly app: HttpRoutes,
    private readonly ex: HttpExchange,
    private readonly ctx: RequestContext,
  ) {}

  onMessage(msg: PubSubMessage): void {
    if (this.over) return;
    const chunk = `event: message\ndata: ${toJson(MESSAGE_CODEC, msg)}\n\n`;
    if (!this.ready) {
      const early = (this.early ??= []);
      if (early.length >= MAX_SSE_EARLY) return this.fail(errors.exhausted("subscription: too many messages before the stream started"));
      early.push(chunk);
      return;
    }
    this.write(chunk);
  }

  onError(err: Error): void {
    this.fail(toPrismError(err));
  }

  /** The subscription is live: headers, the ready event, then anything that came early. */
  start(sub: Subscription): void {
    this.sub = sub;
    this.ready = true;
    this.ex.openStream(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-cache",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    this.ex.write("event: ready\ndata: {}\n\n");
    const early = this.early;
    this.early = undefined;
    if (early) for (const c of early) if (!this.over) this.write(c);
  }

  private write(chunk: string): void {
    const max = this.app.maxPending;
    // Backpressure policy "drop": skip this message for the slow reader, keep the stream (src/shedding/backpressure.ts).
    if (this.app.backpressure.drop && this.ex.pendingBytes > max) return this.app.backpressure.dropped1("sse");
    if (!this.ex.write(chunk) && this.ex.pendingBytes > max)
      this.fail(errors.exhausted(`subscriber is too slow: more than ${max} bytes of events unsent`));
  }

  /** Ends the stream with an error event (or, before it started, records the error for the response). */
  fail(err: PrismError): void {
    if (this.over) return;
    this.over = true;
    this.app.streams.delete(this);
    if (this.ready) {
      this.ex.write(`event: error\ndata: ${errorBody(err)}\n\n`);
      this.ex.end();
      // A reader that stopped reading may never drain the socket: drop it after a grace period.
      setTimeout(destroyExchange, 5000, this.ex).unref();
    } else this.failure = err;
    this.closeSub();
  }

  /** The client went away. */
  cancel(): void {
    if (this.over) return;
    this.over = true;
    this.app.streams.delete(this);
    this.ctx.cancel();
    this.closeSub();
  }

  private closeSub(): void {
    const sub = this.sub;
    this.sub = undefined;
    sub?.close().catch(() => {});
  }
}

function destroyExchange(ex: HttpExchange): void {
  ex.destroy();
}

/** protoc's FileDescriptorSet of the contract (descriptor-set.ts). */
export const DESCRIPTOR_PATH = "/v1/descriptor.bin";
/** The .proto sources: GET /v1/proto lists them, GET /v1/proto/prism/v1/prism.proto is one. */
export const PROTO_PATH = "/v1/proto";

/** The contract for codegen and generic clients: the descriptor set, the .proto files it names, and their list. */
function contract(ex: HttpExchange, path: string): void {
  let index;
  try {
    index = descriptorIndex();
  } catch (e) {
    throw new PrismError(Code.INTERNAL, "PRISM_ERR_INTERNAL", `the descriptor set is unavailable: ${(e as Error).message}`);
  }
  if (path === DESCRIPTOR_PATH) {
    return ex.send(200, { "content-type": "application/octet-stream", "content-length": index.set.length }, index.set);
  }
  if (path === PROTO_PATH || path === `${PROTO_PATH}/`) {
    const names = [...index.files.keys()];
    const files = names.filter((n) => protoSource(n) !== undefined).sort();
    const body = JSON.stringify({
      descriptor_set: DESCRIPTOR_PATH,
      files: files.map((name) => ({ name, url: `${PROTO_PATH}/${name}` })),
      // Imported, not served: the well-known types ship with every protoc (its include folder).
      imports: names.filter((n) => !files.includes(n)).sort(),
    });
    return void sendJson(ex, 200, body);
  }
  const name = decodeSegment(path.slice(PROTO_PATH.length + 1), "path");
  const text = protoSource(name);
  if (text === undefined) {
    const why = index.files.has(name)
      ? `${name} is imported, not part of Prism: it ships with protoc (its include folder), and ${DESCRIPTOR_PATH} holds it`
      : `no .proto file ${JSON.stringify(name.slice(0, 200))} (GET ${PROTO_PATH} lists them)`;
    throw new RouteError(404, Code.NOT_FOUND, "PRISM_ERR_NOT_FOUND", why);
  }
  ex.send(200, { "content-type": "text/plain; charset=utf-8", "content-length": text.length }, text);
}

class HttpRoutes implements HttpApp {
  readonly streams = new Set<SseStream>();
  readonly backpressure: Backpressure;
  /** Unsent SSE bytes per subscriber before the backpressure policy applies. */
  readonly maxPending: number;
  private readonly maxBody: number;
  private readonly maxJsonKeys: number;

  constructor(
    private readonly gw: Gateway,
    private readonly opts: IngressOptions,
  ) {
    this.maxBody = opts.maxMessageBytes;
    this.maxJsonKeys = opts.limits?.maxJsonKeys ?? CONNECTION_DEFAULTS.max_json_keys;
    this.backpressure = opts.backpressure ?? DISCONNECT;
    this.maxPending = this.backpressure.bytes(MAX_SSE_PENDING);
  }

  handle(ex: HttpExchange): void {
    void this.serve(ex);
  }

  close(): void {
    const err = errors.unavailable("server shutting down");
    for (const s of [...this.streams]) s.fail(err);
  }

  private async serve(ex: HttpExchange): Promise<void> {
    try {
      await this.route(ex);
    } catch (e) {
      const err = toPrismError(e);
      if (err.code === Code.INTERNAL) this.opts.log("error", `http ${ex.method} ${ex.url.slice(0, 200)}: ${err.message}`);
      const body = errorBody(err);
      const headers: Record<string, string | number> = { "content-type": "application/json", "content-length": Buffer.byteLength(body) };
      if (err instanceof RouteError && err.allow) headers.allow = err.allow;
      // Shed, rate-limited, circuit open: tell the client when to come back (429 / 503 + Retry-After).
      if (err instanceof RetryableError) headers["retry-after"] = err.retryAfterSeconds;
      // RFC 6750: a 401 names the scheme it wants (API keys work too: Authorization: ApiKey <key>).
      if (err.code === Code.UNAUTHENTICATED) headers["www-authenticate"] = 'Bearer realm="prism"';
      ex.send(statusOf(err), headers, body);
    }
  }

  private route(ex: HttpExchange): Promise<void> | void {
    const url = ex.url;
    const q = url.indexOf("?");
    const path = q < 0 ? url : url.slice(0, q);
    const query = q < 0 ? "" : url.slice(q + 1);
    const method = ex.method;

    if (path.startsWith("/v1/ns/")) {
      const rest = path.slice(7);
      const slash = rest.indexOf("/");
      if (slash > 0) {
        const namespace = decodeSegment(rest.slice(0, slash), "namespace");
        const tail = rest.slice(slash);
        if (tail.startsWith("/kv/")) return this.kv(ex, method, namespace, decodeSegment(tail.slice(4), "key"), query, path);
        // ClaimCheck payloads: bodies streamed both ways (src/ingress/transfer.ts).
        if ((tail === "/payloads" || tail.startsWith("/payloads/")) && ex.raw !== undefined) {
          const { req, res } = ex.raw();
          const stallTimeoutMs = this.opts.limits?.requestTimeoutMs ?? CONNECTION_DEFAULTS.request_timeout_ms;
          return payloadRoute(this.gw, { req, res, context: (m) => context(m, ex), stallTimeoutMs }, method, namespace, tail.slice(9), query);
        }
        if (tail === "/subscribe") {
          if (method !== "GET") throw notAllowed(method, path, "GET");
          return this.subscribe(ex, namespace, query);
        }
        // MulticastRegistry.Subscribe: what is multicast to one member, as Server-Sent Events.
        if (tail.startsWith("/members/") && tail.endsWith("/subscribe")) {
          if (method !== "GET") throw notAllowed(method, path, "GET");
          const identity = decodeSegment(tail.slice(9, -10), "identity");
          return this.subscribe(ex, namespace, query, identity);
        }
      }
      throw noRoute(method, path);
    }
    if (path === "/healthz") {
      if (method !== "GET" && method !== "HEAD") throw notAllowed(method, path, "GET, HEAD");
      sendJson(ex, 200, '{"status":"SERVING"}');
      return;
    }
    if (path === "/metrics" && this.opts.metrics !== undefined) {
      if (method !== "GET" && method !== "HEAD") throw notAllowed(method, path, "GET, HEAD");
      return this.opts.metrics().then((m) => ex.send(200, { "content-type": m.contentType, "content-length": Buffer.byteLength(m.body) }, method === "HEAD" ? "" : m.body));
    }
    if (path === "/v1/openapi.json") {
      if (method !== "GET" && method !== "HEAD") throw notAllowed(method, path, "GET, HEAD");
      const doc = openApiDocument();
      return ex.send(200, { "content-type": "application/json", "content-length": doc.length }, doc);
    }
    if (path === DESCRIPTOR_PATH || path === PROTO_PATH || path.startsWith(`${PROTO_PATH}/`)) {
      if (method !== "GET" && method !== "HEAD") throw notAllowed(method, path, "GET, HEAD");
      return contract(ex, path);
    }
    if (path === WS_PATH) throw new RouteError(426, Code.FAILED_PRECONDITION, "PRISM_ERR_UPGRADE_REQUIRED", `${path} is a WebSocket endpoint: send an Upgrade request`);
    if (path.startsWith("/v1/")) {
      const parts = path.slice(4).split("/");
      const m = parts.length === 2 ? methodByName(parts[0]!, parts[1]!) : undefined;
      if (m !== undefined) {
        if (m.streaming) throw noRoute(method, `${path}: subscriptions are served as Server-Sent Events at GET /v1/ns/{namespace}/subscribe?pattern=...`);
        if (m.transfer !== undefined) throw noRoute(method, `${path}: payloads stream at PUT and GET /v1/ns/{namespace}/payloads`);
        if (method !== "POST") throw notAllowed(method, path, "POST");
        return this.unary(ex, m);
      }
    }
    throw noRoute(method, path);
  }

  private async unary(ex: HttpExchange, m: MethodDef): Promise<void> {
    // JSON only (src/ingress/browser.ts): text/plain and form bodies are what a web page can post
    // cross-site without a preflight. No Content-Type at all is taken as JSON (curl-like tools; a
    // browser that omits it still sends Origin, which the transport checks).
    const ct = ex.header("content-type");
    if (ct !== undefined && !isJsonContentType(ct)) {
      throw new RouteError(415, Code.INVALID_ARGUMENT, "PRISM_ERR_UNSUPPORTED_MEDIA_TYPE", `Content-Type ${JSON.stringify(ct.slice(0, 100))} is not accepted on ${m.path.slice(1)}: send application/json`);
    }
    const ctx = context(m, ex);
    const body = await ex.readBody(this.maxBody);
    ctx.bytesIn = body.length;
    let json: unknown = {};
    if (body.length > 0) {
      // Parse cost bounded before parsing: keys and nesting counted in one byte scan (src/ingress/limits.ts).
      const tooMany = scanJson(body, this.maxJsonKeys);
      if (tooMany !== undefined) throw new RouteError(tooMany.status, tooMany.status === 413 ? Code.RESOURCE_EXHAUSTED : Code.INVALID_ARGUMENT, "PRISM_ERR_JSON_TOO_COMPLEX", tooMany.message);
      try {
        json = JSON.parse(body.toString("utf8"));
      } catch (e) {
        throw errors.malformed(`invalid JSON: ${(e as Error).message}`);
      }
    }
    const req = fromJson(m.requestType, m.requestTypeName, json);
    applyIdempotencyHeader(ex.header(IDEMPOTENCY_HEADER), m.requestTypeName, req as { idempotencyKey?: string });
    const resp = await this.gw.unary(ctx, req);
    ctx.bytesOut = sendJson(ex, 200, toJson(m.responseType, resp));
  }

  private async kv(ex: HttpExchange, method: string, namespace: string, key: string, query: string, path: string): Promise<void> {
    switch (method) {
      case "GET":
      case "HEAD": {
        const ctx = context(KV_GET, ex);
        const resp = (await this.gw.unary(ctx, { namespace, key })) as prism.v1.IGetResponse;
        if (!resp.found) {
          if (method === "HEAD") return ex.send(404, { "content-length": 0 }, "");
          throw new PrismError(Code.NOT_FOUND, "PRISM_ERR_KEY_NOT_FOUND", `key ${JSON.stringify(key)} not found in namespace "${namespace}"`);
        }
        const value = resp.value ?? new Uint8Array(0);
        ctx.bytesOut = value.length;
        return ex.send(
          200,
          { "content-type": "application/octet-stream", "content-length": value.length, "x-prism-version": String(resp.version ?? 0) },
          value,
        );
      }
      case "PUT": {
        const ctx = context(KV_SET, ex);
        const req: prism.v1.ISetRequest = { namespace, key, value: undefined, ifAbsent: false };
        if (query !== "") {
          const ttl = new URLSearchParams(query).get("ttl");
          if (ttl !== null) {
            if (!UINT.test(ttl) || Number(ttl) > 4294967295) throw errors.invalidArgument("ttl", `must be a whole number of seconds, got ${JSON.stringify(ttl)}`);
            req.ttlSeconds = Number(ttl);
          }
        }
        const inm = ex.header("if-none-match");
        if (inm !== undefined) {
          if (inm.trim() !== "*") throw errors.invalidArgument("If-None-Match", `only "*" (write only if absent) is supported, got ${JSON.stringify(inm)}`);
          req.ifAbsent = true;
        }
        const im = ex.header("if-match");
        if (im !== undefined) {
          const v = im.trim().replace(/^"(.*)"$/, "$1");
          if (!UINT.test(v) || !Number.isSafeInteger(Number(v))) throw errors.invalidArgument("If-Match", `must be a version number, got ${JSON.stringify(im)}`);
          req.expectedVersion = Number(v);
        }
        applyIdempotencyHeader(ex.header(IDEMPOTENCY_HEADER), "SetRequest", req);
        req.value = await ex.readBody(this.maxBody);
        ctx.bytesIn = req.value.length;
        const resp = (await this.gw.unary(ctx, req)) as prism.v1.ISetResponse;
        ctx.bytesOut = sendJson(ex, 200, `{"version":${Number(resp.version ?? 0)}}`);
        return;
      }
      case "DELETE": {
        const ctx = context(KV_DELETE, ex);
        const req: prism.v1.IDeleteRequest = { namespace, key };
        applyIdempotencyHeader(ex.header(IDEMPOTENCY_HEADER), "DeleteRequest", req);
        const resp = (await this.gw.unary(ctx, req)) as prism.v1.IDeleteResponse;
        ctx.bytesOut = sendJson(ex, 200, resp.deleted ? '{"deleted":true}' : '{"deleted":false}');
        return;
      }
      default:
        throw notAllowed(method, path, "GET, HEAD, PUT, DELETE");
    }
  }

  private async subscribe(ex: HttpExchange, namespace: string, query: string, identity?: string): Promise<void> {
    const ctx = context(identity === undefined ? SUBSCRIBE : MEMBER_SUBSCRIBE, ex);
    const stream = new SseStream(this, ex, ctx);
    ex.abortTarget = stream;
    let sub: Subscription;
    try {
      const req = identity === undefined ? { namespace, pattern: new URLSearchParams(query).get("pattern") ?? "" } : { namespace, identity };
      sub = await this.gw.subscribe(ctx, req, stream);
    } catch (e) {
      stream.over = true;
      throw e;
    }
    if (stream.over) {
      // The client left, or the subscription failed, while it was being set up.
      sub.close().catch(() => {});
      if (stream.failure) throw stream.failure;
      return;
    }
    this.streams.add(stream);
    stream.start(sub);
  }
}

/** The HTTP/JSON + SSE routes, bound to a gateway. */
export function createHttpApp(gw: Gateway, opts: IngressOptions): HttpApp {
  // The JSON converters (protobufjs reflection of the protos) load on the first JSON call, not here:
  // an idle worker does not carry them (src/ingress/http-json.ts).
  return new HttpRoutes(gw, opts);
}
