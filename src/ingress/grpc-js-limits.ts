/**
 * Connection limits for the grpc-js server (server.grpc_server: grpc-js), as
 * far as grpc-js lets Prism reach its connections. Prism owns the listener
 * (net.Server) and hands each accepted socket to grpc-js through
 * Server.createConnectionInjector (public grpc-js API, here 1.14), so it knows
 * every connection before grpc-js does:
 *
 * - header timeout: a connection that has opened no stream within
 *   header_timeout_ms (silent, half a preface, a preface and SETTINGS but no
 *   HEADERS, or a TLS handshake and nothing after) is destroyed;
 * - per connection: its long polls (ctx.conn, keyed by grpc-js's getPeer(),
 *   which is the socket's remote address and port) and its unfinished request
 *   bytes, bounded by max_connection_buffered_bytes and by the worker's budget
 *   (max_buffered_request_bytes, shared with the other ingresses), and per
 *   principal (server.per_principal.max_buffered_bytes, named from the
 *   stream's HEADERS by the auth gate, src/ingress/limits.ts PrincipalBytes);
 * - request timeout: a request not complete within request_timeout_ms is ended.
 *
 * Bytes and streams are seen on grpc-js's own HTTP/2 server object ('stream'
 * events, one extra 'data' listener per stream), reached through grpc-js's
 * private `http2Servers` map: if a grpc-js release renames it, Prism logs a
 * warning and keeps the listener-level limits only (header timeout on the
 * first call instead of the first stream, long polls per connection).
 * Unary and server-streaming requests are unfinished from their HEADERS until
 * the client half-closes (as on the node:http2 server); client-streaming ones
 * (ClaimCheck.Put, reflection) count the gRPC message being received, whose
 * boundaries are read from the 5-byte prefixes without copying.
 * What stays grpc-js's: streams per connection (grpc.max_concurrent_streams),
 * nghttp2 session memory, idle connections (grpc.max_connection_idle_ms).
 */
import type { Socket } from "node:net";
import { constants as h2c, type Http2Server, type Http2SecureServer, type Http2Session, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import type { Server } from "@grpc/grpc-js";
import type { ConnectionState } from "../core/context.js";
import { errors, type PrismError } from "../core/errors.js";
import { METHOD_BY_PATH } from "../core/methods.js";
import { bufferExhausted, type ConnectionLimits } from "./limits.js";
import { firstValue, withHeaders } from "../auth/credentials.js";
import { peerCertificateOf, withCert } from "./tls.js";
import { REFLECTION_PATHS } from "./grpc-reflection.js";
import { statusTrailers, TRAILERS_ONLY } from "./grpc-h2-wire.js";

type Log = (level: "info" | "warn" | "error", msg: string) => void;

/** One accepted connection. */
interface JsConnection {
  readonly socket: Socket;
  readonly conn: ConnectionState;
  readonly createdAt: number;
  /** A stream (or, without the stream hook, a call) was ever opened. */
  started: boolean;
  /** Unfinished request bytes held by its streams (a holder in the worker's RequestBudget). */
  held: number;
  /** Date.now() of its last request bytes. */
  lastData: number;
  /** Ends its streams still receiving (releasing their bytes) and closes it: RequestBudget eviction. */
  evict(): void;
  /** grpc-js's HTTP/2 session on it (TLS: destroying the accepted socket does not end the TLS socket wrapping it). */
  session: Http2Session | undefined;
}

/** One stream's request side. */
interface Intake {
  readonly g: GrpcJsConnections;
  readonly c: JsConnection;
  readonly stream: ServerHttp2Stream;
  /** Unary / server-streaming: unfinished until the client half-closes. */
  readonly single: boolean;
  held: number;
  /** The principal `held` is charged to (server.per_principal.max_buffered_bytes); undefined: not counted. */
  readonly key: string | undefined;
  /** Since when the request (or its current message) is incomplete; 0: complete. */
  since: number;
  /** Client-streaming: bytes of the current message's 5-byte prefix seen (0-5), and body bytes still to come. */
  prefixSeen: number;
  prefix: Buffer | undefined;
  remaining: number;
}

const INTAKE = Symbol("prism.grpcjs.intake");
type Stream = ServerHttp2Stream & { [INTAKE]?: Intake };

/** `address:port`, as grpc-js's getPeer() names a call's peer. */
export function peerKey(address: string | undefined, port: number | undefined): string {
  return port ? `${address}:${port}` : String(address);
}

/** grpc-js's HTTP/2 server object behind the injector just created (private API; undefined if it moved). */
export function injectorHttp2Server(server: Server): Http2Server | Http2SecureServer | undefined {
  const map = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(map instanceof Map) || map.size === 0) return undefined;
  const last = [...map.keys()].pop() as { on?: unknown } | undefined;
  return last !== undefined && typeof last.on === "function" ? (last as Http2Server) : undefined;
}

export class GrpcJsConnections {
  private readonly byPeer = new Map<string, JsConnection>();
  private readonly receiving = new Set<Intake>();
  private readonly sweeper: NodeJS.Timeout;
  /** Connections destroyed by the header timeout, requests ended by a limit (tests, diagnostics). */
  headerTimeouts = 0;
  requestsCut = 0;

  constructor(
    private readonly limits: ConnectionLimits,
    private readonly log: Log,
  ) {
    this.sweeper = setInterval(() => this.sweep(), 1000);
    this.sweeper.unref();
  }

  /** Open connections (tests, diagnostics). */
  get count(): number {
    return this.byPeer.size;
  }

  /** A socket the listener accepted, before it is injected into grpc-js. */
  accept(socket: Socket): void {
    const key = peerKey(socket.remoteAddress, socket.remotePort);
    const c: JsConnection = { socket, conn: { longPolls: 0 }, createdAt: Date.now(), started: false, held: 0, lastData: 0, evict: () => this.evict(c), session: undefined };
    this.byPeer.set(key, c);
    socket.once("close", () => this.forget(key, c));
  }

  private forget(key: string, c: JsConnection): void {
    if (this.byPeer.get(key) === c) this.byPeer.delete(key);
    this.limits.budget.forget(c);
  }

  /** The worker's budget is full and this connection holds the most of it: its receiving streams end, then it closes. */
  private evict(c: JsConnection): void {
    const e = bufferExhausted("the server (this connection held the most of them)", this.limits.budget.max);
    for (const i of this.receiving) if (i.c === c) this.cut(i, e);
    if (c.session !== undefined && !c.session.destroyed) c.session.destroy();
    c.socket.destroy();
  }

  /** The connection state of a call (ctx.conn: long polls per connection), by call.getPeer(). */
  connOf(peer: string): ConnectionState | undefined {
    const c = this.byPeer.get(peer);
    if (c === undefined) return undefined;
    c.started = true;
    return c.conn;
  }

  /** Watches grpc-js's HTTP/2 server: streams start connections and hold request bytes. */
  watch(h2: Http2Server | Http2SecureServer | undefined): void {
    if (h2 === undefined) {
      this.log("warn", "grpc: grpc-js internals changed (no http2Servers): unfinished request bytes are not bounded per connection on the grpc-js server");
      return;
    }
    h2.on("session", (session: Http2Session) => {
      const sock = session.socket;
      const key = peerKey(sock?.remoteAddress, sock?.remotePort);
      const c = this.byPeer.get(key);
      if (c === undefined) return;
      c.session = session;
      session.once("close", () => this.forget(key, c));
    });
    h2.on("stream", (stream: Stream, headers: IncomingHttpHeaders) => this.onStream(stream, headers));
  }

  private onStream(stream: Stream, headers: IncomingHttpHeaders): void {
    const sock = stream.session?.socket;
    const c = sock === undefined ? undefined : this.byPeer.get(peerKey(sock.remoteAddress, sock.remotePort));
    if (c === undefined) return;
    c.started = true;
    const path = headers[":path"] ?? "";
    const m = METHOD_BY_PATH.get(path);
    const single = m !== undefined ? m.transfer !== "upload" : !REFLECTION_PATHS.has(path);
    const pb = this.limits.principalBytes;
    let key: string | undefined;
    if (pb !== undefined) {
      const cert = peerCertificateOf(sock);
      key = pb.keyOf(withHeaders(cert === undefined ? undefined : withCert(undefined, cert), firstValue(headers.authorization), firstValue(headers["x-api-key"])));
    }
    const i: Intake = { g: this, c, stream, single, held: 0, key, since: single ? Date.now() : 0, prefixSeen: 0, prefix: undefined, remaining: 0 };
    stream[INTAKE] = i;
    this.receiving.add(i);
    stream.on("data", onData);
    stream.once("end", onEnd);
    stream.once("close", onEnd);
  }

  /** Bytes arrived on a stream: held against the connection's and the worker's limits. */
  data(i: Intake, chunk: Buffer): void {
    if (i.single) {
      this.hold(i, chunk.length);
      return;
    }
    // Client streaming: only the message being received is unfinished.
    let off = 0;
    while (off < chunk.length) {
      if (i.remaining === 0) {
        if (i.prefixSeen === 0) i.since = Date.now();
        const take = Math.min(5 - i.prefixSeen, chunk.length - off);
        (i.prefix ??= Buffer.alloc(5));
        chunk.copy(i.prefix, i.prefixSeen, off, off + take);
        i.prefixSeen += take;
        off += take;
        if (!this.hold(i, take)) return;
        if (i.prefixSeen === 5) {
          i.remaining = i.prefix.readUInt32BE(1);
          i.prefixSeen = 0;
          if (i.remaining === 0) this.messageDone(i);
        }
      } else {
        const take = Math.min(i.remaining, chunk.length - off);
        i.remaining -= take;
        off += take;
        if (!this.hold(i, take)) return;
        if (i.remaining === 0) this.messageDone(i);
      }
    }
  }

  private messageDone(i: Intake): void {
    this.release(i);
    i.since = 0;
  }

  /** false: the stream was ended for its bytes. */
  private hold(i: Intake, n: number): boolean {
    if (n === 0 || !this.receiving.has(i)) return true;
    const l = this.limits;
    if (i.c.held + n > l.maxConnectionBufferedBytes) {
      this.cut(i, bufferExhausted("this connection", l.maxConnectionBufferedBytes));
      return false;
    }
    // Per principal (named by the HEADERS' credentials), before the worker's budget that everyone shares.
    const pb = i.key === undefined ? undefined : l.principalBytes;
    if (pb !== undefined && !pb.reserve(i.key!, n)) {
      this.cut(i, pb.refusal(i.key!));
      return false;
    }
    i.c.lastData = Date.now();
    if (!l.budget.reserve(n, i.c)) {
      pb?.release(i.key!, n);
      this.cut(i, bufferExhausted("the server", l.budget.max));
      return false;
    }
    i.held += n;
    i.c.held += n;
    return true;
  }

  private release(i: Intake): void {
    if (i.held === 0) return;
    this.limits.budget.release(i.held);
    if (i.key !== undefined) this.limits.principalBytes?.release(i.key, i.held);
    i.c.held -= i.held;
    i.held = 0;
  }

  /** The client half-closed, or the stream closed: nothing is unfinished any more. */
  end(i: Intake): void {
    this.release(i);
    i.since = 0;
    this.receiving.delete(i);
  }

  /** Ends a stream that broke a limit: RESOURCE_EXHAUSTED naming it (trailers-only when nothing was sent), then RST_STREAM. */
  private cut(i: Intake, e: PrismError): void {
    this.end(i);
    this.requestsCut++;
    const s = i.stream;
    if (s.destroyed || s.closed) return;
    try {
      if (!s.headersSent) s.respond(statusTrailers(e, true), TRAILERS_ONLY);
    } catch {
      // grpc-js answered meanwhile: the reset below still stops the client
    }
    s.close(s.headersSent ? h2c.NGHTTP2_NO_ERROR : h2c.NGHTTP2_ENHANCE_YOUR_CALM);
  }

  private sweep(): void {
    const now = Date.now();
    const rt = this.limits.requestTimeoutMs;
    if (rt > 0) {
      for (const i of this.receiving) {
        if (i.since !== 0 && now - i.since > rt) this.cut(i, errors.exhausted(`the request did not complete within ${rt} ms (server.request_timeout_ms)`));
      }
    }
    const ht = this.limits.headerTimeoutMs;
    if (ht > 0) {
      for (const [key, c] of this.byPeer) {
        if (!c.started && now - c.createdAt > ht) {
          this.headerTimeouts++;
          // TLS: the session's socket is the TLS socket, which outlives a destroyed accepted socket.
          if (c.session !== undefined && !c.session.destroyed) c.session.destroy();
          c.socket.destroy();
          this.byPeer.delete(key);
        }
      }
    }
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const i of [...this.receiving]) this.end(i);
  }
}

// Shared stream listeners (no closure per stream): the intake knows its guard.
function onData(this: Stream, chunk: Buffer): void {
  const i = this[INTAKE];
  if (i !== undefined) i.g.data(i, chunk);
}
function onEnd(this: Stream): void {
  const i = this[INTAKE];
  if (i !== undefined) i.g.end(i);
}
