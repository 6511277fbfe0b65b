/**
 * The transport adapter: the only module that knows node:http and `ws`.
 *
 * Routes (src/ingress/http.ts) and the frame dispatcher (src/ingress/ws.ts)
 * see only the small seam below: an HttpExchange per request, a WsPeer per
 * WebSocket. A faster transport can replace this file without touching them.
 */
import { createServer, type IncomingMessage, type ServerResponse, type Server } from "node:http";
import type { Duplex } from "node:stream";
import type { WebSocket, RawData } from "ws";
import { requireCjs } from "../core/require-cjs.js";
import type { Gateway } from "../core/gateway.js";
import { errors } from "../core/errors.js";
import type { IngressOptions, Listening } from "./types.js";
import { createHttpApp } from "./http.js";
import { createWsApp, WS_PATH } from "./ws.js";

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
  /** Bytes queued for sending. */
  readonly bufferedAmount: number;
  send(frame: Uint8Array): void;
  close(code: number, reason: string): void;
}

/** The dispatcher's per-connection handler. */
export interface WsSession {
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
type TrackedSocket = IncomingMessage["socket"] & { [LIVE]?: NodeExchange[] };

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
      const onData = (c: Buffer) => {
        size += c.length;
        if (size > limit) {
          req.off("data", onData);
          req.off("end", onEnd);
          req.off("error", onError);
          chunks.length = 0;
          this.discard(size, limit);
          reject(errors.frameTooLarge(size, limit));
          return;
        }
        chunks.push(c);
      };
      const onEnd = () => {
        req.off("error", onError);
        resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
      };
      const onError = (e: Error) => {
        req.off("data", onData);
        reject(errors.cancelled(`request body: ${e.message}`));
      };
      req.on("data", onData);
      req.once("end", onEnd);
      req.once("error", onError);
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

function rejectUpgrade(socket: Duplex, status: string, message: string): void {
  const body = JSON.stringify({ error: { code: 5, status: "NOT_FOUND", reason: "PRISM_ERR_NOT_FOUND", message } });
  socket.end(
    `HTTP/1.1 ${status}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
  socket.destroy();
}

/** Serves HTTP/JSON, SSE and the binary WebSocket on one node:http server. */
export async function startHttpTransport(gw: Gateway, opts: IngressOptions): Promise<Listening> {
  const app: HttpApp = createHttpApp(gw, opts);
  const wsApp: WsApp = createWsApp(gw, opts);
  const wss = new WebSocketServer({ noServer: true, maxPayload: opts.maxMessageBytes, perMessageDeflate: false });

  const server: Server = createServer((req, res) => {
    try {
      app.handle(new NodeExchange(req, res));
    } catch (e) {
      opts.log("error", `http: ${(e as Error).message}`);
      if (!res.headersSent) res.writeHead(500).end();
    }
  });
  server.on("clientError", (_err, socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
    socket.destroy();
  });

  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on("error", () => socket.destroy());
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const path = q < 0 ? url : url.slice(0, q);
    if (path !== WS_PATH) return rejectUpgrade(socket, "404 Not Found", `no WebSocket endpoint at ${path} (use ${WS_PATH})`);
    wss.handleUpgrade(req, socket, head, (ws) => {
      const session = wsApp.open(new NodePeer(ws, req.socket.remoteAddress ?? ""));
      ws.on("message", (data: RawData, isBinary: boolean) => {
        session.message(Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data), isBinary);
      });
      ws.once("close", () => session.closed());
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
  opts.log("info", `http/ws listening on ${opts.host}:${port}`);

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
        wss.close();
        server.closeAllConnections();
        await closed;
      })()),
  };
}
