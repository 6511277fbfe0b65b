/**
 * The error catalogue. Every failure that reaches a caller is a PrismError with
 * a standard gRPC status code, a stable reason (PRISM_ERR_*) and a message that
 * names the field or namespace at fault. Ingresses map the code to their own
 * wire form (gRPC status, HTTP status, WebSocket ERROR frame) with `httpStatus`.
 * Messages built from a driver's error text pass through redactSecrets
 * (src/core/redact.ts): a connection string inside one never reaches a caller.
 */
import { redactSecrets } from "./redact.js";

export const Code = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type Code = (typeof Code)[keyof typeof Code];

export const codeName: Record<number, string> = Object.fromEntries(
  Object.entries(Code).map(([k, v]) => [v, k]),
);

const HTTP_STATUS: Record<number, number> = {
  [Code.OK]: 200,
  [Code.CANCELLED]: 499,
  [Code.UNKNOWN]: 500,
  [Code.INVALID_ARGUMENT]: 400,
  [Code.DEADLINE_EXCEEDED]: 504,
  [Code.NOT_FOUND]: 404,
  [Code.ALREADY_EXISTS]: 409,
  [Code.PERMISSION_DENIED]: 403,
  [Code.RESOURCE_EXHAUSTED]: 429,
  [Code.FAILED_PRECONDITION]: 412,
  [Code.ABORTED]: 409,
  [Code.OUT_OF_RANGE]: 400,
  [Code.UNIMPLEMENTED]: 501,
  [Code.INTERNAL]: 500,
  [Code.UNAVAILABLE]: 503,
  [Code.DATA_LOSS]: 500,
  [Code.UNAUTHENTICATED]: 401,
};

export function httpStatus(code: number): number {
  return HTTP_STATUS[code] ?? 500;
}

export class PrismError extends Error {
  override readonly name = "PrismError";
  constructor(
    readonly code: Code,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
  get httpStatus(): number {
    return httpStatus(this.code);
  }
}

/**
 * A refusal worth retrying after a pause (load shedding, rate limits, an open
 * circuit). HTTP answers it with `Retry-After`; gRPC and WebSocket callers
 * find the hint in the message.
 */
export class RetryableError extends PrismError {
  constructor(
    code: Code,
    reason: string,
    message: string,
    /** Whole seconds, at least 1. */
    readonly retryAfterSeconds: number,
  ) {
    super(code, reason, `${message}; retry after ${retryAfterSeconds}s`);
  }
}

/** Constructors for every error Prism returns; the reason names are stable API. */
export const errors = {
  invalidArgument: (field: string, why: string) =>
    new PrismError(Code.INVALID_ARGUMENT, "PRISM_ERR_INVALID_ARGUMENT", `${field}: ${why}`),
  malformed: (what: string) => new PrismError(Code.INVALID_ARGUMENT, "PRISM_ERR_MALFORMED", what),
  /** A backend instance (Admin.DeleteBackend / ApplyBackend, prism.yaml references) that is not declared. */
  unknownBackendInstance: (name: string) =>
    new PrismError(Code.NOT_FOUND, "PRISM_ERR_UNKNOWN_BACKEND", `backend instance "${name}" is not declared`),
  notRegistered: (identity: string) =>
    new PrismError(Code.FAILED_PRECONDITION, "PRISM_ERR_NOT_REGISTERED", `"${identity}" is not a registered member (Register it first)`),
  /** A change the current configuration does not allow (deleting an instance that namespaces use). */
  configConflict: (why: string) => new PrismError(Code.FAILED_PRECONDITION, "PRISM_ERR_CONFIG_CONFLICT", why),
  unknownNamespace: (ns: string) =>
    new PrismError(Code.NOT_FOUND, "PRISM_ERR_UNKNOWN_NAMESPACE", `namespace "${ns}" is not configured`),
  unknownMethod: (method: string) =>
    new PrismError(Code.UNIMPLEMENTED, "PRISM_ERR_UNKNOWN_METHOD", `unknown method ${method}`),
  primitiveNotServed: (ns: string, primitive: string) =>
    new PrismError(
      Code.FAILED_PRECONDITION,
      "PRISM_ERR_PRIMITIVE_NOT_SERVED",
      `namespace "${ns}" does not serve ${primitive} (add it to the namespace's primitives)`,
    ),
  interfaceMissing: (ns: string, backend: string, iface: string) =>
    new PrismError(
      Code.FAILED_PRECONDITION,
      "PRISM_ERR_INTERFACE_MISSING",
      `namespace "${ns}": backend "${backend}" does not implement ${iface}`,
    ),
  casConflict: (key: string, why: string) =>
    new PrismError(Code.FAILED_PRECONDITION, "PRISM_ERR_CAS_CONFLICT", `key "${key}": ${why}`),
  /** A retry whose idempotency_key the namespace already holds for a different request (src/primitives/idempotency.ts). */
  idempotencyKeyReused: (key: string) =>
    new PrismError(
      Code.FAILED_PRECONDITION,
      "PRISM_ERR_IDEMPOTENCY_KEY_REUSED",
      `idempotency_key "${key.length > 64 ? key.slice(0, 64) + "…" : key}": reused with a different request (a key names one request; use a new key for a new request)`,
    ),
  staleReceipt: (queue: string) =>
    new PrismError(
      Code.FAILED_PRECONDITION,
      "PRISM_ERR_STALE_RECEIPT",
      `queue "${queue}": receipt is stale (the message was redelivered, acked or moved to the dead-letter queue)`,
    ),
  tooLarge: (field: string, size: number, limit: number) =>
    new PrismError(
      Code.INVALID_ARGUMENT,
      "PRISM_ERR_TOO_LARGE",
      `${field}: ${size} bytes exceeds the namespace limit of ${limit} bytes`,
    ),
  frameTooLarge: (size: number, limit: number) =>
    new PrismError(
      Code.RESOURCE_EXHAUSTED,
      "PRISM_ERR_FRAME_TOO_LARGE",
      `message of ${size} bytes exceeds the server limit of ${limit} bytes`,
    ),
  unavailable: (what: string, cause?: unknown) =>
    new PrismError(
      Code.UNAVAILABLE,
      "PRISM_ERR_BACKEND_UNAVAILABLE",
      redactSecrets(cause ? `${what}: ${(cause as Error).message ?? String(cause)}` : what),
    ),
  shuttingDown: () => new PrismError(Code.UNAVAILABLE, "PRISM_ERR_SHUTTING_DOWN", "this Prism instance is shutting down; retry on another instance"),
  deadline: (what: string) => new PrismError(Code.DEADLINE_EXCEEDED, "PRISM_ERR_DEADLINE", `${what}: deadline exceeded`),
  cancelled: (what: string) => new PrismError(Code.CANCELLED, "PRISM_ERR_CANCELLED", `${what}: cancelled`),
  exhausted: (what: string) => new PrismError(Code.RESOURCE_EXHAUSTED, "PRISM_ERR_RESOURCE_EXHAUSTED", what),
  /** A principal over its own limit (server.per_principal); the message names the limit, never other callers. */
  principalLimit: (what: string) => new PrismError(Code.RESOURCE_EXHAUSTED, "PRISM_ERR_PRINCIPAL_LIMIT", what),
  overloaded: (priority: string, retryAfterSeconds: number) =>
    new RetryableError(Code.RESOURCE_EXHAUSTED, "PRISM_ERR_OVERLOADED", `server overloaded: ${priority} priority calls are being shed`, retryAfterSeconds),
  rateLimited: (ns: string, rps: number, retryAfterSeconds: number) =>
    new RetryableError(Code.RESOURCE_EXHAUSTED, "PRISM_ERR_RATE_LIMITED", `namespace "${ns}" is over its rate limit of ${rps} requests/s`, retryAfterSeconds),
  circuitOpen: (backend: string, failures: number, retryAfterSeconds: number) =>
    new RetryableError(
      Code.UNAVAILABLE,
      "PRISM_ERR_CIRCUIT_OPEN",
      `backend ${backend} is failing (circuit open after ${failures} consecutive failures); calls fail fast until a probe succeeds`,
      retryAfterSeconds,
    ),
  config: (message: string) => new PrismError(Code.INVALID_ARGUMENT, "PRISM_ERR_CONFIG", message),
  internal: (message: string) => new PrismError(Code.INTERNAL, "PRISM_ERR_INTERNAL", redactSecrets(message)),
};

/** Any thrown value → PrismError. Unknown errors become INTERNAL without leaking stack traces. */
export function toPrismError(err: unknown): PrismError {
  if (err instanceof PrismError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new PrismError(Code.INTERNAL, "PRISM_ERR_INTERNAL", `internal error: ${redactSecrets(message)}`);
}
