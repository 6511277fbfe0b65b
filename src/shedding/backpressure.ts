/**
 * What happens to a subscriber that does not read as fast as messages arrive.
 * Every ingress bounds what it buffers per connection / subscription:
 * WebSocket 16 MiB unsent, SSE 1 MiB unsent, gRPC 10,000 messages
 * (server.backpressure.max_buffered_bytes overrides the byte bounds). Past the
 * bound the policy decides:
 *
 * - "disconnect" (default): the subscription ends with RESOURCE_EXHAUSTED
 *   (WebSocket: the connection closes with 1008). The client knows it lost
 *   messages and resubscribes.
 * - "drop": pub/sub messages for that subscriber are dropped (and counted)
 *   until it catches up; the subscription and connection stay up.
 *
 * Only fire-and-forget pub/sub messages are ever dropped. Responses to calls
 * (queue messages, acknowledged writes…) are never dropped: a WebSocket
 * client too slow to take its responses is disconnected under either policy.
 */
import { sheddingHooks } from "./hooks.js";

export type BackpressurePolicy = "disconnect" | "drop";

export interface BackpressureOptions {
  policy: BackpressurePolicy;
  /** Overrides the byte bounds of WebSocket connections and SSE subscriptions. */
  maxBufferedBytes?: number;
}

export class Backpressure {
  readonly drop: boolean;
  /** Messages dropped, per ingress. */
  readonly dropped = { ws: 0, sse: 0, grpc: 0 };

  constructor(readonly options: BackpressureOptions = { policy: "disconnect" }) {
    this.drop = options.policy === "drop";
  }

  /** The byte bound of an ingress (its own default unless configured). */
  bytes(ingressDefault: number): number {
    return this.options.maxBufferedBytes ?? ingressDefault;
  }

  /** Counts one dropped message. */
  dropped1(ingress: "ws" | "sse" | "grpc"): void {
    this.dropped[ingress]++;
    sheddingHooks.dropped?.(ingress, 1);
  }
}

/** The default: disconnect slow subscribers. */
export const DISCONNECT = new Backpressure();
