/**
 * The caller side of the worker mesh: the Forwarder the gateway hands calls
 * to when another worker owns the namespace. One connection per peer, opened
 * on first use and again after it drops; many calls in flight on it, matched
 * by id; writes batched per tick. A peer that is down or goes away fails its
 * calls with UNAVAILABLE at once: nothing waits for a dead owner.
 */
import { connect, type Socket } from "node:net";
import { IdTable } from "../core/id-table.js";
import { prism } from "../gen/prism.js";
import { Code, PrismError, errors } from "../core/errors.js";
import type { RequestContext } from "../core/context.js";
import type { Forwarder } from "../core/gateway.js";
import type { MethodDef } from "../core/methods.js";
import type { Subscription, SubscriptionSink } from "../backends/driver.js";
import {
  FrameReader,
  REQ_CANCEL,
  REQ_REQUEST,
  RES_ERROR,
  RES_RESPONSE,
  RES_STREAM_END,
  RES_STREAM_MESSAGE,
  RES_STREAM_READY,
  TickWriter,
  encodeRequest,
} from "./frame.js";

const Status = prism.v1.Status;
const PubSubMessageCodec = prism.v1.PubSubMessage;
const M = prism.v1.Method;

/** Long polls: the only unary calls worth telling the owner about when the caller goes away. */
const CANCELLABLE = new Set<number>([M.QUEUE_DEQUEUE, M.STREAM_READ_GROUP]);

interface PendingUnary {
  method: MethodDef;
  resolve(v: object): void;
  reject(e: Error): void;
  onAbort?: () => void;
  ctx?: RequestContext;
}

interface PendingStream {
  sink: SubscriptionSink;
  ready?: { resolve(s: Subscription): void; reject(e: Error): void };
  sub: Subscription;
}

function unavailable(owner: number, why: string): PrismError {
  return new PrismError(Code.UNAVAILABLE, "PRISM_ERR_WORKER_UNAVAILABLE", `worker ${owner} (namespace owner) is unavailable: ${why}`);
}

/** One connection to one peer worker. */
class PeerLink {
  private socket: Socket | undefined;
  private out: TickWriter | undefined;
  private nextId = 1;
  /** By request id; an IdTable, not a Map: it empties and refills every loop turn under load (src/core/id-table.ts). */
  private readonly unaries = new IdTable<PendingUnary>();
  private readonly streams = new Map<number, PendingStream>();

  constructor(
    readonly owner: number,
    private readonly path: string,
    private readonly maxFrameBytes: number,
  ) {}

  private ensure(): TickWriter {
    if (this.out && this.socket && !this.socket.destroyed) return this.out;
    const socket = connect(this.path);
    socket.setNoDelay?.(true);
    const out = new TickWriter(socket);
    const reader = new FrameReader(this.maxFrameBytes, (f) => this.onFrame(f));
    socket.on("data", (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch (e) {
        socket.destroy(e as Error);
      }
    });
    let why = "connection closed";
    socket.on("error", (e) => {
      why = (e as NodeJS.ErrnoException).code ?? e.message;
    });
    socket.on("close", () => {
      if (this.socket === socket) {
        this.socket = undefined;
        this.out = undefined;
      }
      this.failAll(unavailable(this.owner, why));
    });
    this.socket = socket;
    this.out = out;
    return out;
  }

  private id(): number {
    const id = this.nextId;
    this.nextId = id >= 0xfffffffe ? 1 : id + 1;
    return id;
  }

  unary(ctx: RequestContext, req: object): Promise<object> {
    const m = ctx.method;
    const body = m.requestType.encode(req).finish();
    const timeout = ctx.deadline !== 0 ? Math.max(1, ctx.deadline - Date.now()) : 0;
    return new Promise<object>((resolve, reject) => {
      const out = this.ensure();
      const id = this.id();
      const p: PendingUnary = { method: m, resolve, reject };
      if (CANCELLABLE.has(m.id)) {
        p.ctx = ctx;
        p.onAbort = () => this.out?.write(encodeRequest(REQ_CANCEL, id, m.id));
        ctx.signal.addEventListener("abort", p.onAbort, { once: true });
      }
      this.unaries.set(id, p);
      out.write(encodeRequest(REQ_REQUEST, id, m.id, body, timeout, ctx.priority, ctx.traceparent));
    });
  }

  subscribe(ctx: RequestContext, req: object, sink: SubscriptionSink): Promise<Subscription> {
    const m = ctx.method;
    const body = m.requestType.encode(req).finish();
    return new Promise<Subscription>((resolve, reject) => {
      const out = this.ensure();
      const id = this.id();
      const sub: Subscription = {
        close: async () => {
          if (this.streams.delete(id)) this.out?.write(encodeRequest(REQ_CANCEL, id, m.id));
        },
      };
      this.streams.set(id, { sink, ready: { resolve, reject }, sub });
      out.write(encodeRequest(REQ_REQUEST, id, m.id, body, 0, ctx.priority, ctx.traceparent));
    });
  }

  private onFrame(f: Buffer): void {
    if (f.length < 6) return;
    const kind = f[0]!;
    const id = f.readUInt32LE(2);
    const body = f.subarray(6);
    const u = this.unaries.get(id);
    if (u !== undefined) {
      this.unaries.delete(id);
      if (u.onAbort) u.ctx!.signal.removeEventListener("abort", u.onAbort);
      if (kind === RES_RESPONSE) {
        try {
          u.resolve(u.method.responseType.decode(body));
        } catch (e) {
          u.reject(errors.internal(`mesh: cannot decode ${u.method.responseTypeName}: ${(e as Error).message}`));
        }
      } else if (kind === RES_ERROR) u.reject(decodeStatus(body));
      else u.reject(errors.internal(`mesh: unexpected frame kind ${kind} for a unary call`));
      return;
    }
    const s = this.streams.get(id);
    if (s === undefined) return; // a late message for a closed subscription
    switch (kind) {
      case RES_STREAM_MESSAGE:
        s.sink.onMessage(PubSubMessageCodec.decode(body) as any);
        return;
      case RES_STREAM_READY:
        s.ready?.resolve(s.sub);
        s.ready = undefined;
        return;
      case RES_ERROR:
      case RES_STREAM_END: {
        this.streams.delete(id);
        const err = kind === RES_ERROR ? decodeStatus(body) : errors.unavailable("subscription ended by the owner worker");
        if (s.ready) s.ready.reject(err);
        else s.sink.onError(err);
        return;
      }
    }
  }

  private failAll(err: PrismError): void {
    const unaries = [...this.unaries.values()];
    const streams = [...this.streams.values()];
    this.unaries.clear();
    this.streams.clear();
    for (const u of unaries) {
      if (u.onAbort) u.ctx!.signal.removeEventListener("abort", u.onAbort);
      u.reject(err);
    }
    for (const s of streams) {
      if (s.ready) s.ready.reject(err);
      else s.sink.onError(err);
    }
  }

  close(): void {
    this.socket?.destroy();
  }
}

function decodeStatus(body: Uint8Array): PrismError {
  try {
    const s = Status.decode(body);
    return new PrismError(s.code as Code, s.reason || "PRISM_ERR_INTERNAL", s.message);
  } catch {
    return errors.internal("mesh: unreadable error frame");
  }
}

/** A Forwarder over Unix sockets; `pathOf(owner)` names the owner's mesh socket. */
export class MeshForwarder implements Forwarder {
  private readonly links: (PeerLink | undefined)[] = [];

  constructor(
    private readonly pathOf: (owner: number) => string,
    private readonly maxFrameBytes: number,
  ) {}

  private link(owner: number): PeerLink {
    return (this.links[owner] ??= new PeerLink(owner, this.pathOf(owner), this.maxFrameBytes));
  }

  unary(owner: number, ctx: RequestContext, req: object): Promise<object> {
    return this.link(owner).unary(ctx, req);
  }

  subscribe(owner: number, ctx: RequestContext, req: object, sink: SubscriptionSink): Promise<Subscription> {
    return this.link(owner).subscribe(ctx, req, sink);
  }

  close(): void {
    for (const l of this.links) l?.close();
  }
}
