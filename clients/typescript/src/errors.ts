/**
 * Errors of the SDK. Every failure of a call (server error, transport failure,
 * deadline) rejects with a {@link PrismError} carrying the gRPC status code.
 */

/** The gRPC status codes, as Prism uses them on every transport. */
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
/** One of the {@link Code} values. */
export type Code = (typeof Code)[keyof typeof Code];

const NAMES: Record<number, string> = Object.fromEntries(Object.entries(Code).map(([k, v]) => [v, k]));

/** The name of a gRPC status code ("NOT_FOUND"), or "UNKNOWN" for a number outside the table. */
export function codeName(code: number): string {
  return NAMES[code] ?? "UNKNOWN";
}

/**
 * A failed call.
 * - `code`: the gRPC status code (see {@link Code}).
 * - `codeName`: its name, e.g. `"NOT_FOUND"`.
 * - `reason`: the server's stable `PRISM_ERR_*` reason when it sent one, else `""`.
 * - `message`: the server's message (names the field or namespace at fault).
 */
export class PrismError extends Error {
  override readonly name = "PrismError";
  readonly code: number;
  readonly reason: string;

  constructor(code: number, message: string, reason = "") {
    super(message);
    this.code = code;
    this.reason = reason;
  }

  get codeName(): string {
    return codeName(this.code);
  }
}

/** A transport failure (connection refused, closed, reset). */
export function unavailable(what: string, cause?: unknown): PrismError {
  const detail = cause === undefined ? "" : `: ${describe(cause)}`;
  return new PrismError(Code.UNAVAILABLE, `${what}${detail}`, "");
}

/** Errors that mean "the connection dropped under this call" (never errors the server sent). */
const LOST = new WeakSet<PrismError>();

/** @internal An UNAVAILABLE for calls and streams cut off by a dropped connection. */
export function connectionLost(what: string, cause?: unknown): PrismError {
  const e = unavailable(what, cause);
  LOST.add(e);
  return e;
}

/** @internal True for errors made by {@link connectionLost}: the call may or may not have reached the server. */
export function isConnectionLost(e: unknown): boolean {
  return e instanceof PrismError && LOST.has(e);
}

/** @internal The server is going away (graceful shutdown): its subscriptions end with this, and are resumed elsewhere. */
export function isServerGoingAway(e: unknown): boolean {
  return e instanceof PrismError && e.code === Code.UNAVAILABLE && (e.reason === "PRISM_ERR_SHUTTING_DOWN" || /shutting down/.test(e.message));
}

/** @internal The call's AbortSignal fired. */
export function cancelled(signal?: AbortSignal): PrismError {
  const r: unknown = signal?.reason;
  const why = r instanceof Error && r.name !== "AbortError" ? `: ${r.message}` : "";
  return new PrismError(Code.CANCELLED, `cancelled by the caller${why}`, "PRISM_ERR_CANCELLED");
}

/** @internal The client-side deadline passed. */
export function deadlineExceeded(): PrismError {
  return new PrismError(Code.DEADLINE_EXCEEDED, "deadline exceeded (client)", "PRISM_ERR_DEADLINE");
}

function describe(cause: unknown): string {
  if (cause instanceof Error) {
    // fetch wraps the socket error ("fetch failed", cause: ECONNREFUSED ...)
    const inner = (cause as Error & { cause?: unknown }).cause;
    return inner instanceof Error ? `${cause.message} (${inner.message})` : cause.message;
  }
  return String(cause);
}

/** HTTP status → gRPC code, for error bodies that could not be parsed. */
export function codeFromHttpStatus(status: number): number {
  switch (status) {
    case 400: return Code.INVALID_ARGUMENT;
    case 401: return Code.UNAUTHENTICATED;
    case 403: return Code.PERMISSION_DENIED;
    case 404: return Code.NOT_FOUND;
    case 409: return Code.ABORTED;
    case 412: return Code.FAILED_PRECONDITION;
    case 413: return Code.RESOURCE_EXHAUSTED;
    case 429: return Code.RESOURCE_EXHAUSTED;
    case 499: return Code.CANCELLED;
    case 501: return Code.UNIMPLEMENTED;
    case 502: case 503: return Code.UNAVAILABLE;
    case 504: return Code.DEADLINE_EXCEEDED;
    default: return Code.UNKNOWN;
  }
}
