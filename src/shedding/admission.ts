/**
 * Admission control for one worker, run as gateway middleware before the
 * router hands a call to its namespace:
 *
 *   1. priority: the call's (gRPC `prism-priority`, HTTP `x-prism-priority`,
 *      WebSocket frame field), else the namespace's `priority_default`, else normal;
 *   2. the namespace's default deadline (`default_timeout_ms`) when the call has none;
 *   3. load shedding: load = max(in-flight / max_in_flight,
 *      event-loop delay / max_event_loop_delay_ms). A call is shed with
 *      RESOURCE_EXHAUSTED (PRISM_ERR_OVERLOADED) when load reaches its
 *      priority's threshold: low at 70%, normal at 85%, high at 95% of
 *      capacity (capacity_pct, default 90% of the hard limit); critical only
 *      at the hard limit itself. Low priority is also shed while the event loop's
 *      utilization (the share of time it runs callbacks, per 200 ms window) is
 *      above low_max_utilization (default 0.85): quick calls keep in-flight
 *      counts and loop delay low on a saturated worker;
 *   4. the namespace's rate limit (`rate_limit: { rps, burst }`):
 *      RESOURCE_EXHAUSTED (PRISM_ERR_RATE_LIMITED).
 *
 * Each namespace's policy is compiled once per applied runtime (a WeakMap
 * keyed by the runtime object, so a re-apply recompiles it) and costs a few
 * comparisons per call. Calls forwarded from another worker (mesh) were
 * admitted by that worker and are not counted twice.
 */
import type { Priority, RequestContext } from "../core/context.js";
import { errors } from "../core/errors.js";
import type { Middleware } from "../core/gateway.js";
import type { NamespaceRuntime } from "../router/router.js";
import { sheddingHooks } from "./hooks.js";
import { LoopLag } from "./load.js";
import { TokenBucket } from "./rate-limit.js";

export interface AdmissionOptions {
  /** Unary calls in progress on this worker at which it is at 100% load. */
  maxInFlight: number;
  /** Event-loop delay (ms) at which it is at 100% load; 0: not used. */
  maxEventLoopDelayMs: number;
  /** Percent of the hard limit at which shedding starts (default 90). */
  capacityPct: number;
  /** Low-priority calls are shed while the event loop is busier than this (0-1 utilization; 0: not used). */
  lowMaxUtilization?: number;
}

export const DEFAULT_ADMISSION: AdmissionOptions = { maxInFlight: 10_000, maxEventLoopDelayMs: 500, capacityPct: 90, lowMaxUtilization: 0.85 };

/** Fraction of capacity at which each priority starts being shed (critical: the hard limit). */
export const SHED_AT: Readonly<Record<Priority, number>> = { low: 0.7, normal: 0.85, high: 0.95, critical: Infinity };

/** What a namespace adds to admission, compiled once per applied runtime. */
interface NamespacePolicy {
  priority: Priority;
  timeoutMs: number;
  bucket: TokenBucket | null;
}

/** Reads the optional admission fields of a namespace config without depending on their schema shape. */
function compile(ns: NamespaceRuntime, now: () => number): NamespacePolicy {
  const c = ns.config as { priority_default?: Priority; default_timeout_ms?: number; rate_limit?: { rps: number; burst?: number } };
  const rl = c.rate_limit;
  return {
    priority: c.priority_default ?? "normal",
    timeoutMs: c.default_timeout_ms ?? 0,
    bucket: rl && rl.rps > 0 ? new TokenBucket(rl.rps, rl.burst ?? Math.max(1, Math.ceil(rl.rps)), now) : null,
  };
}

export class Admission {
  private readonly policies = new WeakMap<NamespaceRuntime, NamespacePolicy>();
  private readonly lag = new LoopLag();
  /** Load fraction (of the hard limit) at which each priority is shed. */
  private readonly thresholds: Record<Priority, number>;
  /** Calls shed (tests, health). */
  shed = 0;
  rateLimited = 0;

  constructor(
    readonly options: AdmissionOptions,
    /** Unary calls in progress on this worker (Gateway.inFlightCount). */
    private readonly inFlight: () => number,
    private readonly now: () => number = Date.now,
  ) {
    const cap = options.capacityPct / 100;
    this.thresholds = { low: cap * SHED_AT.low, normal: cap * SHED_AT.normal, high: cap * SHED_AT.high, critical: 1 };
    this.lowMaxUtilization = options.lowMaxUtilization ?? 0;
    if (options.maxEventLoopDelayMs > 0 || this.lowMaxUtilization > 0) this.lag.start();
  }

  private readonly lowMaxUtilization: number;

  /** The load signals' source (tests end windows on it). */
  get loopSignals(): LoopLag {
    return this.lag;
  }

  /** Current load as a fraction of the hard limit (1 = at the limit). */
  load(): number {
    const o = this.options;
    const a = o.maxInFlight > 0 ? this.inFlight() / o.maxInFlight : 0;
    const b = o.maxEventLoopDelayMs > 0 ? this.lag.delayMs / o.maxEventLoopDelayMs : 0;
    return a > b ? a : b;
  }

  /** The gateway middleware (bound once). */
  readonly middleware: Middleware = (ctx: RequestContext, ns: NamespaceRuntime | undefined): void => {
    if (ctx.ingress === "mesh") return;
    let policy: NamespacePolicy | undefined;
    if (ns !== undefined) {
      policy = this.policies.get(ns);
      if (policy === undefined) this.policies.set(ns, (policy = compile(ns, this.now)));
      if (ctx.deadline === 0 && policy.timeoutMs > 0) ctx.deadline = Date.now() + policy.timeoutMs;
    }
    // Admin calls (health checks, config changes) default to high: operators need them most under load.
    const priority = (ctx.priority ??= policy !== undefined ? policy.priority : "high");
    // Low priority also yields while the loop is busy most of the time: in-flight counts and loop delay
    // stay low when calls are quick, although every call then waits behind the others' CPU.
    if (this.load() >= this.thresholds[priority] || (priority === "low" && this.lowMaxUtilization > 0 && this.lag.utilization >= this.lowMaxUtilization)) {
      this.shed++;
      sheddingHooks.shed?.(ns !== undefined ? ns.name : "", priority);
      throw errors.overloaded(priority, 1);
    }
    if (policy !== undefined && policy.bucket !== null && !policy.bucket.take()) {
      this.rateLimited++;
      sheddingHooks.rateLimited?.(ns!.name);
      throw errors.rateLimited(ns!.name, policy.bucket.rps, policy.bucket.retryAfterSeconds());
    }
  };

  close(): void {
    this.lag.stop();
  }
}
