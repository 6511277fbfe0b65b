/**
 * A circuit breaker per backend instance (one Redis URL, one PostgreSQL pool…).
 *
 * closed ──N consecutive failures──▶ open ──probeAfterMs, or the backend's own──▶ half_open
 *   ▲                                  ▲       health check succeeding             │
 *   └──────────── probe succeeds ──────┼──── probe fails ──────────────────────────┘
 *
 * While open, the backend instance's own health check (BackendInstance.health:
 * a Redis PING, a PostgreSQL SELECT 1 …) runs every healthCheckMs (default
 * 500 ms; one at a time, bounded by a timeout); the first success moves the
 * circuit to half-open at once, so calls resume as soon as the backend is back
 * instead of probeAfterMs after the circuit opened. probeAfterMs stays the
 * fallback (a backend without a health check, or one whose check passes while
 * its calls fail: the probe call re-opens the circuit, and checking resumes).
 *
 * While open, calls fail at once with UNAVAILABLE / PRISM_ERR_CIRCUIT_OPEN and
 * never reach the driver. Half-open lets one probe call through at a time (a
 * new one if the probe hangs longer than probeAfterMs); its outcome closes or
 * re-opens the circuit. Only availability failures count (UNAVAILABLE,
 * DEADLINE_EXCEEDED, INTERNAL): a refused argument, a missing key or a CAS
 * conflict says the backend is healthy.
 *
 * The wrapper around the stores is built once per namespace when the router
 * applies it (guardStores): one plain function per store method, no Proxy,
 * and the settle handlers are bound once per breaker, not per call.
 */
import type { Clock } from "../core/clock.js";
import { Code, errors, PrismError } from "../core/errors.js";
import type { NamespaceStores } from "../backends/driver.js";
import { sheddingHooks, type CircuitState } from "./hooks.js";

export interface BreakerOptions {
  /** Consecutive failures that open the circuit (default 5; 0 disables the breaker). */
  failures: number;
  /** How long the circuit stays open before a probe call is let through (default 30 s). */
  probeAfterMs: number;
}

export const DEFAULT_BREAKER: BreakerOptions = { failures: 5, probeAfterMs: 30_000 };

/** How often an open circuit runs the backend's health check (ms). */
export const HEALTH_CHECK_MS = 500;
/** A health check that has not answered by then counts as failed. */
const HEALTH_CHECK_TIMEOUT_MS = 2_000;

/** The backend's own health check, as the breaker uses it: true when the backend answers. */
export type HealthCheck = () => Promise<boolean>;

const COUNTED: ReadonlySet<number> = new Set([Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.INTERNAL]);

/** True for errors that say the backend is in trouble (not the request). Non-Prism errors surface as INTERNAL. */
export function isBackendFailure(e: unknown): boolean {
  if (!(e instanceof PrismError)) return true;
  return COUNTED.has(e.code) && e.reason !== "PRISM_ERR_CIRCUIT_OPEN";
}

export class CircuitBreaker {
  private state_: CircuitState = "closed";
  private consecutive = 0;
  private openedAt = 0;
  private probeStartedAt = 0;
  private probing = false;
  /** Calls refused while open (for tests and health). */
  rejected = 0;
  /** Namespaces served by this instance (kept by the router, for metrics). */
  readonly namespaces = new Set<string>();
  /** Health checks run while open (tests, diagnostics). */
  healthChecks = 0;
  private checkTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  private checking = false;
  private disposed = false;

  constructor(
    /** Display name of the backend instance (no credentials). */
    readonly backend: string,
    public options: BreakerOptions,
    private readonly clock: Clock,
    /** The instance's health check (the router passes BackendInstance.health); absent: only probeAfterMs recovers. */
    private readonly healthCheck?: HealthCheck,
    private readonly healthCheckMs = HEALTH_CHECK_MS,
  ) {}

  /** Stops the health checks for good (the instance is closed). */
  dispose(): void {
    this.disposed = true;
    this.stopChecks();
  }

  private startChecks(): void {
    if (this.healthCheck === undefined || this.disposed || this.checkTimer !== undefined) return;
    this.checkTimer = setTimeout(runHealthCheck, this.healthCheckMs, this);
    this.checkTimer.unref?.();
  }

  private stopChecks(): void {
    if (this.checkTimer !== undefined) clearTimeout(this.checkTimer);
    this.checkTimer = undefined;
  }

  /** @internal one health check while open; success: half-open now. */
  async checkHealth(): Promise<void> {
    this.checkTimer = undefined;
    if (this.disposed || this.state_ !== "open" || this.checking || this.healthCheck === undefined) return;
    this.checking = true;
    this.healthChecks++;
    let ok = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      ok = await Promise.race([
        this.healthCheck().catch(() => false),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(resolve, HEALTH_CHECK_TIMEOUT_MS, false);
          timer.unref?.();
        }),
      ]);
    } finally {
      clearTimeout(timer);
      this.checking = false;
    }
    if (this.disposed || this.state_ !== "open") return;
    if (ok) {
      // The backend answers its own health check: let a probe call through at once.
      this.probing = false;
      this.set("half_open");
      return;
    }
    this.startChecks();
  }

  get state(): CircuitState {
    if (this.state_ === "open" && this.clock.now() - this.openedAt >= this.options.probeAfterMs) return "half_open";
    return this.state_;
  }

  get consecutiveFailures(): number {
    return this.consecutive;
  }

  /** A line for Admin Health. */
  describe(): string {
    const s = this.state;
    if (s === "closed") return "closed";
    const left = Math.max(0, this.options.probeAfterMs - (this.clock.now() - this.openedAt));
    if (s !== "open") return `half_open (probing)`;
    const when = this.healthCheck !== undefined ? `probe once the backend's health check passes, at the latest in ${Math.ceil(left / 1000)}s` : `probe in ${Math.ceil(left / 1000)}s`;
    return `open (${this.consecutive} consecutive failures; ${when})`;
  }

  /** Throws PRISM_ERR_CIRCUIT_OPEN when the call must not reach the backend. */
  admit(): void {
    if (this.state_ === "closed" || this.options.failures === 0) return;
    const now = this.clock.now();
    if (this.state_ === "open") {
      if (now - this.openedAt < this.options.probeAfterMs) return this.refuse(now);
      this.set("half_open");
    }
    // half_open: one probe at a time; a hung probe does not block recovery forever.
    if (this.probing && now - this.probeStartedAt < this.options.probeAfterMs) return this.refuse(now);
    this.probing = true;
    this.probeStartedAt = now;
  }

  private refuse(now: number): never {
    this.rejected++;
    const left = this.state_ === "open" ? this.options.probeAfterMs - (now - this.openedAt) : this.options.probeAfterMs;
    throw errors.circuitOpen(this.backend, this.consecutive, Math.max(1, Math.ceil(left / 1000)));
  }

  /** Bound once: the settle handlers of every guarded call. */
  readonly onSuccess = <T>(v: T): T => {
    this.success();
    return v;
  };

  readonly onFailure = (e: unknown): never => {
    this.failure(e);
    throw e;
  };

  success(): void {
    this.consecutive = 0;
    this.probing = false;
    if (this.state_ !== "closed") this.set("closed");
  }

  failure(e: unknown): void {
    if (!isBackendFailure(e)) return this.success();
    this.consecutive++;
    this.probing = false;
    if (this.options.failures === 0) return;
    if (this.state_ === "half_open" || (this.state_ === "closed" && this.consecutive >= this.options.failures)) {
      this.openedAt = this.clock.now();
      this.set("open");
    }
  }

  private set(s: CircuitState): void {
    this.state_ = s;
    if (s === "open") this.startChecks();
    else this.stopChecks();
    sheddingHooks.breakerState?.(this.namespaces, this.backend, s);
  }
}

function runHealthCheck(b: CircuitBreaker): void {
  void b.checkHealth();
}

/** The driver methods a breaker guards, by store. `close` and unknown extras pass through. */
const METHODS = {
  keyvalue: ["get", "set", "delete", "exists", "batchGet", "batchSet", "batchDelete", "scan", "expire", "ttl", "persist", "setWithMessage", "deleteWithMessage", "outboxRelay", "setOnce", "deleteOnce"],
  pubsub: ["publish", "subscribe", "publishOnce"],
  queue: ["enqueue", "dequeue", "ack", "nack", "extendVisibility", "enqueueOnce", "depths"],
  stream: ["append", "read", "readGroup", "ackGroup", "appendOnce"],
  payload: ["put", "get", "head", "delete", "list"],
} as const;

type AnyFn = (...args: unknown[]) => Promise<unknown>;

function guard(b: CircuitBreaker, target: object, fn: AnyFn): AnyFn {
  return function guarded(...args: unknown[]): Promise<unknown> {
    let p: Promise<unknown>;
    try {
      b.admit();
    } catch (e) {
      return Promise.reject(e);
    }
    try {
      p = fn.apply(target, args);
    } catch (e) {
      b.failure(e);
      return Promise.reject(e);
    }
    return p.then(b.onSuccess, b.onFailure);
  };
}

function guardStore<S extends object>(b: CircuitBreaker, store: S, names: readonly string[]): S {
  const out: Record<string, unknown> = {};
  const src = store as unknown as Record<string, unknown>;
  for (const name of names) {
    const fn = src[name];
    if (typeof fn === "function") out[name] = guard(b, store, fn as AnyFn);
  }
  return out as S;
}

/** The namespace's stores with every driver call passing through the instance's breaker. */
export function guardStores(stores: NamespaceStores, b: CircuitBreaker): NamespaceStores {
  const out: NamespaceStores = {};
  if (stores.keyvalue) out.keyvalue = guardStore(b, stores.keyvalue, METHODS.keyvalue);
  if (stores.pubsub) out.pubsub = guardStore(b, stores.pubsub, METHODS.pubsub);
  if (stores.queue) out.queue = guardStore(b, stores.queue, METHODS.queue);
  if (stores.stream) out.stream = guardStore(b, stores.stream, METHODS.stream);
  if (stores.payload) out.payload = guardStore(b, stores.payload, METHODS.payload);
  if (stores.close) out.close = stores.close.bind(stores);
  return out;
}
