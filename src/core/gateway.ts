/**
 * The gateway: the one request path every ingress calls after decoding.
 *
 *   ingress (decode) → Gateway.unary / Gateway.subscribe
 *     → middleware chain (shedding, rate limits, auth: src/shedding, later)
 *     → router (namespace → runtime; unknown → NOT_FOUND)
 *     → primitive handler (validation, limits) → driver
 *   ← plain response object; the ingress encodes it.
 *
 * Namespaces owned by another worker (embedded backends with --workers N)
 * are handed to the Forwarder instead of a local handler.
 */
import { errors, PrismError } from "./errors.js";
import type { RequestContext } from "./context.js";
import type { MethodDef } from "./methods.js";
import type { Router, NamespaceRuntime } from "../router/router.js";
import type { Subscription, SubscriptionSink } from "../backends/driver.js";
import type { NamespaceConfig } from "../config/schema.js";

/** Runs before the namespace handler; throw a PrismError to refuse the call. */
export type Middleware = (ctx: RequestContext, ns: NamespaceRuntime | undefined) => void;

/** Forwards calls for namespaces whose state another worker owns (src/workers). */
export interface Forwarder {
  unary(owner: number, ctx: RequestContext, req: object): Promise<object>;
  subscribe(owner: number, ctx: RequestContext, req: object, sink: SubscriptionSink): Promise<Subscription>;
}

/** Applies namespace changes. Single process: the router. Several workers: every worker, through the primary. */
export interface ControlPlane {
  apply(ns: NamespaceConfig): Promise<boolean>;
  delete(name: string): Promise<boolean>;
}

export interface GatewayOptions {
  router: Router;
  version: string;
  workers: number;
  /** This worker's index (0-based) when several serve; 0 otherwise. */
  workerIndex?: number;
  control?: ControlPlane;
  forwarder?: Forwarder;
}

export class Gateway {
  readonly router: Router;
  readonly version: string;
  readonly workers: number;
  readonly workerIndex: number;
  control: ControlPlane;
  forwarder: Forwarder | undefined;
  private middleware: Middleware[] | null = null;

  constructor(opts: GatewayOptions) {
    this.router = opts.router;
    this.version = opts.version;
    this.workers = opts.workers;
    this.workerIndex = opts.workerIndex ?? 0;
    this.control = opts.control ?? { apply: (c) => opts.router.apply(c), delete: (n) => opts.router.delete(n) };
    this.forwarder = opts.forwarder;
  }

  use(mw: Middleware): void {
    (this.middleware ??= []).push(mw);
  }

  private resolve(ctx: RequestContext, req: { namespace?: string | null }): NamespaceRuntime {
    const m = ctx.method;
    const name = req.namespace;
    if (!name) throw errors.invalidArgument("namespace", "must not be empty");
    const ns = this.router.get(name);
    if (!ns) throw errors.unknownNamespace(name);
    if (!ns.primitives.has(m.primitive!)) throw errors.primitiveNotServed(name, m.primitive!);
    if (this.middleware !== null) for (const mw of this.middleware) mw(ctx, ns);
    return ns;
  }

  /** A unary call. Resolves to a plain response object; rejects with PrismError. */
  async unary(ctx: RequestContext, req: any): Promise<object> {
    const m: MethodDef = ctx.method;
    if (m.admin !== undefined) {
      if (this.middleware !== null) for (const mw of this.middleware) mw(ctx, undefined);
      return m.admin(this, req, ctx);
    }
    if (m.handler === undefined) throw errors.unknownMethod(m.path);
    const ns = this.resolve(ctx, req);
    if (ns.owner !== undefined) return this.forwarder!.unary(ns.owner, ctx, req);
    if (ctx.deadline !== 0) return this.withDeadline(ctx, m.handler(ns, req, ctx));
    return m.handler(ns, req, ctx);
  }

  /** A server stream (PubSub.Subscribe). Resolves once the subscription is live. */
  async subscribe(ctx: RequestContext, req: any, sink: SubscriptionSink): Promise<Subscription> {
    const m = ctx.method;
    if (m.subscribe === undefined) throw errors.unknownMethod(m.path);
    const ns = this.resolve(ctx, req);
    if (ns.owner !== undefined) return this.forwarder!.subscribe(ns.owner, ctx, req, sink);
    return m.subscribe(ns, req, sink, ctx);
  }

  private withDeadline<T>(ctx: RequestContext, p: Promise<T>): Promise<T> {
    const left = ctx.deadline - Date.now();
    if (left <= 0) {
      p.catch(() => {});
      return Promise.reject(errors.deadline(ctx.method.path));
    }
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => {
        ctx.cancel(errors.deadline(ctx.method.path));
        reject(errors.deadline(ctx.method.path));
      }, left);
      p.then(
        (v) => {
          clearTimeout(t);
          resolve(v);
        },
        (e) => {
          clearTimeout(t);
          reject(e);
        },
      );
    });
  }
}

export { PrismError };
