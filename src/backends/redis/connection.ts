/**
 * One Redis connection with fail-fast semantics. Commands never wait in an
 * offline queue: while Redis is down they reject at once (→ UNAVAILABLE) and
 * ioredis reconnects in the background (retryStrategy). The only wait is the
 * very first connect after start, so a namespace is usable as soon as Redis
 * answers instead of failing the first calls of a fresh process.
 *
 * Write batching (`batchWrites`): instead of ioredis auto-pipelining (a
 * Pipeline object, a promise and a closure per command, and one pipeline in
 * flight at a time), client() corks the socket and a setImmediate uncorks it,
 * so every command issued in one event-loop turn leaves in one writev and
 * replies stream back without waiting for a whole batch.
 */
import { Redis, type RedisOptions } from "ioredis";
import { errors, PrismError } from "../../core/errors.js";
import type { DriverContext } from "../driver.js";

const TRANSIENT_REPLY = /^(OOM|LOADING|BUSY|MASTERDOWN|READONLY|TRYAGAIN|CLUSTERDOWN|NOREPLICAS)\b/;

/** Any error from ioredis → PrismError: connection trouble is UNAVAILABLE, script bugs INTERNAL. */
export function toDriverError(e: unknown): PrismError {
  if (e instanceof PrismError) return e;
  const err = e as Error;
  if (err?.name === "ReplyError" && !TRANSIENT_REPLY.test(err.message)) return errors.internal(`redis: ${err.message}`);
  return errors.unavailable("redis", err);
}

/** Rejection handler for driver promises (module level: no closure per call). */
export function fail(e: unknown): never {
  throw toDriverError(e);
}

/** Link options beyond ioredis's own. */
export interface LinkOptions {
  /** Coalesce the commands of one event-loop turn into one socket write (see above). */
  batchWrites?: boolean;
}

export class Link {
  readonly redis: Redis;
  private first: Promise<void> | null;
  private lastError = "";
  private readonly batchWrites: boolean;
  /** The socket corked for the current loop turn, if any. */
  private corked: Redis["stream"] | null = null;
  private readonly uncork = (): void => {
    const s = this.corked;
    this.corked = null;
    s?.uncork();
  };

  constructor(
    readonly name: string,
    url: string,
    options: RedisOptions,
    private readonly ctx: DriverContext,
    onReady?: () => void,
    linkOptions: LinkOptions = {},
  ) {
    this.batchWrites = linkOptions.batchWrites === true;
    this.redis = new Redis(url, {
      // RESP2: the reply shapes every Lua script and parser here expects.
      protocol: 2,
      enableOfflineQueue: false,
      // Fail in-flight commands on disconnect instead of resending them after reconnect.
      maxRetriesPerRequest: 0,
      // At most 1 s between reconnect attempts: a Redis that is back is used within ~1 s (the breaker's health check follows it).
      retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 1000),
      connectTimeout: 2000,
      ...options,
    });
    this.first = new Promise((resolve) => {
      const done = () => {
        this.first = null;
        this.redis.off("ready", done).off("reconnecting", done).off("end", done);
        resolve();
      };
      this.redis.on("ready", done).on("reconnecting", done).on("end", done);
    });
    this.redis.on("error", (e: Error) => {
      // Logged once per outage, not on every retry.
      if (e.message !== this.lastError) ctx.log("warn", `${name}: ${e.message}`);
      this.lastError = e.message;
    });
    this.redis.on("ready", () => {
      if (this.lastError) ctx.log("info", `${name}: connected again`);
      this.lastError = "";
      onReady?.();
    });
  }

  get ready(): boolean {
    return this.redis.status === "ready";
  }

  /**
   * The client when connected, else UNAVAILABLE (waiting only for the very
   * first connect). With batchWrites, commands sent on it before the next
   * setImmediate go out in one write.
   */
  client(): Redis | Promise<Redis> {
    const r = this.redis;
    if (r.status !== "ready") return this.waitFirst();
    if (this.batchWrites && this.corked === null) {
      this.corked = r.stream;
      this.corked.cork();
      setImmediate(this.uncork);
    }
    return r;
  }

  /**
   * The client when connected, else UNAVAILABLE (waiting only for the very
   * first connect), without corking: for a caller that writes once, at the
   * loop-turn boundary (get-batch.ts).
   */
  current(): Redis | Promise<Redis> {
    return this.redis.status === "ready" ? this.redis : this.waitFirst();
  }

  private async waitFirst(): Promise<Redis> {
    if (this.first) await this.first;
    if (this.redis.status === "ready") return this.redis;
    throw errors.unavailable(`redis ${this.name} is ${this.redis.status}${this.lastError ? ` (${this.lastError})` : ""}`);
  }

  async close(): Promise<void> {
    if (this.redis.status === "end") return;
    if (this.redis.status === "ready") {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([
        this.redis.quit().catch(() => {}),
        new Promise((r) => (t = setTimeout(r, 1000))),
      ]);
      clearTimeout(t);
    }
    this.redis.disconnect();
  }
}
