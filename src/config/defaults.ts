/**
 * Configuration defaults and derived values that serving code needs at run
 * time, without the schema: a serving process (a cluster worker) gets its
 * config already validated and never loads zod (schema.ts) or yaml (load.ts).
 * schema.ts uses these same values as its defaults.
 */
import type { NamespaceLimits } from "../backends/driver.js";
import type { NamespaceConfig } from "./schema.js";

export const DEFAULT_LIMITS: NamespaceLimits = {
  maxKeyBytes: 1024,
  maxValueBytes: 4 * 1024 * 1024,
  defaultTtlSeconds: 0,
  maxDeliveries: 5,
  visibilityTimeoutSeconds: 30,
  streamMaxCount: 0,
  streamMaxAgeSeconds: 0,
  streamClaimTimeoutSeconds: 30,
  idempotencyWindowSeconds: 86400,
};

export const SHEDDING_DEFAULTS = { max_in_flight: 10_000, max_event_loop_delay_ms: 500, capacity_pct: 90, low_max_utilization: 0.85 };
export const BREAKER_DEFAULTS = { failures: 5, probe_after_ms: 30_000 };
export const RETRY_DEFAULTS = { max_attempts: 3, budget_ratio: 0.1 };
/** Connection limits of every ingress (src/ingress/limits.ts); server.* in prism.yaml. */
export const CONNECTION_DEFAULTS = {
  idle_timeout_ms: 120_000,
  header_timeout_ms: 10_000,
  request_timeout_ms: 30_000,
  max_streams_per_connection: 256,
  max_session_memory_mb: 32,
  max_buffered_request_bytes: 128 * 1024 * 1024,
  max_in_flight_per_connection: 2048,
  max_long_polls: 4096,
  max_long_polls_per_connection: 256,
  max_json_keys: 20_000,
};
export const BACKPRESSURE_DEFAULTS: { policy: "disconnect" | "drop"; max_buffered_bytes?: number } = { policy: "disconnect" };

export function limitsOf(ns: NamespaceConfig): NamespaceLimits {
  const l = ns.limits ?? {};
  return {
    maxKeyBytes: l.max_key_bytes ?? DEFAULT_LIMITS.maxKeyBytes,
    maxValueBytes: l.max_value_bytes ?? DEFAULT_LIMITS.maxValueBytes,
    defaultTtlSeconds: l.default_ttl_seconds ?? DEFAULT_LIMITS.defaultTtlSeconds,
    maxDeliveries: l.max_deliveries ?? DEFAULT_LIMITS.maxDeliveries,
    visibilityTimeoutSeconds: l.visibility_timeout_seconds ?? DEFAULT_LIMITS.visibilityTimeoutSeconds,
    streamMaxCount: l.stream_max_count ?? DEFAULT_LIMITS.streamMaxCount,
    streamMaxAgeSeconds: l.stream_max_age_seconds ?? DEFAULT_LIMITS.streamMaxAgeSeconds,
    streamClaimTimeoutSeconds: l.stream_claim_timeout_seconds ?? DEFAULT_LIMITS.streamClaimTimeoutSeconds,
    idempotencyWindowSeconds: l.idempotency_window_seconds ?? DEFAULT_LIMITS.idempotencyWindowSeconds,
  };
}
