/**
 * The one interface every transport (ws, grpc, http) implements. The client
 * layer above is transport-neutral: it builds request objects, calls `unary`
 * or `serverStream`, and reads fields of the decoded response.
 */
import type { MethodInfo } from "./methods.js";
import type { PrismError } from "./errors.js";

/** Call priority, used by the server's load shedding. */
export type Priority = "critical" | "high" | "normal" | "low";

/** Options of {@link connect}. */
export interface ConnectOptions {
  /**
   * Default per-call deadline in milliseconds; 0 (the default) = none.
   * Long polls (queue dequeue `wait`, stream readGroup `block`) get their wait added.
   */
  timeoutMs?: number;
  /** Priority sent with every call (the server sheds `low` first). */
  priority?: Priority;
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
}

/** A running server stream; `cancel` stops it and produces no further sink events. */
export interface StreamHandle {
  cancel(): void;
}

/**
 * A connection to Prism.
 * - `unary` resolves to the decoded response message (a protobufjs instance;
 *   uint64 fields may be Long, bytes may be Buffer: the client normalises) and
 *   rejects with PrismError only. `extraMs` lengthens the deadline (long polls).
 * - Every pending call rejects with UNAVAILABLE when the connection closes.
 */
export interface Transport {
  unary(method: MethodInfo, request: object, extraMs?: number): Promise<any>;
  serverStream(method: MethodInfo, request: object, sink: StreamSink): StreamHandle;
  close(): Promise<void>;
}

/** Wire value of each priority on the binary WebSocket (u8). */
export const PRIORITY_BYTE: Record<Priority, number> = { critical: 0, high: 1, normal: 2, low: 3 };

/** gRPC metadata key carrying the priority (HTTP: `x-prism-priority`). */
export const PRIORITY_HEADER = "prism-priority";
