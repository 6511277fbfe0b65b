/**
 * The gateway: the one request path every ingress calls after decoding.
 *
 *   ingress (decode) → Gateway.unary / Gateway.subscribe
 *     → auth (src/auth: credentials → principal → namespace RBAC, before the router lookup)
 *     → middleware chain (shedding, rate limits: src/shedding)
 *     → router (namespace → runtime; unknown → NOT_FOUND)
 *     → primitive handler (validation, limits) → driver
 *   ← plain response object; the ingress encodes it.
 *
 * Namespaces owned by another worker (embedded backends with --workers N)
 * are handed to the Forwarder instead of a local handler.
 */
import { errors, PrismError, toPrismError } from "./errors.js";
import type { PrincipalUsage, RequestContext } from "./context.js";
import type { MethodDef, NsHandler } from "./methods.js";
import { raceDeadline } from "../shedding/deadline.js";
import { prism } from "../gen/prism.js";
import type { Router, NamespaceRuntime } from "../router/router.js";
import type { Subscription, SubscriptionSink } from "../backends/driver.js";
import type { ResolvedNamespace } from "../config/resolve.js";
import type { MigrationHost } from "../migrations/types.js";
import type { MigrationStatus } from "../control/agent.js";
import type { Credentials, Principal } from "../auth/types.js";
export type { PathPolicy } from "../config/paths.js";

/** Runs before the namespace handler; throw a PrismError to refuse the call. */
export type Middleware = (ctx: RequestContext, ns: NamespaceRuntime | undefined) => void;

/** Forwards calls for namespaces whose state another worker owns (src/workers). */
export interface Forwarder {
  unary(owner: number, ctx: RequestContext, req: object): Promise<object>;
  subscribe(owner: number, ctx: RequestContext, req: object, sink: SubscriptionSink): Promise<Subscription>;
}

/**
 * Sees every call (src/observability: metrics, access log, traces). Optional:
 * without one the gateway pays a single undefined check per call. Calls that
 * arrive over the worker mesh (ctx.ingress "mesh") were already observed by the
 * worker that received them; observers ignore them so one call counts once.
 */
export interface GatewayObserver {
  /** A decoded call enters the gateway. */
  start(ctx: RequestContext): void;
  /** The call settled (code 0: OK); `req` names the namespace. */
  end(ctx: RequestContext, req: any, code: number): void;
  /** Runs the backend call `run(ns, req, ctx)` (handler + driver, or the owning worker), timing it separately. */
  backend(ctx: RequestContext, ns: NamespaceRuntime, req: any, run: BackendCall): Promise<object>;
  /** Signals from the policy layer (src/shedding). */
  shed(namespace: string, priority: string): void;
  rateLimited(namespace: string): void;
  /** A call refused by its principal's limit (server.per_principal.<limit>). */
  principalLimited?(limit: PrincipalLimitName): void;
  /** 0 closed, 1 half-open, 2 open. */
  breakerState(namespace: string, backend: string, state: number): void;
}

/** The per-principal limits (server.per_principal), by config name. */
export type PrincipalLimitName = "max_in_flight" | "max_long_polls" | "max_buffered_bytes";

/** One principal's limits on one worker; 0: no limit. */
export interface PrincipalLimit {
  /** Calls in progress (long polls excepted). */
  maxInFlight: number;
  /** Long polls waiting. */
  maxLongPolls: number;
}

/** server.per_principal: the limits every principal gets, and principals (`<kind>:<id>`, or `anonymous`) with their own. */
export interface PrincipalLimits extends PrincipalLimit {
  overrides: ReadonlyMap<string, PrincipalLimit>;
}

/** A principal's counts while it has calls in progress (dropped when it has none). */
interface PrincipalEntry extends PrincipalUsage {
  readonly key: string;
  readonly limit: PrincipalLimit;
}

/** How a principal is named in grants, the audit log and per_principal overrides. */
export function principalKey(p: Principal): string {
  return p.kind === "anonymous" ? "anonymous" : `${p.kind}:${p.id}`;
}

export type BackendCall = (ns: NamespaceRuntime, req: any, ctx: RequestContext) => Promise<object>;

/**
 * The audit log (src/audit): one record per call that reaches the gateway,
 * allowed or refused. Optional: without one the gateway pays an undefined
 * check. Calls over the worker mesh were audited by the worker that received
 * them; the sink ignores them.
 */
export interface GatewayAudit {
  /**
   * Reserves room for this call's record before the call runs: undefined when
   * admitted at once; a promise while the log is full (audit.on_full block:
   * backpressure); throws UNAVAILABLE "audit log full" (on_full refuse).
   */
  admit(ctx: RequestContext): Promise<void> | undefined;
  /** The call settled with `code` (0: OK); `admitted`: admit() reserved its room. */
  record(ctx: RequestContext, req: any, code: number, admitted: boolean): void;
}

/**
 * Authentication and authorization of one call (src/auth): sets ctx.principal
 * or throws UNAUTHENTICATED / PERMISSION_DENIED. Returns undefined when it
 * decided synchronously (a cached token), a promise otherwise.
 */
export interface CallGate {
  check(ctx: RequestContext, req: any): Promise<void> | undefined;
  /** Token / API-key authentication alone (the WebSocket AUTH frame); absent: no token authentication configured. */
  authenticate?(creds: Credentials | undefined): Principal | Promise<Principal>;
  /**
   * The principal key a request's unfinished bytes are charged to, from its headers' credentials, before the
   * body (server.per_principal.max_buffered_bytes): synchronous, verified principals only, "unverified" else.
   */
  bufferKey?(creds: Credentials | undefined): string;
}

export interface ApplyNamespaceResult {
  /** As applied (or, dry run, as it would be). */
  namespace: ResolvedNamespace;
  created: boolean;
  /** The store revision of the change (dry run: the current one). */
  revision: number;
  applied: boolean;
}

export interface BackendInstanceInfo {
  name: string;
  type: string;
  /** Driver options (Admin redacts secrets before answering). */
  options: Record<string, unknown>;
  /** Namespaces using it. */
  namespaces: string[];
  revision: number;
}

export interface ApplyBackendResult {
  backend: BackendInstanceInfo;
  created: boolean;
  revision: number;
  applied: boolean;
  /** Namespaces re-applied on the new definition. */
  namespaces: string[];
}

/**
 * Namespace and backend-instance changes (Admin). One process: its control
 * agent (src/control/agent.ts) writes the config store and applies to the
 * router. Several workers: the primary's agent, reached over IPC.
 */
export interface ControlPlane extends MigrationHost {
  /** `entry`: a namespace object, or its YAML/JSON text (the older `config` field). */
  applyNamespace(entry: unknown, opts?: { dryRun?: boolean }): Promise<ApplyNamespaceResult>;
  deleteNamespace(name: string): Promise<{ deleted: boolean; revision: number }>;
  applyBackend(name: string, spec: unknown, opts?: { dryRun?: boolean }): Promise<ApplyBackendResult>;
  deleteBackend(name: string): Promise<{ deleted: boolean; revision: number }>;
  listBackendInstances(): Promise<BackendInstanceInfo[]>;
  /** Migrations (src/migrations): phases stored in the config store. */
  migrationStatus(name: string): Promise<MigrationStatus>;
  startMigration(name: string, opts?: { dryRun?: boolean }): Promise<MigrationStatus>;
  advanceMigration(name: string): Promise<MigrationStatus>;
  rollbackMigration(name: string, reason?: string, automatic?: boolean): Promise<MigrationStatus>;
  finishMigration(name: string): Promise<{ revision: number }>;
}

export interface GatewayOptions {
  router: Router;
  version: string;
  workers: number;
  /** This worker's index (0-based) when several serve; 0 otherwise. */
  workerIndex?: number;
  control: ControlPlane;
  forwarder?: Forwarder;
  observer?: GatewayObserver;
  audit?: GatewayAudit;
  /** Authentication and authorization (src/auth/gate.ts); absent: auth not configured. */
  auth?: CallGate;
}

export class Gateway {
  readonly router: Router;
  readonly version: string;
  readonly workers: number;
  readonly workerIndex: number;
  control: ControlPlane;
  forwarder: Forwarder | undefined;
  observer: GatewayObserver | undefined;
  audit: GatewayAudit | undefined;
  /**
   * Authenticates and authorizes each call before the router lookup (so an
   * unknown namespace and a forbidden one look the same to a caller without
   * the permission). Undefined: auth not configured, one check per call.
   * Mesh calls were checked by the worker that received them.
   */
  auth: CallGate | undefined;
  private middleware: Middleware[] | null = null;

  constructor(opts: GatewayOptions) {
    this.router = opts.router;
    this.version = opts.version;
    this.workers = opts.workers;
    this.workerIndex = opts.workerIndex ?? 0;
    this.control = opts.control;
    this.forwarder = opts.forwarder;
    this.observer = opts.observer;
    this.audit = opts.audit;
    this.auth = opts.auth;
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

  /**
   * Calls in progress, a list linked through RequestContext.liveNext/livePrev
   * (no allocation per call); drain() waits for them and cancels the blocking
   * ones (long polls).
   */
  private liveHead: RequestContext | null = null;
  private liveCount = 0;
  private draining = false;
  private onIdle: (() => void) | undefined = undefined;

  /** Long polls waiting (Dequeue with wait_seconds, ReadGroup with block_ms): counted apart from the in-flight load. */
  private longPollCount = 0;
  /**
   * Long polls wait rather than work, so they do not count as load for shedding
   * (an idle queue with thousands of waiting consumers would otherwise shed
   * everyone else); they have their own budget per worker and per connection
   * (server.max_long_polls, max_long_polls_per_connection): past it a long
   * poll is refused with RESOURCE_EXHAUSTED, other calls are unaffected.
   */
  longPollLimits = { max: 4096, perConnection: 256 };
  /** Long polls refused by their budget (tests, diagnostics). */
  longPollsRefused = 0;

  /**
   * Limits per principal on this worker (server.per_principal), checked right
   * after authentication: one identity flooding Prism over many connections
   * meets its own limit (RESOURCE_EXHAUSTED naming it) before the worker-wide
   * budgets and the shedding point that everyone shares. Undefined: none.
   */
  principalLimits: PrincipalLimits | undefined = undefined;
  /** Principals with calls in progress → their counts. */
  private readonly principals = new Map<string, PrincipalEntry>();
  /** Calls refused by a per-principal limit (tests, diagnostics). */
  principalRefused = 0;

  /** A principal's calls in progress and long polls waiting now (tests, diagnostics). */
  principalUsageOf(key: string): PrincipalUsage {
    const e = this.principals.get(key);
    return { inFlight: e?.inFlight ?? 0, longPolls: e?.longPolls ?? 0 };
  }

  /** Counts an authenticated call against its principal's limits, or throws RESOURCE_EXHAUSTED naming the limit. */
  private admitPrincipal(ctx: RequestContext): void {
    const l = this.principalLimits;
    const p = ctx.principal;
    if (l === undefined || p === undefined || ctx.principalUsage !== undefined) return;
    const key = principalKey(p);
    let e = this.principals.get(key);
    if (e === undefined) {
      e = { key, limit: l.overrides.get(key) ?? l, inFlight: 0, longPolls: 0 };
      this.principals.set(key, e);
    }
    if (ctx.longPoll) {
      const max = e.limit.maxLongPolls;
      if (max > 0 && e.longPolls >= max) throw this.principalRefusal("max_long_polls", `${key} has ${max} long polls waiting on this server, its limit (server.per_principal.max_long_polls); retry later or poll without waiting`);
      e.longPolls++;
    } else {
      const max = e.limit.maxInFlight;
      if (max > 0 && e.inFlight >= max) throw this.principalRefusal("max_in_flight", `${key} has ${max} calls in progress on this server, its limit (server.per_principal.max_in_flight); retry later`);
      e.inFlight++;
    }
    ctx.principalUsage = e;
  }

  private principalRefusal(limit: PrincipalLimitName, message: string): PrismError {
    this.principalRefused++;
    this.observer?.principalLimited?.(limit);
    return errors.principalLimit(message);
  }

  /** Before releaseLongPoll (which clears ctx.longPoll). */
  private releasePrincipal(ctx: RequestContext): void {
    const e = ctx.principalUsage as PrincipalEntry;
    ctx.principalUsage = undefined;
    if (ctx.longPoll) e.longPolls--;
    else e.inFlight--;
    if (e.inFlight <= 0 && e.longPolls <= 0 && this.principals.get(e.key) === e) this.principals.delete(e.key);
  }

  /** How many unary calls are in progress, long polls excepted (the shedding load). */
  get inFlightCount(): number {
    return this.liveCount - this.longPollCount;
  }

  /** How many long polls are waiting. */
  get longPollsWaiting(): number {
    return this.longPollCount;
  }

  /** Admits a long poll against its budgets (throws RESOURCE_EXHAUSTED) and counts it. */
  private admitLongPoll(ctx: RequestContext): void {
    const l = this.longPollLimits;
    const conn = ctx.conn;
    if (this.longPollCount >= l.max) {
      this.longPollsRefused++;
      throw errors.exhausted(`more than ${l.max} long polls are waiting on this server (server.max_long_polls); retry later or poll without waiting`);
    }
    if (conn !== undefined && conn.longPolls >= l.perConnection) {
      this.longPollsRefused++;
      throw errors.exhausted(`more than ${l.perConnection} long polls are waiting on this connection (server.max_long_polls_per_connection)`);
    }
    ctx.longPoll = true;
    this.longPollCount++;
    if (conn !== undefined) conn.longPolls++;
  }

  private releaseLongPoll(ctx: RequestContext): void {
    if (!ctx.longPoll) return;
    ctx.longPoll = false;
    this.longPollCount--;
    if (ctx.conn !== undefined) ctx.conn.longPolls--;
  }

  private track(ctx: RequestContext): void {
    if (ctx.livePrev !== null || this.liveHead === ctx) return; // already in progress here
    const head = this.liveHead;
    ctx.liveNext = head;
    if (head !== null) head.livePrev = ctx;
    this.liveHead = ctx;
    this.liveCount++;
  }

  private untrack(ctx: RequestContext): void {
    const prev = ctx.livePrev;
    const next = ctx.liveNext;
    if (prev !== null) prev.liveNext = next;
    else if (this.liveHead === ctx) this.liveHead = next;
    else return; // not in progress here
    if (next !== null) next.livePrev = prev;
    ctx.liveNext = null;
    ctx.livePrev = null;
    this.liveCount--;
  }

  /** The calls in progress (a copy: cancelling one may settle it). */
  private live(): RequestContext[] {
    const out: RequestContext[] = [];
    for (let c = this.liveHead; c !== null; c = c.liveNext) out.push(c);
    return out;
  }

  /**
   * Graceful shutdown, step one: refuse new calls with UNAVAILABLE (clients
   * retry on another instance), end long polls early (they answer with what
   * they have: nothing is leased that is not delivered), and wait up to
   * graceMs for the calls in progress to answer.
   */
  async drain(graceMs: number): Promise<void> {
    this.draining = true;
    for (const ctx of this.live()) ctx.cancel(errors.shuttingDown());
    if (this.liveCount === 0) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, graceMs);
      t.unref?.();
      this.onIdle = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  /** A unary call. Resolves to a plain response object; rejects with PrismError. */
  async unary(ctx: RequestContext, req: any): Promise<object> {
    const a = this.audit;
    // Peers' forwarded calls (mesh) are still served while draining: they finish their own in-flight work.
    if (this.draining && ctx.ingress !== "mesh") {
      const e = errors.shuttingDown();
      if (a !== undefined) a.record(ctx, req, e.code, false);
      throw e;
    }
    const o = this.observer;
    if (isLongPoll(ctx.method.id, req) && ctx.livePrev === null && this.liveHead !== ctx) {
      try {
        this.admitLongPoll(ctx);
      } catch (e) {
        if (o !== undefined) {
          o.start(ctx);
          o.end(ctx, req, toPrismError(e).code);
        }
        if (a !== undefined) a.record(ctx, req, toPrismError(e).code, false);
        throw e;
      }
    }
    this.track(ctx);
    if (o !== undefined) o.start(ctx);
    // Whether the audit sink reserved this call's record (backpressure waits here, before the call runs).
    let admitted = false;
    try {
      if (a !== undefined) {
        const wait = a.admit(ctx);
        if (wait !== undefined) await wait;
        admitted = true;
      }
      const res = await (this.auth === undefined || ctx.ingress === "mesh" ? this.dispatch(ctx, req) : this.authorizedDispatch(ctx, req));
      if (o !== undefined) o.end(ctx, req, 0);
      if (a !== undefined) a.record(ctx, req, 0, admitted);
      return res;
    } catch (e) {
      const code = toPrismError(e).code;
      if (o !== undefined) o.end(ctx, req, code);
      if (a !== undefined) a.record(ctx, req, code, admitted);
      throw e;
    } finally {
      this.untrack(ctx);
      if (ctx.principalUsage !== undefined) this.releasePrincipal(ctx);
      this.releaseLongPoll(ctx);
      if (this.onIdle !== undefined && this.liveCount === 0) this.onIdle();
    }
  }

  /** The auth step, the principal's limits, then dispatch: no await when the decision was synchronous (a cached token). */
  private authorizedDispatch(ctx: RequestContext, req: any): Promise<object> {
    const wait = this.auth!.check(ctx, req);
    if (wait === undefined) {
      if (this.principalLimits !== undefined) this.admitPrincipal(ctx);
      return this.dispatch(ctx, req);
    }
    return wait.then(() => {
      if (this.principalLimits !== undefined) this.admitPrincipal(ctx);
      return this.dispatch(ctx, req);
    });
  }

  private dispatch(ctx: RequestContext, req: any): Promise<object> {
    const m: MethodDef = ctx.method;
    if (m.admin !== undefined) {
      if (this.middleware !== null) for (const mw of this.middleware) mw(ctx, undefined);
      return m.admin(this, req, ctx);
    }
    if (m.handler === undefined) throw errors.unknownMethod(m.path);
    const ns = this.resolve(ctx, req);
    if (ns.owner !== undefined) return this.backend(ns, req, ctx);
    if (ctx.deadline !== 0) return this.withDeadline(ctx, this.backend(ns, req, ctx));
    return this.backend(ns, req, ctx);
  }

  /** The backend call: the namespace handler, or the worker that owns the namespace. */
  private backend(ns: NamespaceRuntime, req: any, ctx: RequestContext): Promise<object> {
    const o = this.observer;
    return o === undefined || ctx.obsStart === 0 ? this.invoke(ns, req, ctx) : o.backend(ctx, ns, req, this.invoke);
  }

  /**
   * Runs idempotent handlers (src/shedding/retry.ts retries them on UNAVAILABLE); null: called directly.
   * In-process backends (NamespaceRuntime.inProcess, decided when the namespace is applied) are
   * called directly too: they have no connection to lose, so there is nothing to retry.
   */
  retrier: ((h: NsHandler, ns: NamespaceRuntime, req: any, ctx: RequestContext) => Promise<object>) | null = null;

  private readonly invoke: BackendCall = (ns, req, ctx) =>
    ns.owner !== undefined
      ? this.forwarder!.unary(ns.owner, ctx, req)
      : // A write with an idempotency key is safe to retry too: its record answers a retry of a write that went through.
        this.retrier !== null && (ctx.method.idempotent || !!req.idempotencyKey) && ns.inProcess !== true
        ? this.retrier(ctx.method.handler!, ns, req, ctx)
        : ctx.method.handler!(ns, req, ctx);

  /** A server stream (PubSub.Subscribe). Resolves once the subscription is live. */
  async subscribe(ctx: RequestContext, req: any, sink: SubscriptionSink): Promise<Subscription> {
    const o = this.observer;
    const a = this.audit;
    if (o === undefined && a === undefined) return this.openSubscription(ctx, req, sink);
    if (o !== undefined) o.start(ctx);
    let admitted = false;
    try {
      if (a !== undefined) {
        const wait = a.admit(ctx);
        if (wait !== undefined) await wait;
        admitted = true;
      }
      const sub = await this.openSubscription(ctx, req, sink);
      if (o !== undefined) o.end(ctx, req, 0);
      if (a !== undefined) a.record(ctx, req, 0, admitted);
      return sub;
    } catch (e) {
      const code = toPrismError(e).code;
      if (o !== undefined) o.end(ctx, req, code);
      if (a !== undefined) a.record(ctx, req, code, admitted);
      throw e;
    }
  }

  private async openSubscription(ctx: RequestContext, req: any, sink: SubscriptionSink): Promise<Subscription> {
    const m = ctx.method;
    if (this.draining && ctx.ingress !== "mesh") throw errors.shuttingDown();
    if (m.subscribe === undefined) throw errors.unknownMethod(m.path);
    if (this.auth !== undefined && ctx.ingress !== "mesh") {
      const wait = this.auth.check(ctx, req);
      if (wait !== undefined) await wait;
    }
    const ns = this.resolve(ctx, req);
    if (ns.owner !== undefined) return this.forwarder!.subscribe(ns.owner, ctx, req, sink);
    return m.subscribe(ns, req, sink, ctx);
  }

  /** Abandons `p` with DEADLINE_EXCEEDED at ctx.deadline (one shared coarse timer, src/shedding/deadline.ts). */
  private withDeadline<T>(ctx: RequestContext, p: Promise<T>): Promise<T> {
    return raceDeadline(ctx, p);
  }
}

const LONG_POLL_DEQUEUE = prism.v1.Method.QUEUE_DEQUEUE;
const LONG_POLL_READ_GROUP = prism.v1.Method.STREAM_READ_GROUP;

/** A call that may wait for data: Dequeue with wait_seconds, ReadGroup with block_ms. */
function isLongPoll(id: number, req: any): boolean {
  if (id === LONG_POLL_DEQUEUE) return (req?.waitSeconds ?? 0) > 0;
  if (id === LONG_POLL_READ_GROUP) return Number(req?.blockMs ?? 0) > 0;
  return false;
}

export { PrismError };
