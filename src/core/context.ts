/**
 * One request context for every ingress. It carries what the middleware chain
 * needs (priority, deadline, tracing, credentials and principal) and lets a transport cancel
 * a call whose client went away. The AbortController is created only when a
 * handler asks for a signal (long polls), so unary calls pay nothing for it.
 */
import type { MethodDef } from "./methods.js";
import type { Credentials, Principal } from "../auth/types.js";

export type Ingress = "grpc" | "http" | "ws" | "mesh" | "internal";
export type Priority = "critical" | "high" | "normal" | "low";

/** What the gateway counts per client connection (one object per connection, set on each call's context by the ingress). */
export interface ConnectionState {
  /** Long polls of this connection waiting now (src/core/gateway.ts). */
  longPolls: number;
}

/** What the gateway counts per principal on this worker (server.per_principal, src/core/gateway.ts). */
export interface PrincipalUsage {
  /** Calls in progress, long polls excepted. */
  inFlight: number;
  /** Long polls waiting. */
  longPolls: number;
}

export class RequestContext {
  /** Absolute deadline in ms since the epoch (Date.now() clock); 0: none. */
  deadline = 0;
  priority: Priority | undefined = undefined;
  traceparent: string | undefined = undefined;
  /** Request / response body sizes, set by the ingress that knows them (metrics, access log). */
  bytesIn = 0;
  bytesOut = 0;
  /**
   * The gateway observer's per-call fields (src/observability), plain numbers so
   * that observing a call allocates nothing: performance.now() at the call's
   * start (0: not observed) and at the backend call's start (-1: none).
   */
  obsStart = 0;
  obsBackendStart = -1;
  /** The namespace runtime the observed backend call ran on (src/router NamespaceRuntime). */
  obsNs: object | undefined = undefined;
  /** The observer's other per-call state (a trace span); undefined otherwise. */
  obs: object | undefined = undefined;
  /**
   * The gateway's list of calls in progress (src/core/gateway.ts), linked
   * through the contexts themselves: a Set of contexts cost more than the
   * rest of the gateway (its table is rebuilt as it empties and refills).
   */
  liveNext: RequestContext | null = null;
  livePrev: RequestContext | null = null;
  /** The client connection this call came on (long-poll caps per connection); undefined: not tracked. */
  conn: ConnectionState | undefined = undefined;
  /** Counted as a long poll (its own budget, not the in-flight load). */
  longPoll = false;
  /** What the ingress collected to identify the caller (src/auth/types.ts); undefined: nothing presented. */
  credentials: Credentials | undefined = undefined;
  /** Set by authentication (src/auth) before the call reaches the router; undefined: auth not configured. */
  principal: Principal | undefined = undefined;
  /** Counted against its principal's limits (server.per_principal) until it settles; undefined: not counted. */
  principalUsage: PrincipalUsage | undefined = undefined;
  private controller: AbortController | undefined = undefined;
  private cancelledReason: Error | undefined = undefined;

  constructor(
    readonly method: MethodDef,
    readonly ingress: Ingress,
    readonly peer: string,
  ) {}

  /** A signal that aborts when the caller goes away or the deadline passes. */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.cancelledReason) this.controller.abort(this.cancelledReason);
    }
    return this.controller.signal;
  }

  get cancelled(): boolean {
    return this.cancelledReason !== undefined;
  }

  /** Transports call this when the client disconnects or cancels. */
  cancel(reason: Error = new Error("cancelled by client")): void {
    if (this.cancelledReason) return;
    this.cancelledReason = reason;
    this.controller?.abort(reason);
  }
}
