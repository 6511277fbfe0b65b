/**
 * The transport adapter: the only module that knows node:http and `ws`.
 *
 * Routes (src/ingress/http.ts) and the frame dispatcher (src/ingress/ws.ts)
 * see only the small seam below: an HttpExchange per request, a WsPeer per
 * WebSocket. A faster transport can replace this file without touching them.
 */
import type { Socket } from "node:net";
import { createServer, type IncomingMessage, type ServerResponse, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { Duplex } from "node:stream";
import type { WebSocket, RawData } from "ws";
import { requireCjs } from "../core/require-cjs.js";
import type { Gateway } from "../core/gateway.js";
import { errors } from "../core/errors.js";
import type { ConnectionState } from "../core/context.js";
import type { IngressOptions, Listening } from "./types.js";
import { createHttpApp } from "./http.js";
import { createWsApp, WS_PATH } from "./ws.js";
import { bufferExhausted, defaultConnectionLimits, type BudgetHolder, type ConnectionLimits, type PrincipalBytes, type RequestBudget } from "./limits.js";
import { BrowserGuard, refusalBody, type Refusal } from "./browser.js";
import { peerCertificateOf, withCert } from "./tls.js";
import type { Credentials, PeerCertificate } from "../auth/types.js";
import { firstValue, withHeaders } from "../auth/credentials.js";

const { WebSocketServer } = requireCjs("ws") as typeof import("ws");

// ------------------------------------------------------------------ the seam

/** Something to stop when the client goes away early. */
export interface Cancelable {
  cancel(reason?: Error): void;
}

/** One HTTP request and its response, as the routes see it. */
export interface HttpExchange {
  readonly method: string;
  /** The raw request target: path (still percent-encoded) and query. */
  readonly url: string;
  readonly remoteAddress: string;
  /** A request header by lower-case name (repeated headers joined with ", "). */
  header(name: string): string | undefined;
  /** The connection's counters (long polls per connection). */
  readonly conn: ConnectionState;
  /** The connection's verified mTLS client certificate (server.tls.client_ca); undefined: none. */
  readonly peerCert: PeerCertificate | undefined;
  /**
   * The whole body. Past `limit` bytes it rejects with PRISM_ERR_FRAME_TOO_LARGE
   * and stops buffering (the rest is discarded, then the connection dropped if
   * the client keeps sending far beyond the limit).
   */
  readBody(limit: number): Promise<Buffer>;
  /** Cancelled when the connection closes before the response is complete. */
  abortTarget: Cancelable | undefined;
  /** A complete response. No-op once a response was started or the connection is gone. */
  send(status: number, headers: Record<string, string | number>, body: Uint8Array | string): void;
  /** Starts a streamed response (SSE). */
  openStream(status: number, headers: Record<string, string | number>): void;
  /** Writes to a streamed response; false: the chunk was queued in memory (see pendingBytes). */
  write(chunk: string): boolean;
  /** Bytes queued in memory, not yet handed to the socket. */
  readonly pendingBytes: number;
  /** Ends a streamed response. */
  end(): void;
  /** Drops the connection if the response was not fully sent yet (a reused keep-alive connection is left alone). */
  destroy(): void;
  /** The node:http request and response, for routes that stream bodies both ways (payloads: src/ingress/transfer.ts). */
  raw?(): { req: IncomingMessage; res: ServerResponse };
}

/** Routes implement this. */
export interface HttpApp {
  handle(ex: HttpExchange): void;
  /** Server shutdown: end open streams. */
  close(): void;
}

/** One WebSocket connection, as the dispatcher sees it. */
export interface WsPeer {
  readonly remoteAddress: string;
  /** The connection's verified mTLS client certificate (server.tls.client_ca); undefined: none. */
  readonly peerCert: PeerCertificate | undefined;
  /** Bearer token / API key of the upgrade request's headers (src/auth/credentials.ts); undefined: none. */
  readonly credentials: Credentials | undefined;
  /** Bytes queued for sending. */
  readonly bufferedAmount: number;
  send(frame: Uint8Array): void;
  close(code: number, reason: string): void;
}

/** The dispatcher's per-connection handler. */
export interface WsSession {
  /** Calls or subscriptions in progress (an idle connection has none). */
  readonly busy: boolean;
  /** The credentials the connection's next calls carry (the upgrade headers', or an AUTH frame's). */
  readonly credentials?: Credentials | undefined;
  message(data: Buffer, binary: boolean): void;
  /** The connection is gone (either side closed it). */
  closed(): void;
}

export interface WsApp {
  open(peer: WsPeer): WsSession;
}

// ------------------------------------------------------------------ node:http binding

/** A refused (too large) body is read and dropped up to this many times the limit, then the connection is cut. */
const DISCARD_FACTOR = 2;

/**
 * The exchanges of one connection whose response has not ended (usually none
 * or one; more only with pipelining). One 'close' listener per connection
 * instead of one per response: adding and removing a listener on every
 * request was a measurable share of the HTTP GET path.
 */
const LIVE = Symbol("prism.liveExchanges");
const CONN = Symbol("prism.connState");
type TrackedSocket = IncomingMessage["socket"] & { [LIVE]?: NodeExchange[]; [CONN]?: ConnectionState };

function track(ex: NodeExchange, socket: TrackedSocket): void {
  const live = socket[LIVE];
  if (live === undefined) {
    socket[LIVE] = [ex];
    socket.once("close", onSocketClose);
    return;
  }
  // Keep-alive: the previous response has normally ended by now; drop the ended ones.
  let k = 0;
  for (let i = 0; i < live.length; i++) if (!live[i]!.ended) live[k++] = live[i]!;
  live.length = k;
  live.push(ex);
}

function onSocketClose(this: TrackedSocket): void {
  const live = this[LIVE];
  this[LIVE] = undefined;
  if (live !== undefined) for (const ex of live) ex.closed();
}

class NodeExchange implements HttpExchange {
  abortTarget: Cancelable | undefined = undefined;
  private done = false;

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    /** The worker's budget of unfinished request bytes (src/ingress/limits.ts). */
    private readonly budget: RequestBudget,
    /** Client certificates are verified (server.tls.client_ca). */
    private readonly mtls: boolean,
    /** Unfinished request bytes per principal (server.per_principal.max_buffered_bytes); undefined: not counted. */
    private readonly principals: PrincipalBytes | undefined = undefined,
  ) {
    track(this, req.socket);
  }

  /** The response has ended (end() called): a disconnect no longer cancels anything. */
  get ended(): boolean {
    return this.res.writableEnded;
  }

  get method(): string {
    return this.req.method ?? "GET";
  }
  get url(): string {
    return this.req.url ?? "/";
  }
  get remoteAddress(): string {
    return this.req.socket.remoteAddress ?? "";
  }

  get conn(): ConnectionState {
    const sock = this.req.socket as TrackedSocket;
    return (sock[CONN] ??= { longPolls: 0 });
  }

  get peerCert(): PeerCertificate | undefined {
    return this.mtls ? peerCertificateOf(this.req.socket) : undefined;
  }

  header(name: string): string | undefined {
    const v = this.req.headers[name];
    return Array.isArray(v) ? v.join(", ") : v;
  }

  readBody(limit: number): Promise<Buffer> {
    const req = this.req;
    const declared = Number(req.headers["content-length"] ?? -1);
    return new Promise<Buffer>((resolve, reject) => {
      if (declared > limit) {
        this.discard(0, limit);
        reject(errors.frameTooLarge(declared, limit));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      // Bytes of this unfinished body held against the worker's budget (released once it is complete or dropped),
      // and against its principal's (named by the headers' credentials, which arrived before the body).
      const budget = this.budget;
      const pb = this.principals;
      let key: string | undefined;
      // The body as a holder in the worker's budget: when the budget is full, the holder of the most bytes
      // is dropped for a smaller one (RequestBudget), which may be this body while it stalls.
      const holder: BudgetHolder = { held: 0, lastData: 0, evict: () => refuse(bufferExhausted("the server (this request held the most of them)", budget.max)) };
      const unreserve = () => {
        if (holder.held !== 0) {
          budget.release(holder.held);
          if (key !== undefined) pb!.release(key, holder.held);
          holder.held = 0;
        }
        budget.forget(holder);
      };
      const stop = () => {
        req.off("data", onData);
        req.off("end", onEnd);
        req.off("error", onError);
        req.off("close", onClose);
        chunks.length = 0;
        unreserve();
      };
      // Too many unfinished bytes (the principal's, or the worker's): read nothing more of this body (reading to
      // discard would still make garbage at the sender's pace); answer 429, then drop the connection.
      const refuse = (e: Error) => {
        stop();
        req.pause();
        this.dropAfterResponse();
        reject(e);
      };
      const onData = (c: Buffer) => {
        size += c.length;
        if (size > limit) {
          stop();
          this.discard(size, limit);
          reject(errors.frameTooLarge(size, limit));
          return;
        }
        if (pb !== undefined) {
          key ??= pb.keyOf(this.credentials());
          if (!pb.reserve(key, c.length)) return refuse(pb.refusal(key));
        }
        holder.lastData = Date.now();
        if (!budget.reserve(c.length, holder)) {
          pb?.release(key!, c.length);
          return refuse(bufferExhausted("request body", budget.max));
        }
        holder.held += c.length;
        chunks.push(c);
      };
      const onEnd = () => {
        req.off("error", onError);
        req.off("close", onClose);
        unreserve();
        resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
      };
      const onError = (e: Error) => {
        stop();
        reject(errors.cancelled(`request body: ${e.message}`));
      };
      // The connection went away (or node's requestTimeout cut it) before the body ended.
      const onClose = () => {
        if (req.complete) return;
        stop();
        reject(errors.cancelled("request body: connection closed"));
      };
      req.on("data", onData);
      req.once("end", onEnd);
      req.once("error", onError);
      req.once("close", onClose);
    });
  }

  /** The credentials of this request's headers (and the connection's verified certificate), as the HTTP app collects them. */
  private credentials(): Credentials | undefined {
    const cert = this.peerCert;
    return withHeaders(cert === undefined ? undefined : withCert(undefined, cert), this.header("authorization"), this.header("x-api-key"));
  }

  /** Closes the connection once the response is out (or at once if none comes within a second). */
  private dropAfterResponse(): void {
    const sock = this.req.socket;
    const t = setTimeout(() => sock.destroy(), 1000);
    t.unref();
    this.res.once("finish", () => {
      clearTimeout(t);
      sock.destroy();
    });
  }

  /**
   * Reads and drops the rest of a refused body so the client can read the 413
   * (closing while it still sends makes it see a reset instead); a client that
   * keeps sending well past the limit is cut off.
   */
  private discard(alreadyRead: number, limit: number): void {
    const req = this.req;
    const cap = limit * DISCARD_FACTOR;
    let seen = alreadyRead;
    req.on("data", (c: Buffer) => {
      seen += c.length;
      if (seen > cap) req.socket.destroy();
    });
    req.resume();
  }

  send(status: number, headers: Record<string, string | number>, body: Uint8Array | string): void {
    const res = this.res;
    if (this.done || res.headersSent || res.destroyed) return;
    this.done = true;
    res.writeHead(status, headers);
    res.end(body);
  }

  openStream(status: number, headers: Record<string, string | number>): void {
    const res = this.res;
    if (res.headersSent || res.destroyed) return;
    this.done = true;
    res.writeHead(status, headers);
    res.flushHeaders();
  }

  write(chunk: string): boolean {
    const res = this.res;
    if (res.destroyed || res.writableEnded) return false;
    return res.write(chunk);
  }

  get pendingBytes(): number {
    return this.res.writableLength;
  }

  end(): void {
    if (!this.res.writableEnded) this.res.end();
  }

  destroy(): void {
    if (!this.res.writableFinished) this.res.destroy();
  }

  raw(): { req: IncomingMessage; res: ServerResponse } {
    return { req: this.req, res: this.res };
  }

  /** The connection closed: if the response had not finished, the call is cancelled. */
  closed(): void {
    const t = this.abortTarget;
    this.abortTarget = undefined;
    if (t !== undefined && !this.res.writableFinished) t.cancel(errors.cancelled("client disconnected"));
  }
}

/**
 * One write system call per response frame costs more CPU than the whole
 * request path (measured: ~48% of Prism's CPU under load). So the socket is
 * corked at the first send of a loop turn and uncorked in setImmediate: every
 * frame answered in that turn leaves in one writev. ws corks/uncorks around
 * each frame itself; cork is a counter, so our outer cork holds them.
 */
function uncorkPeer(peer: NodePeer): void {
  peer.corked = false;
  peer.socket?.uncork();
}

class NodePeer implements WsPeer {
  corked = false;
  readonly socket: Duplex | undefined;
  constructor(
    private readonly ws: WebSocket,
    readonly remoteAddress: string,
    readonly peerCert: PeerCertificate | undefined,
    readonly credentials: Credentials | undefined,
  ) {
    // ws keeps its socket private; without it we simply do not batch.
    this.socket = (ws as unknown as { _socket?: Duplex })._socket;
  }
  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }
  send(frame: Uint8Array): void {
    if (this.ws.readyState !== 1) return;
    if (!this.corked && this.socket !== undefined) {
      this.corked = true;
      this.socket.cork();
      setImmediate(uncorkPeer, this);
    }
    this.ws.send(frame);
  }
  close(code: number, reason: string): void {
    this.ws.close(code, reason);
  }
}

function terminate(ws: WebSocket): void {
  ws.terminate();
}

function rejectUpgrade(socket: Duplex, status: string, message: string, body = JSON.stringify({ error: { code: 5, status: "NOT_FOUND", reason: "PRISM_ERR_NOT_FOUND", message } })): void {
  socket.end(
    `HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
  socket.destroy();
}

/** Answers a request refused by the Origin / Host checks (src/ingress/browser.ts). */
function refuseRequest(res: ServerResponse, r: Refusal): void {
  const body = refusalBody(r);
  res.writeHead(r.status, { "content-type": "application/json", "content-length": Buffer.byteLength(body), connection: "close" });
  res.end(body);
}

/** CORS for an allowed Origin: what a browser may send, for how long it may cache the answer. */
const CORS_ALLOW_HEADERS = "authorization, x-api-key, content-type, x-prism-priority, x-prism-timeout-ms, traceparent, tracestate, if-match, if-none-match, idempotency-key";
const CORS_ALLOW_METHODS = "GET, HEAD, POST, PUT, DELETE";

/** Per WebSocket connection: what the monitor needs (unfinished frame bytes, activity, liveness). */
interface WsWatch {
  ws: WebSocket;
  session: WsSession;
  /** Time of the last bytes received. */
  lastData: number;
  /** Since when the bytes held in ws's receiver are one unfinished message (0: none). */
  pendingSince: number;
  /** Bytes of unfinished messages held against the worker's budget (and the principal's): a BudgetHolder. */
  held: number;
  /** Releases what it holds and terminates the connection (RequestBudget eviction). */
  evict(): void;
  /** The principal `held` is charged to (server.per_principal.max_buffered_bytes), named when a message starts; undefined: none. */
  key: string | undefined;
  /** Messages completed; a change since the last chunk means the bytes held now are a new message. */
  messages: number;
  seenMessages: number;
  /** When a liveness ping went out without an answer yet (0: none). */
  pinged: number;
}

/** Bytes ws's receiver holds for a message not yet complete (ws 8 internals; 0 if they change). */
function receiverPending(ws: WebSocket): number {
  const r = (ws as unknown as { _receiver?: { _bufferedBytes?: number; _messageLength?: number } })._receiver;
  if (r === undefined) return 0;
  return (r._bufferedBytes ?? 0) + (r._messageLength ?? 0);
}

/** How often the WebSocket monitor looks at every connection. */
const WS_SWEEP_MS = 1000;

/** Serves HTTP/JSON, SSE and the binary WebSocket on one node:http server. */
export async function startHttpTransport(gw: Gateway, opts: IngressOptions): Promise<Listening> {
  const limits: ConnectionLimits = opts.limits ?? defaultConnectionLimits(opts.maxMessageBytes);
  const budget = limits.budget;
  const guard = new BrowserGuard(opts.browser ?? { allowedOrigins: [] }, opts.host);
  const app: HttpApp = createHttpApp(gw, opts);
  const wsApp: WsApp = createWsApp(gw, opts);
  const wss = new WebSocketServer({ noServer: true, maxPayload: opts.maxMessageBytes, perMessageDeflate: false });

  // node:http's own clocks: a connection that sends no (or half a) request head within headersTimeout
  // and a request whose body has not arrived within requestTimeout get 408 and are closed; an idle
  // keep-alive connection closes after keepAliveTimeout. Long polls and SSE streams are not idle.
  const headersTimeout = limits.headerTimeoutMs;
  const requestTimeout = limits.requestTimeoutMs > 0 && headersTimeout > 0 ? Math.max(limits.requestTimeoutMs, headersTimeout) : limits.requestTimeoutMs;
  const checkEvery = Math.max(100, Math.min(1000, Math.floor((headersTimeout || requestTimeout || 4000) / 4)));
  const httpOptions = {
    headersTimeout,
    requestTimeout,
    connectionsCheckingInterval: checkEvery,
    keepAliveTimeout: limits.idleTimeoutMs > 0 ? Math.min(5000, limits.idleTimeoutMs) : 5000,
  };
  // server.tls: HTTPS (and wss:// upgrades on it); the certificate follows the files on disk (src/ingress/tls.ts).
  const tls = opts.tls;
  const mtls = tls?.mtls === true;
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const origin = req.headers.origin;
    const refusal = guard.check(req.headers.host, origin);
    if (refusal !== undefined) return refuseRequest(res, refusal);
    if (origin !== undefined) {
      res.setHeader("access-control-allow-origin", origin);
      res.setHeader("vary", "Origin");
      if (req.method === "OPTIONS") {
        res.writeHead(204, { "access-control-allow-methods": CORS_ALLOW_METHODS, "access-control-allow-headers": CORS_ALLOW_HEADERS, "access-control-max-age": "600", "access-control-expose-headers": "x-prism-version, retry-after, www-authenticate" });
        res.end();
        return;
      }
      res.setHeader("access-control-expose-headers", "x-prism-version, retry-after, www-authenticate");
    }
    try {
      app.handle(new NodeExchange(req, res, budget, mtls, limits.principalBytes));
    } catch (e) {
      opts.log("error", `http: ${(e as Error).message}`);
      if (!res.headersSent) res.writeHead(500).end();
    }
  };
  let detachTls: (() => void) | undefined;
  let server: Server;
  if (tls) {
    const secure = createHttpsServer({ ...httpOptions, ...tls.createOptions(limits.headerTimeoutMs) }, onRequest);
    detachTls = tls.attach(secure);
    server = secure;
  } else server = createServer(httpOptions, onRequest);
  // The worker's cap on open connections (src/ingress/connection-cap.ts): TCP level, before TLS and HTTP.
  const cap = limits.connections;
  if (cap !== undefined) server.on("connection", (socket: Socket) => cap.admit(socket));
  // A request whose head or body did not arrive within its timeout is answered 408 (as node:http does when
  // no clientError listener is set), a head too large 431, anything else that does not parse 400; nothing
  // is written when a response had already started on the connection.
  server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
    const started = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent === true;
    if (socket.writable && !started) {
      const status = err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? "408 Request Timeout" : err.code === "HPE_HEADER_OVERFLOW" ? "431 Request Header Fields Too Large" : "400 Bad Request";
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`);
    }
    socket.destroy();
  });

  // WebSocket connections: idle ones close, dead ones are found by ping, unfinished frames are bounded in time and bytes.
  const watched = new Set<WsWatch>();
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const w of watched) {
      if (w.ws.readyState !== 1) continue;
      if (w.pendingSince !== 0 && limits.requestTimeoutMs > 0 && now - w.pendingSince > limits.requestTimeoutMs) {
        w.ws.close(1008, `a message did not complete within ${limits.requestTimeoutMs} ms`);
        setTimeout(terminate, 1000, w.ws).unref();
        continue;
      }
      const idle = limits.idleTimeoutMs;
      if (idle <= 0) continue;
      const quiet = now - w.lastData;
      if (!w.session.busy && w.pendingSince === 0) {
        if (quiet > idle) {
          w.ws.close(1001, `idle for more than ${idle} ms`);
          setTimeout(terminate, 1000, w.ws).unref();
        }
        continue;
      }
      // Busy (a subscription, a long poll) but silent: ping; no answer within half the idle time → gone.
      if (w.pinged !== 0 && now - w.pinged > idle / 2) {
        w.ws.terminate();
        continue;
      }
      if (w.pinged === 0 && quiet > idle / 2) {
        w.pinged = now;
        try {
          w.ws.ping();
        } catch {
          w.ws.terminate();
        }
      }
    }
  }, WS_SWEEP_MS);
  sweep.unref();

  const watch = (ws: WebSocket, session: WsSession, socket: Duplex): WsWatch => {
    const w: WsWatch = { ws, session, lastData: Date.now(), pendingSince: 0, held: 0, evict: () => drop(w, socket), key: undefined, messages: 0, seenMessages: 0, pinged: 0 };
    watched.add(w);
    // After ws's own 'data' listener (added by handleUpgrade): the receiver has taken the chunk.
    socket.on("data", () => {
      const now = Date.now();
      w.lastData = now;
      w.pinged = 0;
      const pending = receiverPending(ws);
      if (w.messages !== w.seenMessages) {
        w.seenMessages = w.messages;
        w.pendingSince = pending > 0 ? now : 0;
      } else if (pending === 0) w.pendingSince = 0;
      else if (w.pendingSince === 0) w.pendingSince = now;
      const delta = pending - w.held;
      // The principal whose budget this connection's unfinished bytes count against: its credentials now
      // (upgrade headers, or the AUTH frame before), named when the bytes start, kept until they are 0.
      const pb = limits.principalBytes;
      if (pb !== undefined && w.key === undefined && delta > 0) w.key = pb.keyOf(session.credentials);
      if (delta > 0) {
        const overPrincipal = pb !== undefined && !pb.reserve(w.key!, delta);
        if (overPrincipal || pending > limits.maxConnectionBufferedBytes || !budget.reserve(delta, w)) {
          // Too many unfinished bytes (this connection, its principal, or the worker): drop the connection now,
          // so nothing more is read for it and what its unfinished frame holds becomes garbage.
          if (pb !== undefined) pb.release(w.key!, overPrincipal ? w.held : w.held + delta);
          w.key = undefined;
          budget.release(w.held);
          w.held = 0;
          socket.pause();
          ws.terminate();
          return;
        }
      } else if (delta < 0) {
        budget.release(-delta);
        if (w.key !== undefined) pb!.release(w.key, -delta);
      }
      w.held = pending;
      if (pending === 0) w.key = undefined;
    });
    return w;
  };
  const unwatch = (w: WsWatch) => {
    watched.delete(w);
    budget.release(w.held);
    if (w.key !== undefined) limits.principalBytes?.release(w.key, w.held);
    w.key = undefined;
    w.held = 0;
    budget.forget(w);
  };
  // The worker's budget is full and this connection's unfinished frame is the largest: it goes (its bytes now).
  const drop = (w: WsWatch, socket: Duplex) => {
    budget.release(w.held);
    if (w.key !== undefined) limits.principalBytes?.release(w.key, w.held);
    w.key = undefined;
    w.held = 0;
    socket.pause();
    w.ws.terminate();
  };

  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on("error", () => socket.destroy());
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const path = q < 0 ? url : url.slice(0, q);
    const refusal = guard.check(req.headers.host, req.headers.origin);
    if (refusal !== undefined) return rejectUpgrade(socket, refusal.status === 403 ? "403 Forbidden" : "421 Misdirected Request", refusal.message, refusalBody(refusal));
    if (path !== WS_PATH) return rejectUpgrade(socket, "404 Not Found", `no WebSocket endpoint at ${path} (use ${WS_PATH})`);
    wss.handleUpgrade(req, socket, head, (ws) => {
      const session = wsApp.open(new NodePeer(ws, req.socket.remoteAddress ?? "", mtls ? peerCertificateOf(req.socket) : undefined, withHeaders(undefined, req.headers.authorization, firstValue(req.headers["x-api-key"]))));
      const w = watch(ws, session, socket);
      ws.on("message", (data: RawData, isBinary: boolean) => {
        w.messages++;
        session.message(Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data), isBinary);
      });
      ws.once("close", () => {
        unwatch(w);
        session.closed();
      });
      ws.on("error", () => {}); // 'close' follows; ws already answered 1009/1002 where it applies
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : opts.port;
  guard.listening(port);
  opts.log("info", `http/ws listening on ${opts.host}:${port}${tls ? " (TLS)" : ""}`);

  let closing: Promise<void> | undefined;
  return {
    port,
    close: () =>
      (closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        app.close();
        const clients = [...wss.clients];
        await Promise.race([
          Promise.all(
            clients.map(
              (ws) =>
                new Promise<void>((resolve) => {
                  if (ws.readyState === 3) return resolve();
                  ws.once("close", () => resolve());
                  ws.close(1001, "server shutting down");
                }),
            ),
          ),
          new Promise<void>((resolve) => setTimeout(resolve, 1000).unref()),
        ]);
        for (const ws of clients) ws.terminate();
        clearInterval(sweep);
        detachTls?.();
        wss.close();
        server.closeAllConnections();
        await closed;
      })()),
  };
}
