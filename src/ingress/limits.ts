/**
 * Connection limits shared by every ingress (README "Reliability"): one
 * careless or hostile client must not take the process down for everyone.
 *
 * - Timeouts: a connection that says nothing (or half a request head) is
 *   closed after header_timeout_ms; an idle one (no call, no subscription) after
 *   idle_timeout_ms; a request body / gRPC message / WebSocket frame that has
 *   started must complete within request_timeout_ms.
 * - Memory: unfinished request bytes are bounded per connection
 *   (max_connection_buffered_bytes, default 2 × max_message_bytes) and per
 *   worker across all connections (max_buffered_request_bytes, RequestBudget);
 *   HTTP/2 sessions get max_session_memory_mb and max_streams_per_connection.
 * - Work: unary calls in progress per connection (max_in_flight_per_connection,
 *   below the shedding point) and long polls, which wait rather than work, on
 *   their own budget (src/core/gateway.ts: max_long_polls, per connection too).
 * - Per principal (server.per_principal, principalLimitsOf): calls in progress
 *   and long polls waiting per authenticated identity, counted by the gateway
 *   after authentication, across all of that identity's connections; and
 *   unfinished request bytes (max_buffered_bytes, PrincipalBytes), counted by
 *   the ingresses before the body under the principal the headers' credentials
 *   name (AuthGate.bufferKey: verified ones only, the rest share "unverified").
 * - Connections: open ones per worker across every ingress (max_connections, default the open-files
 *   limit less a reserve: ConnectionCap); at the cap the quietest connection makes room, or the new one
 *   is refused.
 * - Parse cost: a JSON body's keys and nesting are counted by a byte scan
 *   before JSON.parse (scanJson), so half a million keys cost ~10 ms, not ~1 s.
 */
import type { ServerConfig } from "../config/schema.js";
import { CONNECTION_DEFAULTS } from "../config/defaults.js";
import { errors, type PrismError } from "../core/errors.js";
import type { CallGate, PrincipalLimit, PrincipalLimits } from "../core/gateway.js";
import type { Credentials } from "../auth/types.js";
import { ConnectionCap, defaultMaxConnections } from "./connection-cap.js";

export interface ConnectionLimits {
  /** Close a connection with nothing in progress after this long without traffic (0: never). */
  idleTimeoutMs: number;
  /** Close a connection that has not completed a request head (HTTP) / its first request (HTTP/2) / its upgrade within this (0: never). */
  headerTimeoutMs: number;
  /** An unfinished request body, gRPC message or WebSocket frame must complete within this (0: no limit). */
  requestTimeoutMs: number;
  maxStreamsPerConnection: number;
  maxSessionMemoryMb: number;
  /** Unfinished request bytes per connection. */
  maxConnectionBufferedBytes: number;
  /** Unary calls in progress per connection. */
  maxInFlightPerConnection: number;
  maxJsonKeys: number;
  /** The worker-wide budget of unfinished request bytes. */
  budget: RequestBudget;
  /** Unfinished request bytes per principal (server.per_principal.max_buffered_bytes); undefined: not counted. */
  principalBytes?: PrincipalBytes;
  /** Open connections of this worker across its ingresses (server.max_connections); undefined: not counted. */
  connections?: ConnectionCap;
}

/**
 * Unfinished request bytes per principal on this worker (server.per_principal.max_buffered_bytes), next to
 * the worker-wide RequestBudget: one identity stalling many large bodies over many connections meets its
 * own limit before it fills the budget everyone shares. The ingresses charge a request under keyOf(its
 * headers' credentials) when its first bytes arrive, and release the same key when it completes or is dropped.
 */
export class PrincipalBytes {
  /** Principal key → bytes held (absent: none). */
  private readonly used = new Map<string, number>();
  /** Reservations refused (tests, diagnostics). */
  refused = 0;
  /** Called for each refusal (prism_principal_limited_total{limit="max_buffered_bytes"}). */
  onRefusal: (() => void) | undefined = undefined;
  constructor(
    /** Every principal's limit (0: none). */
    readonly max: number,
    /** `<kind>:<id>` / `anonymous` → its own limit. */
    readonly overrides: ReadonlyMap<string, number>,
    /** Credentials → principal key, synchronously (AuthGate.bufferKey). */
    readonly keyOf: (creds: Credentials | undefined) => string,
  ) {}
  limitOf(key: string): number {
    return this.overrides.get(key) ?? this.max;
  }
  /** Bytes held for this principal now (tests, diagnostics). */
  usedBy(key: string): number {
    return this.used.get(key) ?? 0;
  }
  /** Takes n bytes for key; false (nothing taken) when that would pass its limit. */
  reserve(key: string, n: number): boolean {
    const u = this.used.get(key) ?? 0;
    const max = this.limitOf(key);
    if (max > 0 && u + n > max) {
      this.refused++;
      return false;
    }
    this.used.set(key, u + n);
    return true;
  }
  release(key: string, n: number): void {
    if (n === 0) return;
    const u = (this.used.get(key) ?? 0) - n;
    if (u <= 0) this.used.delete(key);
    else this.used.set(key, u);
  }
  /** The refusal: RESOURCE_EXHAUSTED naming the limit (and the caller's own key, never another's). */
  refusal(key: string): PrismError {
    this.onRefusal?.();
    return errors.principalLimit(`${key} has more than ${this.limitOf(key)} bytes of unfinished requests buffered on this server, its limit (server.per_principal.max_buffered_bytes); retry later`);
  }
}

/**
 * What holds unfinished request bytes in a RequestBudget: a connection (or an HTTP/1.1 request body).
 * `held` and `lastData` (Date.now() of its last bytes) are kept by its ingress; `evict` drops what it
 * is receiving and gives its bytes back through release() before it returns.
 */
export interface BudgetHolder {
  held: number;
  lastData: number;
  evict(): void;
}

/** A holder that received nothing for this long is stalled: the budget may drop it for someone else. */
export const STALLED_MS = 100;

/**
 * Unfinished request bytes held by all connections of this worker, against one ceiling.
 *
 * When the ceiling is reached, the stalled holder (nothing received for STALLED_MS) of the most unfinished
 * bytes gives way to a holder that would hold less: it is dropped with RESOURCE_EXHAUSTED, as a refusal
 * would have dropped the newcomer. So a few connections that stall large bodies cannot lock every smaller
 * request out of the budget until their request_timeout_ms. Holders still receiving are never dropped for
 * another: a burst of large bodies arriving together is refused as before, instead of each one pushing the
 * previous one out (which would let every one of them be read in full, and their memory turn to garbage).
 */
export class RequestBudget {
  used = 0;
  /** Reservations refused (tests, diagnostics). */
  refused = 0;
  /** Holders dropped to make room for a smaller one (tests, diagnostics). */
  evicted = 0;
  /** Holders that reserved bytes, for eviction; forgotten when they close (or found empty when looked at). */
  private readonly holders = new Set<BudgetHolder>();
  constructor(readonly max: number) {}
  /** Takes n bytes (for holder, whose `held` does not count them yet); false (nothing taken) when they do not fit. */
  reserve(n: number, holder?: BudgetHolder): boolean {
    while (this.used + n > this.max) {
      if (holder === undefined || !this.evictLargerThan(holder.held + n, holder)) {
        this.refused++;
        return false;
      }
    }
    this.used += n;
    if (holder !== undefined) this.holders.add(holder);
    return true;
  }
  release(n: number): void {
    this.used -= n;
    if (this.used < 0) this.used = 0;
  }
  /** A holder that closed (its bytes were released). */
  forget(holder: BudgetHolder): void {
    this.holders.delete(holder);
  }
  /** Drops the stalled holder of the most bytes if it holds more than `than`; false when none does. Only runs when full. */
  private evictLargerThan(than: number, except: BudgetHolder): boolean {
    const stalledBefore = Date.now() - STALLED_MS;
    let big: BudgetHolder | undefined;
    for (const h of this.holders) {
      if (h.held <= 0) this.holders.delete(h);
      else if (h !== except && h.held > than && h.lastData <= stalledBefore && (big === undefined || h.held > big.held)) big = h;
    }
    if (big === undefined) return false;
    this.holders.delete(big);
    this.evicted++;
    const before = this.used;
    big.evict();
    // An evict that released nothing (it was already closing): refuse rather than evict the next one.
    return this.used < before;
  }
}

/** server.* → the ingresses' limits (hand-built configs may lack the fields: the defaults apply). */
export function connectionLimitsOf(server: Partial<ServerConfig>, maxMessageBytes: number): ConnectionLimits {
  const d = CONNECTION_DEFAULTS;
  return {
    idleTimeoutMs: server.idle_timeout_ms ?? d.idle_timeout_ms,
    headerTimeoutMs: server.header_timeout_ms ?? d.header_timeout_ms,
    requestTimeoutMs: server.request_timeout_ms ?? d.request_timeout_ms,
    maxStreamsPerConnection: server.max_streams_per_connection ?? d.max_streams_per_connection,
    maxSessionMemoryMb: server.max_session_memory_mb ?? d.max_session_memory_mb,
    maxConnectionBufferedBytes: server.max_connection_buffered_bytes ?? 2 * maxMessageBytes,
    maxInFlightPerConnection: server.max_in_flight_per_connection ?? d.max_in_flight_per_connection,
    maxJsonKeys: server.max_json_keys ?? d.max_json_keys,
    budget: new RequestBudget(server.max_buffered_request_bytes ?? d.max_buffered_request_bytes),
    connections: new ConnectionCap(server.max_connections ?? defaultMaxConnections()),
  };
}

/**
 * server.per_principal → the gateway's per-principal limits (src/core/gateway.ts); undefined when absent
 * or when every limit is 0 (nothing to count).
 */
export function principalLimitsOf(cfg: ServerConfig["per_principal"] | undefined): PrincipalLimits | undefined {
  if (cfg === undefined) return undefined;
  const maxInFlight = cfg.max_in_flight ?? 0;
  const maxLongPolls = cfg.max_long_polls ?? 0;
  const overrides = new Map<string, PrincipalLimit>();
  for (const [key, o] of Object.entries(cfg.principals ?? {})) {
    overrides.set(key, { maxInFlight: o.max_in_flight ?? maxInFlight, maxLongPolls: o.max_long_polls ?? maxLongPolls });
  }
  const any = maxInFlight > 0 || maxLongPolls > 0 || [...overrides.values()].some((o) => o.maxInFlight > 0 || o.maxLongPolls > 0);
  return any ? { maxInFlight, maxLongPolls, overrides } : undefined;
}

/**
 * server.per_principal.max_buffered_bytes → the ingresses' per-principal byte accounting; undefined when
 * absent or all 0, or when the gate cannot name principals before the body (no auth).
 */
export function principalBytesOf(cfg: ServerConfig["per_principal"] | undefined, gate: CallGate | undefined): PrincipalBytes | undefined {
  if (cfg === undefined || gate?.bufferKey === undefined) return undefined;
  const max = cfg.max_buffered_bytes ?? 0;
  const overrides = new Map<string, number>();
  for (const [key, o] of Object.entries(cfg.principals ?? {})) overrides.set(key, o.max_buffered_bytes ?? max);
  if (max <= 0 && ![...overrides.values()].some((n) => n > 0)) return undefined;
  return new PrincipalBytes(max, overrides, gate.bufferKey.bind(gate));
}

/**
 * server.per_principal when prism.yaml has none: with identities (auth: or mTLS), one principal may hold
 * at most half of the worker's in-flight capacity, of its long-poll budget and of its budget of unfinished
 * request bytes (max_buffered_request_bytes), so a flooding identity meets its own limit while every other
 * caller still has room. Without identities every caller is unnamed: nothing to count.
 */
export function defaultPerPrincipal(identities: boolean, sheddingMaxInFlight: number, maxLongPolls: number, maxBufferedRequestBytes: number): ServerConfig["per_principal"] | undefined {
  if (!identities) return undefined;
  return { max_in_flight: Math.floor(sheddingMaxInFlight / 2), max_long_polls: Math.floor(maxLongPolls / 2), max_buffered_bytes: Math.floor(maxBufferedRequestBytes / 2), principals: {} };
}

/** Defaults for an ingress started without server config (tests that call startGrpc / startHttpTransport directly). */
export function defaultConnectionLimits(maxMessageBytes: number): ConnectionLimits {
  return connectionLimitsOf({}, maxMessageBytes);
}

export const bufferExhausted = (what: string, limit: number) =>
  errors.exhausted(`${what}: more than ${limit} bytes of unfinished requests are buffered; retry later`);

/** Deepest JSON nesting accepted. */
export const MAX_JSON_DEPTH = 64;

/**
 * Counts a JSON text's object keys, containers and nesting in one pass over
 * its bytes (strings skipped, escapes honoured), stopping as soon as a limit is
 * passed. Returns the problem, or undefined. It does not validate the JSON
 * (JSON.parse does that next); it bounds what JSON.parse and the converters
 * will have to build. Array elements are bounded by 10 × maxKeys.
 */
export function scanJson(buf: Uint8Array, maxKeys: number, maxDepth = MAX_JSON_DEPTH): { status: 413 | 400; message: string } | undefined {
  let keys = 0;
  let containers = 0;
  let commas = 0;
  let depth = 0;
  const maxCommas = maxKeys * 10;
  const n = buf.length;
  for (let i = 0; i < n; i++) {
    const c = buf[i]!;
    if (c === 0x22) {
      // a string: skip to its closing quote
      for (i++; i < n; i++) {
        const d = buf[i]!;
        if (d === 0x5c) i++;
        else if (d === 0x22) break;
      }
    } else if (c === 0x3a) {
      if (++keys > maxKeys) return { status: 413, message: `JSON body has more than ${maxKeys} object keys (server.max_json_keys)` };
    } else if (c === 0x2c) {
      if (++commas > maxCommas) return { status: 413, message: `JSON body has more than ${maxCommas} values (10 × server.max_json_keys)` };
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > maxDepth) return { status: 400, message: `JSON body nests deeper than ${maxDepth} levels` };
      if (++containers > maxKeys) return { status: 413, message: `JSON body has more than ${maxKeys} objects and arrays (server.max_json_keys)` };
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return undefined;
}
