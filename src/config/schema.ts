/**
 * prism.yaml: the schema (zod), defaults, `${ENV}` substitution and error
 * messages that name the file, the path and the reason, e.g.
 *   prism.yaml: namespaces[2].backend.type: unknown backend "redsi"
 */
import { z } from "zod";
import { PRIMITIVES, REQUIRED_INTERFACES, type PrimitiveName } from "../core/interfaces.js";
import { BACKPRESSURE_DEFAULTS, BREAKER_DEFAULTS, DEFAULT_LIMITS, RETRY_DEFAULTS, SHEDDING_DEFAULTS } from "./defaults.js";

export { DEFAULT_LIMITS, limitsOf } from "./defaults.js";

export const NAMESPACE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;


const uint = z.number().int().nonnegative();

export const limitsSchema = z
  .object({
    max_key_bytes: z.number().int().positive().max(64 * 1024).optional(),
    max_value_bytes: z.number().int().positive().max(64 * 1024 * 1024).optional(),
    default_ttl_seconds: uint.optional(),
    max_deliveries: z.number().int().positive().max(1000).optional(),
    visibility_timeout_seconds: z.number().int().positive().max(12 * 3600).optional(),
    stream_max_count: uint.optional(),
    stream_max_age_seconds: uint.optional(),
    stream_claim_timeout_seconds: z.number().int().positive().optional(),
  })
  .strict();

export const backendSchema = z
  .object({ type: z.string() })
  .catchall(z.unknown());

export const namespaceSchema = z
  .object({
    name: z.string().regex(NAMESPACE_NAME, "must be 1-128 of A-Z a-z 0-9 _ . - starting with a letter or digit"),
    primitives: z.array(z.enum(PRIMITIVES)).min(1).default([...PRIMITIVES]),
    backend: backendSchema,
    limits: limitsSchema.default({}),
    /** Priority of calls that do not say (src/shedding). */
    priority_default: z.enum(["critical", "high", "normal", "low"]).optional(),
    /** Deadline of calls that do not set one, in ms (0 or absent: none). */
    default_timeout_ms: z.number().int().nonnegative().optional(),
    /** Token bucket per namespace and worker: requests/s and burst (default burst = rps). */
    rate_limit: z.object({ rps: z.number().positive(), burst: z.number().int().positive().optional() }).strict().optional(),
    /** Circuit breaker of this namespace's backend instance (overrides server.breaker; the last applied namespace sharing an instance wins). */
    breaker: z.lazy(() => breakerSchema).optional(),
    /** Access-log options (src/observability). log_keys false: the access log omits this namespace's keys. */
    observability: z.object({ log_keys: z.boolean().default(true) }).strict().optional(),
  })
  .strict();

/** Circuit breaker per backend instance (src/shedding/breaker.ts). failures 0 disables it. */
export const breakerSchema = z
  .object({
    failures: z.number().int().nonnegative().default(BREAKER_DEFAULTS.failures),
    probe_after_ms: z.number().int().positive().default(BREAKER_DEFAULTS.probe_after_ms),
  })
  .strict();

/** Admission control per worker (src/shedding/admission.ts). */
export const sheddingSchema = z
  .object({
    /** Unary calls in progress per worker at which it counts as 100% loaded (0: not used). */
    max_in_flight: z.number().int().nonnegative().default(SHEDDING_DEFAULTS.max_in_flight),
    /** Event-loop delay in ms at which a worker counts as 100% loaded (0: not used). */
    max_event_loop_delay_ms: z.number().int().nonnegative().default(SHEDDING_DEFAULTS.max_event_loop_delay_ms),
    /** Shedding starts at this percent of the hard limit (low first, critical last). */
    capacity_pct: z.number().min(1).max(100).default(SHEDDING_DEFAULTS.capacity_pct),
  })
  .strict();

/** Retries of idempotent calls on UNAVAILABLE (src/shedding/retry.ts). */
export const retrySchema = z
  .object({
    max_attempts: z.number().int().min(1).max(10).default(RETRY_DEFAULTS.max_attempts),
    /** Tokens per call: retries add at most this fraction of extra load. */
    budget_ratio: z.number().min(0).max(1).default(RETRY_DEFAULTS.budget_ratio),
  })
  .strict();

/** What happens to a subscriber that does not keep up (src/shedding/backpressure.ts). */
export const backpressureSchema = z
  .object({
    /** disconnect: end the subscription / connection; drop: drop pub/sub messages for that subscriber and count them. */
    policy: z.enum(["disconnect", "drop"]).default(BACKPRESSURE_DEFAULTS.policy),
    /** Unsent bytes per WebSocket connection / SSE subscription beyond which the policy applies (default 16 MiB / 1 MiB). gRPC: 10,000 messages. */
    max_buffered_bytes: z.number().int().positive().optional(),
  })
  .strict();

export const serverSchema = z
  .object({
    host: z.string().default("127.0.0.1"),
    grpc_port: z.number().int().min(0).max(65535).default(8980),
    /**
     * gRPC server implementation: "http2" (Prism's own on node:http2, src/ingress/grpc-h2.ts: about half the CPU per call)
     * or "grpc-js" (@grpc/grpc-js). Both read gzip and deflate request messages and answer uncompressed.
     */
    grpc_server: z.enum(["grpc-js", "http2"]).default("http2"),
    http_port: z.number().int().min(0).max(65535).default(8981),
    /** Largest frame / message / body Prism reads, in bytes. */
    max_message_bytes: z.number().int().positive().default(8 * 1024 * 1024),
    workers: z.union([z.number().int().positive(), z.literal("auto")]).default("auto"),
    shedding: sheddingSchema.default(sheddingSchema.parse({})),
    breaker: breakerSchema.default(breakerSchema.parse({})),
    retry: retrySchema.default(retrySchema.parse({})),
    backpressure: backpressureSchema.default(backpressureSchema.parse({})),
    /** pino level; the env PRISM_LOG_LEVEL wins (src/observability/logging.ts). */
    log_level: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
    /** Fraction of calls written to the access log (0: none, 1: all). */
    access_log_sample: z.number().min(0).max(1).default(1),
    /** Prometheus metrics (GET /metrics on the HTTP port). */
    metrics: z.boolean().default(true),
  })
  .strict();

export const configSchema = z
  .object({
    server: serverSchema.default(serverSchema.parse({})),
    namespaces: z.array(namespaceSchema).default([]),
  })
  .strict();

export type NamespaceConfigInput = z.input<typeof namespaceSchema>;
export type NamespaceConfig = z.output<typeof namespaceSchema>;
export type ServerConfig = z.output<typeof serverSchema>;
export type PrismConfig = z.output<typeof configSchema>;


export function requiredInterfaces(primitives: readonly PrimitiveName[]) {
  return primitives.flatMap((p) => REQUIRED_INTERFACES[p]);
}

/** `a.b[2].c` from a zod issue path. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const p of path) out += typeof p === "number" ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out || "(root)";
}
