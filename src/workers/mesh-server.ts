/**
 * The owner side of the worker mesh: a Unix domain socket on which peer
 * workers send calls for the namespaces this worker owns. Each frame becomes
 * a RequestContext on the local gateway, exactly as if it had arrived on the
 * public WebSocket; responses go back in any order, batched per tick.
 */
import { createServer, type Server, type Socket } from "node:net";
import { IdTable } from "../core/id-table.js";
import { decodeStrict } from "../core/decode.js";
import { rmSync } from "node:fs";
import { prism } from "../gen/prism.js";
import { RequestContext } from "../core/context.js";
import { errors, toPrismError } from "../core/errors.js";
import { METHOD_BY_ID, type MethodDef } from "../core/methods.js";
import type { Gateway } from "../core/gateway.js";
import type { PubSubMessage, Subscription, SubscriptionSink } from "../backends/driver.js";
import {
  FLAG_PRIORITY,
  FLAG_TIMEOUT,
  FLAG_TRACEPARENT,
  FrameReader,
  PRIORITIES,
  REQ_CANCEL,
  REQ_REQUEST,
  RES_ERROR,
  RES_RESPONSE,
  RES_STREAM_MESSAGE,
  RES_STREAM_READY,
  TickWriter,
  encodeServerFrame,
} from "./frame.js";

const Status = prism.v1.Status;
const PubSubMessageCodec = prism.v1.PubSubMessage;

export interface MeshServer {
  readonly path: string;
  /** Stops accepting, ends the connections' calls and removes the socket file. */
  close(): Promise<void>;
}

function errorFrame(id: number, err: unknown): Buffer {
  const e = toPrismError(err);
  return encodeServerFrame(RES_ERROR, id, Status.encode({ code: e.code, message: e.message, reason: e.reason }).finish());
}

/** One peer connection: its in-flight calls (for cancellation) and live subscriptions. */
class MeshConnection {
  private readonly out: TickWriter;
  /** By request id; an IdTable, not a Map: it empties and refills every loop turn under load (src/core/id-table.ts). */
  private readonly calls = new IdTable<RequestContext>();
  private readonly subs = new Map<number, Subscription | null>();
  private closed = false;

  constructor(
    private readonly gw: Gateway,
    private readonly socket: Socket,
    maxFrameBytes: number,
    private readonly peer: string,
  ) {
    this.out = new TickWriter(socket);
    const reader = new FrameReader(maxFrameBytes, (f) => this.onFrame(f));
    socket.on("data", (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch {
        socket.destroy();
      }
    });
    socket.on("error", () => {});
    socket.on("close", () => this.teardown());
  }

  private onFrame(f: Buffer): void {
    if (f.length < 8) {
      this.out.write(errorFrame(f.length >= 6 ? f.readUInt32LE(2) : 0, errors.malformed("mesh frame shorter than its header")));
      return;
    }
    const kind = f[0]!;
    const flags = f[1]!;
    const id = f.readUInt32LE(2);
    if (kind === REQ_CANCEL) {
      this.cancel(id);
      return;
    }
    const method = METHOD_BY_ID[f.readUInt16LE(6)];
    if (kind !== REQ_REQUEST || method === undefined) {
      this.out.write(errorFrame(id, errors.malformed(`mesh frame: kind ${kind}, method ${f.readUInt16LE(6)}`)));
      return;
    }
    const ctx = new RequestContext(method, "mesh", this.peer);
    let o = 8;
    if (flags & FLAG_TIMEOUT) {
      ctx.deadline = Date.now() + f.readUInt32LE(o);
      o += 4;
    }
    if (flags & FLAG_PRIORITY) ctx.priority = PRIORITIES[f[o++]!];
    if (flags & FLAG_TRACEPARENT) {
      const n = f[o++]!;
      ctx.traceparent = f.toString("latin1", o, o + n);
      o += n;
    }
    let req: object;
    try {
      req = decodeStrict(method.requestType, f, o);
    } catch (e) {
      this.out.write(errorFrame(id, errors.malformed(`${method.requestTypeName}: ${(e as Error).message}`)));
      return;
    }
    if (method.streaming) this.subscribe(id, ctx, req);
    else this.unary(id, method, ctx, req);
  }

  private unary(id: number, method: MethodDef, ctx: RequestContext, req: object): void {
    this.calls.set(id, ctx);
    this.gw.unary(ctx, req).then(
      (res) => {
        this.calls.delete(id);
        this.out.write(encodeServerFrame(RES_RESPONSE, id, method.responseType.encode(res).finish()));
      },
      (err) => {
        this.calls.delete(id);
        this.out.write(errorFrame(id, err));
      },
    );
  }

  private subscribe(id: number, ctx: RequestContext, req: object): void {
    const out = this.out;
    const subs = this.subs;
    const sink: SubscriptionSink = {
      onMessage(msg: PubSubMessage) {
        if (subs.has(id)) out.write(encodeServerFrame(RES_STREAM_MESSAGE, id, PubSubMessageCodec.encode(msg).finish()));
      },
      onError(err: Error) {
        if (!subs.has(id)) return;
        subs.delete(id);
        out.write(errorFrame(id, err));
      },
    };
    subs.set(id, null);
    this.gw.subscribe(ctx, req, sink).then(
      (sub) => {
        if (!subs.has(id) || this.closed) {
          // Cancelled (or the peer left) while subscribing.
          sub.close().catch(() => {});
          return;
        }
        subs.set(id, sub);
        out.write(encodeServerFrame(RES_STREAM_READY, id));
      },
      (err) => {
        if (!subs.has(id)) return;
        subs.delete(id);
        out.write(errorFrame(id, err));
      },
    );
  }

  private cancel(id: number): void {
    const ctx = this.calls.get(id);
    if (ctx) {
      ctx.cancel(errors.cancelled(ctx.method.path));
      return;
    }
    if (this.subs.has(id)) {
      const sub = this.subs.get(id);
      this.subs.delete(id);
      sub?.close().catch(() => {});
    }
  }

  private teardown(): void {
    if (this.closed) return;
    this.closed = true;
    for (const ctx of this.calls.values()) ctx.cancel(errors.cancelled(ctx.method.path));
    this.calls.clear();
    for (const sub of this.subs.values()) sub?.close().catch(() => {});
    this.subs.clear();
  }

  /** Waits (bounded by the caller) for unary calls in flight to answer. */
  get busy(): boolean {
    return this.calls.size > 0;
  }

  end(): void {
    this.socket.end();
    this.teardown();
  }
}

/** Listens on `path` (a stale file from a previous incarnation of this worker is replaced). */
export function startMeshServer(gw: Gateway, path: string, maxFrameBytes: number, peer: string): Promise<MeshServer> {
  rmSync(path, { force: true });
  const conns = new Set<MeshConnection>();
  const server: Server = createServer((socket) => {
    socket.setNoDelay?.(true);
    const c = new MeshConnection(gw, socket, maxFrameBytes, peer);
    conns.add(c);
    socket.on("close", () => conns.delete(c));
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    // exclusive: this worker owns the socket itself. Without it, node:cluster would route the
    // listen through the primary, which keeps the handle after the worker dies, so a peer's
    // connection to a re-forked owner could be accepted by the primary and never handed over.
    server.listen({ path, exclusive: true }, () => {
      server.off("error", reject);
      let closing: Promise<void> | undefined;
      resolve({
        path,
        close: () =>
          (closing ??= new Promise<void>((done) => {
            server.close(() => done());
            for (const c of conns) c.end();
            rmSync(path, { force: true });
          })),
      });
    });
  });
}
