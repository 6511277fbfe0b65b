/**
 * The reliability layer (README "Reliability"): admission control and rate
 * limits (admission.ts, as gateway middleware), retries of idempotent calls
 * (retry.ts), deadlines on a shared timer wheel (deadline.ts, used by the
 * gateway), circuit breakers per backend instance (breaker.ts, wrapped around
 * the stores by the router) and the slow-subscriber policy (backpressure.ts,
 * used by the ingresses).
 */
import type { Gateway } from "../core/gateway.js";
import type { ServerConfig } from "../config/schema.js";
import { BACKPRESSURE_DEFAULTS, RETRY_DEFAULTS, SHEDDING_DEFAULTS } from "../config/defaults.js";
import { Admission } from "./admission.js";
import { Backpressure } from "./backpressure.js";
import type { BreakerOptions } from "./breaker.js";
import { sheddingHooks, type CircuitState } from "./hooks.js";
import { DEFAULT_RETRY, RetryPolicy } from "./retry.js";

export { Admission } from "./admission.js";
export { Backpressure } from "./backpressure.js";
export { CircuitBreaker, guardStores, DEFAULT_BREAKER, type BreakerOptions } from "./breaker.js";
export { RetryPolicy } from "./retry.js";
export { sheddingHooks } from "./hooks.js";

const STATE_NUM: Record<CircuitState, number> = { closed: 0, half_open: 1, open: 2 };

/** server.breaker → BreakerOptions. */
export function breakerOptions(server: Partial<ServerConfig>): BreakerOptions | undefined {
  const b = server.breaker;
  return b ? { failures: b.failures, probeAfterMs: b.probe_after_ms } : undefined;
}

/** server.backpressure → the ingresses' policy. */
export function backpressureOf(server: Partial<ServerConfig>): Backpressure {
  const b = server.backpressure ?? BACKPRESSURE_DEFAULTS;
  return new Backpressure({ policy: b.policy, maxBufferedBytes: b.max_buffered_bytes });
}

export interface Shedding {
  readonly admission: Admission;
  readonly retry: RetryPolicy | null;
  close(): void;
}

/** Installs admission control, rate limits and retries on a gateway, from server config. */
export function installShedding(gw: Gateway, server: Partial<ServerConfig>): Shedding {
  // Hand-built configs (tests) may lack the blocks: the schema's defaults apply.
  const s = server.shedding ?? SHEDDING_DEFAULTS;
  const admission = new Admission(
    { maxInFlight: s.max_in_flight, maxEventLoopDelayMs: s.max_event_loop_delay_ms, capacityPct: s.capacity_pct, lowMaxUtilization: s.low_max_utilization ?? SHEDDING_DEFAULTS.low_max_utilization },
    () => gw.inFlightCount,
  );
  gw.use(admission.middleware);
  const r = server.retry ?? RETRY_DEFAULTS;
  const retry = r.max_attempts > 1 ? new RetryPolicy({ ...DEFAULT_RETRY, maxAttempts: r.max_attempts, budgetRatio: r.budget_ratio }) : null;
  if (retry) gw.retrier = retry.invoke;
  // Metrics (src/observability) see shedding through the gateway's observer, when one is installed.
  sheddingHooks.shed ??= (ns, priority) => gw.observer?.shed(ns, priority);
  sheddingHooks.rateLimited ??= (ns) => gw.observer?.rateLimited(ns);
  sheddingHooks.breakerState ??= (namespaces, backend, state) => {
    const o = gw.observer;
    if (o !== undefined) for (const ns of namespaces) o.breakerState(ns, backend, STATE_NUM[state]);
  };
  return { admission, retry, close: () => admission.close() };
}
