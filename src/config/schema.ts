/**
 * prism.yaml: the schema (zod), defaults, `${ENV}` substitution and error
 * messages that name the file, the path and the reason, e.g.
 *   prism.yaml: namespaces[2].backend.type: unknown backend "redsi"
 */
import { z } from "zod";
import { PRIMITIVES, REQUIRED_INTERFACES, type ApiName, type PrimitiveName } from "../core/interfaces.js";
import { patternByName } from "../patterns/registry.js";
import { DEFAULT_MIGRATION } from "../migrations/types.js";
import { BACKPRESSURE_DEFAULTS, BREAKER_DEFAULTS, CONNECTION_DEFAULTS, DEFAULT_LIMITS, RETRY_DEFAULTS, SHEDDING_DEFAULTS } from "./defaults.js";
import { authSchema } from "../auth/config.js";

export { DEFAULT_LIMITS, limitsOf } from "./defaults.js";

export const NAMESPACE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
/** Names of backend instances (`backends:` keys) and slots. */
export const INSTANCE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;


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
    /** How long a write's idempotency_key is remembered (the *_idempotent interfaces; 30 days at most). */
    idempotency_window_seconds: z.number().int().positive().max(30 * 86400).optional(),
  })
  .strict();

export const backendSchema = z
  .object({ type: z.string() })
  .catchall(z.unknown());

/** What a namespace asks of its backends (src/control/needs.ts checks them against the drivers' declared properties). */
export const needsSchema = z
  .object({
    latency_p99_ms: z.number().positive().optional(),
    throughput_rps: z.number().positive().optional(),
    ttl: z.enum(["required", "optional"]).optional(),
    persistence: z.enum(["required", "optional"]).optional(),
    ordering: z.enum(["required", "optional"]).optional(),
    delivery: z.enum(["at-least-once", "at-most-once"]).optional(),
    max_value_bytes: z.number().int().positive().optional(),
    consistency: z.enum(["strong", "eventual"]).optional(),
  })
  .strict();

export const namespaceSchema = z
  .object({
    name: z.string().regex(NAMESPACE_NAME, "must be 1-128 of A-Z a-z 0-9 _ . - starting with a letter or digit"),
    /** Without `pattern`: the primitives served (default: all four, or the slots' names). src/config/load.ts derives it. */
    primitives: z.array(z.enum(PRIMITIVES)).min(1).optional(),
    /** A pattern of src/patterns/registry.ts; absent: the listed primitives, each its own one-slot pattern. */
    pattern: z.string().min(1).optional(),
    /**
     * The backend of every slot not bound in `slots`: an instance name from `backends:`,
     * `{ auto: true }` (chosen by `needs`), or an inline `{ type, ...options }` (a private instance).
     * Checked by src/config/load.ts (checkNamespace), which names the exact problem.
     */
    backend: z.unknown().optional(),
    /** Slot name → backend, in the same three forms as `backend`. */
    slots: z.record(z.string().regex(INSTANCE_NAME, "slot names are 1-64 of A-Z a-z 0-9 _ . -"), z.unknown()).optional(),
    needs: needsSchema.optional(),
    /** A migration of one slot between two named instances (src/migrations; phases advanced by `prism migrate`). */
    migration: z.lazy(() => migrationSchema).optional(),
    /** The pattern's own settings (cache-aside: ttl_seconds, write), checked by src/config/pattern-options.ts. */
    options: z.record(z.string(), z.unknown()).optional(),
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
    /** Audit log (src/audit). hide_keys: this namespace's records carry no key / queue / topic / stream name. */
    audit: z.object({ hide_keys: z.boolean().default(false) }).strict().optional(),
    /** src/pii. encrypt: values and payloads are AES-256-GCM ciphertext in the backend (needs security.kek); mask: keys are masked in the access log and audit records. */
    pii: z.enum(["encrypt", "mask"]).optional(),
  })
  .strict()
  .transform((ns) => ({ ...ns, primitives: (ns.primitives as ApiName[] | undefined) ?? derivePrimitives(ns) }));

/**
 * The primitives a namespace serves when it does not list them: its pattern's;
 * else the primitives its slots name, when it has no backend for the rest; else all four.
 */
function derivePrimitives(ns: { pattern?: string; backend?: unknown; slots?: Record<string, unknown>; options?: Record<string, unknown> }): ApiName[] {
  if (ns.pattern !== undefined) {
    const p = patternByName(ns.pattern);
    return p ? [...(p.servesFor?.(ns.options ?? {}) ?? p.serves)] : [];
  }
  const named = Object.keys(ns.slots ?? {});
  if (named.length && ns.backend === undefined) return PRIMITIVES.filter((p) => named.includes(p));
  return [...PRIMITIVES];
}

export const migrationSchema = z
  .object({
    strategy: z.enum(["online"]).default("online"),
    /** The instance the slot is bound to now (checked); default: that binding. */
    from: z.string().regex(INSTANCE_NAME).optional(),
    to: z.string().regex(INSTANCE_NAME, "must name a backend instance declared under backends:"),
    /** Which slot moves: default the namespace's only slot, else its keyvalue slot. */
    slot: z.string().optional(),
    backfill_rps: z.number().positive().max(1_000_000).default(DEFAULT_MIGRATION.backfill_rps),
    shadow_read_pct: z.number().min(0).max(100).default(DEFAULT_MIGRATION.shadow_read_pct),
    cutover_steps: z
      .array(z.number().min(0.01).max(100))
      .min(1)
      .refine((a) => a.every((v, i) => i === 0 || v > a[i - 1]!) && a[a.length - 1] === 100, "must increase and end at 100")
      .default(DEFAULT_MIGRATION.cutover_steps),
    rollback_on: z
      .object({
        error_rate: z.number().min(0).max(1).default(DEFAULT_MIGRATION.rollback_on.error_rate),
        p99_ms: z.number().positive().default(DEFAULT_MIGRATION.rollback_on.p99_ms),
        diff_pct: z.number().min(0).max(100).default(DEFAULT_MIGRATION.rollback_on.diff_pct),
      })
      .strict()
      .default(DEFAULT_MIGRATION.rollback_on),
    window_seconds: z.number().int().min(1).max(600).default(DEFAULT_MIGRATION.window_seconds),
    /** Dual-write and shadow reads only: never serve from `to`. */
    dry_run: z.boolean().default(false),
    /** Keys with a secondary write pending (write-behind) before a write waits for its secondary; 0: always wait. */
    write_behind_max_keys: z.number().int().min(0).max(10_000_000).default(DEFAULT_MIGRATION.write_behind_max_keys),
    /** Key + value bytes pending secondary writes may hold before a write waits for its secondary. */
    write_behind_max_bytes: z.number().int().min(0).max(2 ** 40).default(DEFAULT_MIGRATION.write_behind_max_bytes),
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
    /** Low-priority calls are shed while the event loop's utilization (0-1, per 200 ms window) is above this (0: not used). */
    low_max_utilization: z.number().min(0).max(1).default(SHEDDING_DEFAULTS.low_max_utilization),
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

/** Where namespaces and backend instances applied through Admin are kept (src/control/store.ts). */
export const configStoreSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("sqlite"), path: z.string().min(1).default("config.db") }).strict(),
  z.object({ type: z.literal("postgres"), url: z.string().min(1), table: z.string().regex(/^[a-z_][a-z0-9_]{0,40}$/).optional() }).strict(),
  /** Kept in this process only: lost on restart, never shared (tests, embedders). */
  z.object({ type: z.literal("memory") }).strict(),
]);

/**
 * TLS on every ingress (src/ingress/tls.ts). File paths resolve inside server.data_dir
 * unless server.allowed_paths lists them (src/config/paths.ts); the files are re-read when they change.
 */
export const tlsSchema = z
  .object({
    /** PEM certificate chain and private key of the server. */
    cert: z.string().min(1),
    key: z.string().min(1),
    /** PEM CA bundle client certificates are verified against (mTLS). */
    client_ca: z.string().min(1).optional(),
    min_version: z.enum(["TLSv1.2", "TLSv1.3"]).default("TLSv1.3"),
    /** none: no client certificate asked; request: verified if sent; require: a handshake without a valid one fails. Default: require with client_ca, else none. */
    client_auth: z.enum(["none", "request", "require"]).optional(),
    /** The mTLS principal's id: the subject CN or the first subjectAltName. */
    principal_from: z.enum(["cn", "san"]).default("cn"),
    /** How often the files are checked for changes (rotation). */
    reload_interval_ms: z.number().int().min(50).max(3_600_000).default(1000),
  })
  .strict()
  .superRefine((t, ctx) => {
    if (t.client_auth !== undefined && t.client_auth !== "none" && t.client_ca === undefined) {
      ctx.addIssue({ code: "custom", path: ["client_ca"], message: `client_auth "${t.client_auth}" needs client_ca (the CA bundle client certificates are verified against)` });
    }
  })
  .transform((t) => ({ ...t, client_auth: t.client_auth ?? (t.client_ca !== undefined ? ("require" as const) : ("none" as const)) }));

/** One principal's limits: calls in progress (long polls excepted) and long polls waiting, per worker; 0: no limit. */
const principalLimitSchema = z
  .object({
    max_in_flight: uint.optional(),
    max_long_polls: uint.optional(),
    max_buffered_bytes: uint.optional(),
  })
  .strict();

/** server.per_principal: limits for every principal, and `principals` (`<kind>:<id>` as in grants, or `anonymous`) with their own. */
export const perPrincipalSchema = z
  .object({
    max_in_flight: uint.default(0),
    max_long_polls: uint.default(0),
    /** Unfinished request bytes (bodies, gRPC messages, WebSocket frames still arriving) per principal, per worker (src/ingress/limits.ts PrincipalBytes). */
    max_buffered_bytes: uint.default(0),
    principals: z
      .record(z.string().regex(/^(anonymous|(jwt|apikey|mtls):.+)$/, "must be <kind>:<id> with kind jwt, apikey or mtls (e.g. apikey:batch), or anonymous"), principalLimitSchema)
      .default({}),
  })
  .strict();

export const serverSchema = z
  .object({
    /** Without an `auth` block (or mTLS with client_auth require), only a loopback address may be bound unless insecure_no_auth. */
    host: z.string().default("127.0.0.1"),
    /** Allow binding a non-loopback address with no authentication configured (also `prism serve --insecure-no-auth`). */
    insecure_no_auth: z.boolean().default(false),
    tls: tlsSchema.optional(),
    /** Every file of an embedded backend and the default config store live under it (created on first use). */
    data_dir: z.string().min(1).default("prism-data"),
    /** Files or directories outside data_dir that file options may name (only from the operator's prism.yaml). */
    allowed_paths: z.array(z.string().min(1)).default([]),
    /** Default for `prism serve`: { type: sqlite, path: config.db } inside data_dir. In-process servers without one keep config in memory. */
    config_store: configStoreSchema.optional(),
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
    /** Browser safety (src/ingress/browser.ts): Origins allowed on the HTTP/WebSocket port ("scheme://host[:port]", or "*"). Empty: a request with any Origin header is refused (403). */
    allowed_origins: z.array(z.string().min(1)).default([]),
    /** Host header names accepted on the HTTP/WebSocket port ("name", "name:port" or "*"); default: localhost and the bind host, with the port. IP literals always pass. Others: 421. */
    allowed_hosts: z.array(z.string().min(1)).optional(),
    /** Connection limits on every ingress (src/ingress/limits.ts). 0 turns a timeout off. */
    idle_timeout_ms: uint.default(CONNECTION_DEFAULTS.idle_timeout_ms),
    header_timeout_ms: uint.default(CONNECTION_DEFAULTS.header_timeout_ms),
    /** An unfinished request body / message / WebSocket frame must complete within this. */
    request_timeout_ms: uint.default(CONNECTION_DEFAULTS.request_timeout_ms),
    max_streams_per_connection: z.number().int().min(1).max(65535).default(CONNECTION_DEFAULTS.max_streams_per_connection),
    max_session_memory_mb: z.number().int().min(1).max(4096).default(CONNECTION_DEFAULTS.max_session_memory_mb),
    /** Unfinished request bytes one connection may hold (default: 2 × max_message_bytes). */
    max_connection_buffered_bytes: z.number().int().positive().optional(),
    /** Unfinished request bytes all connections of a worker may hold together. */
    max_buffered_request_bytes: z.number().int().positive().default(CONNECTION_DEFAULTS.max_buffered_request_bytes),
    /** Unary calls in progress on one connection (WebSocket; HTTP/2: max_streams_per_connection). Keep it below the shedding point. */
    max_in_flight_per_connection: z.number().int().positive().default(CONNECTION_DEFAULTS.max_in_flight_per_connection),
    /** Long polls (Dequeue wait_seconds, ReadGroup block_ms) waiting per worker and per connection: their own budget, not the shedding load. */
    max_long_polls: z.number().int().positive().default(CONNECTION_DEFAULTS.max_long_polls),
    max_long_polls_per_connection: z.number().int().positive().default(CONNECTION_DEFAULTS.max_long_polls_per_connection),
    /** Open connections per worker across every ingress; at the cap the one quiet longest (≥ 1 s) is closed for a new one, or the new one is refused. Default: the open-files limit less max(64, 1/8 of it). 0: no cap. */
    max_connections: uint.optional(),
    /** JSON request bodies: most object keys (and containers), and deepest nesting, checked before parsing (413 / 400). */
    max_json_keys: z.number().int().positive().default(CONNECTION_DEFAULTS.max_json_keys),
    /** Limits per authenticated principal on each worker (src/core/gateway.ts); absent: none. Needs `auth:` or mTLS identities. */
    per_principal: perPrincipalSchema.optional(),
  })
  .strict();

export const configSchema = z
  .object({
    server: serverSchema.default(serverSchema.parse({})),
    /** Named backend instances, shared by the namespaces that name them (one pool, one breaker each). */
    backends: z.record(z.string().regex(INSTANCE_NAME, "backend instance names are 1-64 of A-Z a-z 0-9 _ . - starting with a letter or digit"), backendSchema).default({}),
    namespaces: z.array(namespaceSchema).default([]),
    /** The audit log (src/audit): one JSON line per data and Admin call. Absent: no audit. */
    audit: z.lazy(() => auditSchema).optional(),
    /** Key material (src/pii): the key-encryption key that wraps the data keys of `pii: encrypt` namespaces. */
    security: z.lazy(() => securitySchema).optional(),
    /** Authentication and authorization (src/auth): JWT, API keys, mTLS principals, namespace RBAC, OPA. Absent: every caller may do everything. */
    auth: authSchema.optional(),
  })
  .strict();

/** Where a key-encryption key comes from: a file or an environment variable holding 32 bytes as hex or base64. */
export const kekSchema = z
  .object({
    /** Written into every wrapped data key: which KEK unwraps it (1-64 of A-Z a-z 0-9 _ . -). */
    id: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, "must be 1-64 of A-Z a-z 0-9 _ . -"),
    file: z.string().min(1).optional(),
    env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be an environment variable name").optional(),
  })
  .strict()
  .refine((k) => (k.file === undefined) !== (k.env === undefined), "give exactly one of file or env");

export const securitySchema = z
  .object({
    /** The current KEK: new data keys are wrapped with it, `prism keys rotate` re-wraps the others with it. */
    kek: kekSchema.optional(),
    /** Older KEKs still accepted for unwrapping until `prism keys rotate` has re-wrapped their data keys. */
    previous_keks: z.array(kekSchema).default([]),
  })
  .strict();

export const auditSchema = z
  .object({
    /** The JSON-lines file (relative: inside server.data_dir). With --workers N each worker writes <name>.w<index><ext>. */
    file: z.string().min(1),
    /** Rotate when the file exceeds this: file → file.1 → … → file.<keep>. */
    rotate_bytes: z.number().int().min(1024).default(100 * 1024 * 1024),
    /** Rotated files kept. */
    keep: z.number().int().min(1).max(1000).default(10),
    /** Each record carries prev (the previous record's hash) and hash (sha256): `prism audit verify FILE` detects removed, edited or reordered lines. */
    hash_chain: z.boolean().default(true),
    /**
     * Key the chain: each line's link is HMAC-SHA256 with this secret ("mac") instead of sha256
     * ("hash"), so no one without the key can re-seal an edited or shortened log. 32 bytes as 64
     * hex digits or base64, from a file or an environment variable; `prism audit verify` needs it
     * (--key-file or PRISM_AUDIT_KEY).
     */
    chain_key: z
      .object({ file: z.string().min(1).optional(), env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be an environment variable name").optional() })
      .strict()
      .refine((k) => (k.file === undefined) !== (k.env === undefined), "give exactly one of file or env")
      .optional(),
    /** A full buffer (or a failing disk): block makes new calls wait; refuse answers them UNAVAILABLE "audit log full". */
    on_full: z.enum(["block", "refuse"]).default("block"),
    /** Records held in memory before they are written. */
    buffer_records: z.number().int().min(1).max(10_000_000).default(65_536),
  })
  .strict();

/** An inline backend or a backend instance: its type and its options (validated by the driver's schema). */
export type BackendSpec = { type: string } & Record<string, unknown>;
/** How a slot names its backend: an instance name, automatic choice, or an inline private instance. */
export type BackendRef = string | { auto: true } | BackendSpec;

export type NamespaceConfigInput = z.input<typeof namespaceSchema>;
/**
 * A validated namespace (src/config/load.ts): `primitives` derived, inline
 * backends' options parsed with defaults. `backend` and the values of `slots`
 * are BackendRefs (typed loosely so that existing code reading an inline
 * `backend.type` keeps compiling; src/control/resolve.ts reads them through backendRefOf).
 */
export type NamespaceConfig = Omit<z.output<typeof namespaceSchema>, "primitives" | "backend" | "slots"> & {
  /** What it serves: primitives, or a pattern's API (multicast_registry). */
  primitives: ApiName[];
  backend?: any;
  slots?: Record<string, any>;
};
export type NeedsConfig = z.output<typeof needsSchema>;
export type MigrationConfig = z.output<typeof migrationSchema>;
export type ConfigStoreConfig = z.output<typeof configStoreSchema>;
export type ServerConfig = z.output<typeof serverSchema>;
export type AuditConfig = z.output<typeof auditSchema>;
export type SecurityConfig = z.output<typeof securitySchema>;
export type KekConfig = z.output<typeof kekSchema>;
export type TlsConfig = z.output<typeof tlsSchema>;
export type PrismConfig = Omit<z.output<typeof configSchema>, "namespaces" | "backends"> & {
  namespaces: NamespaceConfig[];
  backends: Record<string, BackendSpec>;
};


export function requiredInterfaces(primitives: readonly PrimitiveName[]) {
  return primitives.flatMap((p) => REQUIRED_INTERFACES[p]);
}

/** `a.b[2].c` from a zod issue path. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const p of path) out += typeof p === "number" ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out || "(root)";
}
