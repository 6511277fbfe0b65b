/**
 * The interfaces between the client layer and the transports (ws, grpc, http).
 * - A {@link Transport} is one connection: it runs one attempt of a call and
 *   reports, once, that it lost its connection.
 * - A {@link Channel} (healing.ts) is what the client layer calls: it owns the
 *   current Transport, reconnects, retries and resumes subscriptions.
 */
import type { MethodInfo } from "./methods.js";
import type { PrismError } from "./errors.js";

/** Call priority, used by the server's load shedding. */
export type Priority = "critical" | "high" | "normal" | "low";

/** Connection states, in the order they usually happen. */
export type ConnectionState = "connecting" | "ready" | "reconnecting" | "closed";

/** Automatic reconnection (see {@link ConnectOptions.reconnect}). */
export interface ReconnectOptions {
  /** Delay before the first reconnect attempt, in ms (default 100). */
  initialDelayMs?: number;
  /** Largest delay between attempts, in ms (default 5000); each failed attempt doubles the delay up to it. */
  maxDelayMs?: number;
  /** Random spread of each delay, 0..1 (default 0.2: ±20 %), so clients of a restarted Prism do not reconnect in lockstep. */
  jitter?: number;
  /**
   * How long a call without a deadline waits for a lost connection to come back
   * (to be sent, or to be retried) before it fails with UNAVAILABLE, in ms (default 5000).
   * A call with a deadline waits until its deadline.
   */
  waitMs?: number;
}

/** Options of {@link connect}. */
export interface ConnectOptions {
  /**
   * Default per-call deadline in milliseconds; 0 (the default) = none. A call's
   * own `timeoutMs` overrides it. The deadline covers the whole call, retries included.
   * Long polls (queue dequeue `wait`, stream readGroup `block`) get their wait added.
   */
  timeoutMs?: number;
  /** Priority sent with every call (the server sheds `low` first). */
  priority?: Priority;
  /** Reconnect automatically after the connection drops (default: on, with the defaults of {@link ReconnectOptions}); `false`: a dropped connection closes the client. */
  reconnect?: boolean | ReconnectOptions;
  /**
   * Give every set/delete/publish/enqueue/append without its own `idempotencyKey`
   * a random one, so that it is retried safely when the connection drops while it
   * is in flight (the server answers a retry with the first call's result).
   */
  autoIdempotency?: boolean;
  /**
   * Send the queue `enqueue` / `ack` calls one event-loop turn makes for the same queue as one
   * Queue/EnqueueBatch / Queue/AckBatch request (default: on; each caller still gets its own
   * answer). A coalesced request holds at most 1000 entries and 256 KiB of payload; a payload over
   * 16 KiB, and a call with its own timeout, signal or idempotency key, goes alone. `false`: one
   * request per call (e.g. for a server whose `server.max_message_bytes` is below 256 KiB).
   */
  coalesce?: boolean;
  /** Bearer token, or a function returning one (called per connection on ws://, per call on grpc:// and http://). Sent as `authorization: Bearer <token>`. */
  token?: string | (() => string | Promise<string>);
  /** API key, sent as `x-api-key`. */
  apiKey?: string;
  /** Called on every connection state change, the first `connecting` and `ready` included (`prism.on("state")` only sees changes after connect resolved). */
  onState?: (state: ConnectionState) => void;
  /** Timeout of one connection attempt, in ms (default: `timeoutMs` when set, else 10000). */
  connectTimeoutMs?: number;
}

/** Options every call accepts. */
export interface CallOptions {
  /** This call's deadline in ms (overrides the connection's `timeoutMs`; 0 = none), retries included. */
  timeoutMs?: number;
  /** Aborting it cancels the call: it rejects with CANCELLED and the server stops working on it. */
  signal?: AbortSignal;
}

/** Options of the writes that can carry an idempotency key (set, delete, publish, enqueue, append). */
export interface WriteOptions extends CallOptions {
  /**
   * Makes retries of this write safe: the server applies a key once per namespace
   * (within its idempotency window) and answers a retry with the first result.
   * A keyed write in flight when the connection drops is retried after reconnect.
   */
  idempotencyKey?: string;
}

/** @internal What the client layer passes per call. */
export interface UnaryOptions extends CallOptions {
  /** Added to the deadline (long polls). */
  extraMs?: number;
}

/** @internal One attempt of a call on one connection. */
export interface Attempt {
  /** Date.now() deadline; 0: none. */
  deadline: number;
  signal?: AbortSignal;
}

/** Receives the events of one server stream; called by the transport, in order. */
export interface StreamSink {
  /** The subscription is live on the server. */
  onReady(): void;
  /** One decoded streamed message (a protobufjs message instance). */
  onMessage(msg: unknown): void;
  /** The stream failed; no further events. */
  onError(err: PrismError): void;
  /** The server ended the stream; no further events. */
  onEnd(): void;
  /** The connection dropped; the stream will be resumed (Channel only). */
  onDisconnected?(err: PrismError): void;
  /** The stream is live again after a reconnect (Channel only). */
  onResumed?(): void;
}

/** A running server stream; `cancel` stops it and produces no further sink events. */
export interface StreamHandle {
  cancel(): void;
}

/**
 * @internal One connection to Prism.
 * - `unary` runs one attempt: resolves to the decoded response message (a
 *   protobufjs instance; uint64 fields may be Long, bytes may be Buffer: the
 *   client normalises) and rejects with PrismError only: DEADLINE_EXCEEDED at
 *   the attempt's deadline, CANCELLED when its signal aborts (the server-side
 *   call is cancelled too).
 * - When the connection drops, pending calls and streams fail with an error
 *   for which `isConnectionLost` is true, and `lost` (given to the factory) is called once.
 */
export interface Transport {
  unary(method: MethodInfo, request: object, attempt: Attempt): Promise<any>;
  serverStream(method: MethodInfo, request: object, sink: StreamSink): StreamHandle;
  close(): Promise<void>;
  /** Nothing in flight (a lost transport can then be forgotten). */
  idle(): boolean;
}

/** @internal What the client layer calls (healing.ts). */
export interface Channel {
  unary(method: MethodInfo, request: object, opts?: UnaryOptions): Promise<any>;
  serverStream(method: MethodInfo, request: object, sink: StreamSink): StreamHandle;
  close(): Promise<void>;
  readonly autoIdempotency: boolean;
  /** ConnectOptions.coalesce */
  readonly coalesce: boolean;
}

/** @internal Auth headers for a connection or a call: static, or computed per use (token function). */
export interface Auth {
  /** Headers known up front (`x-api-key`, a string token); empty when none. */
  readonly fixed: Record<string, string>;
  /** Set when a token function must be called; resolves to all headers. */
  readonly dynamic?: () => Promise<Record<string, string>>;
}

/** @internal What every transport's `open` receives. */
export interface OpenOptions {
  priority?: Priority;
  auth: Auth;
  /** Timeout of the connection attempt, ms. */
  connectTimeoutMs: number;
  /** Called once when an open connection drops (not after close()). */
  lost(err: PrismError): void;
}

/** Wire value of each priority on the binary WebSocket (u8). */
export const PRIORITY_BYTE: Record<Priority, number> = { critical: 0, high: 1, normal: 2, low: 3 };

/** gRPC metadata key carrying the priority (HTTP: `x-prism-priority`). */
export const PRIORITY_HEADER = "prism-priority";
