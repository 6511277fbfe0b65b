/**
 * One NATS connection per backend instance, opened in the background.
 *
 * create() never waits: a first-connect loop retries until NATS answers (the
 * client library only reconnects forever once it was connected), then the
 * client reconnects forever on its own (maxReconnectAttempts -1). While the
 * connection is not up, calls fail at once with UNAVAILABLE instead of
 * queueing (the client would otherwise buffer publishes during an outage and
 * let JetStream requests hang until their timeout). Only calls in the first
 * moments after start wait briefly for the first connect, so a fresh process
 * does not refuse its first requests.
 */
import { connect, errors as natsErrors, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, JetStreamApiError, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { errors, PrismError } from "../../core/errors.js";
import type { DriverContext } from "../driver.js";

export interface LinkOptions {
  servers: string[];
  user?: string;
  pass?: string;
  token?: string;
}

/** How long calls right after start wait for the first connect. */
const FIRST_CONNECT_GRACE_MS = 2000;
/** JetStream API and ack round-trips. */
export const REQUEST_TIMEOUT_MS = 5000;

export interface Conn {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
}

/** Any error from the NATS client → PrismError: transport trouble is UNAVAILABLE, API refusals INTERNAL. */
export function toDriverError(e: unknown): PrismError {
  if (e instanceof PrismError) return e;
  const err = e as Error;
  if (/max_payload|MAX_PAYLOAD/i.test(err?.message ?? "")) {
    return errors.invalidArgument("payload", `message exceeds the NATS server's max_payload (${err.message})`);
  }
  if (e instanceof JetStreamApiError) {
    if (e.status === 503) return errors.unavailable("nats jetstream", err);
    return errors.internal(`nats jetstream: ${err.message} (code ${e.code})`);
  }
  if (e instanceof natsErrors.InvalidArgumentError || e instanceof natsErrors.InvalidSubjectError) {
    return errors.internal(`nats: ${err.message}`);
  }
  return errors.unavailable("nats", err);
}

/** Rejection handler (module level: no closure per call). */
export function fail(e: unknown): never {
  throw toDriverError(e);
}

/** No stream listens on the subject (JetStream answers "no responders"): the stream was never created here or was deleted. */
export function isNoStream(e: unknown): boolean {
  if (apiCode(e) === 10059) return true;
  const cause = (e as { cause?: unknown })?.cause;
  return (e as Error)?.name === "JetStreamNotEnabled" || (cause instanceof natsErrors.RequestError && cause.isNoResponders());
}

/** The JetStream API error code of e, or 0. */
export function apiCode(e: unknown): number {
  return e instanceof JetStreamApiError ? e.code : 0;
}

export class Link {
  private conn: Conn | undefined;
  private up = false;
  private closing = false;
  private readonly first: Promise<void>;
  private readonly startedAt = Date.now();
  private retryTimer: NodeJS.Timeout | undefined;
  private wakeRetry: (() => void) | undefined;
  private lastError = "";

  constructor(
    readonly display: string,
    private readonly opts: LinkOptions,
    private readonly ctx: DriverContext,
  ) {
    this.first = this.connectLoop();
  }

  get connected(): boolean {
    return this.up;
  }

  /** The connection when up, else UNAVAILABLE (waiting only briefly right after start). */
  get(): Conn | Promise<Conn> {
    if (this.up && this.conn) return this.conn;
    return this.waitFirst();
  }

  private async waitFirst(): Promise<Conn> {
    const left = this.startedAt + FIRST_CONNECT_GRACE_MS - Date.now();
    if (!this.conn && left > 0 && !this.closing) {
      let t: NodeJS.Timeout | undefined;
      await Promise.race([this.first, new Promise((r) => (t = setTimeout(r, left)))]);
      clearTimeout(t);
    }
    if (this.up && this.conn) return this.conn;
    throw errors.unavailable(`nats ${this.display} is ${this.closing ? "closed" : "not connected"}${this.lastError ? ` (${this.lastError})` : ""}`);
  }

  private async connectLoop(): Promise<void> {
    let delay = 250;
    while (!this.closing) {
      try {
        const nc = await connect({
          servers: this.opts.servers,
          user: this.opts.user,
          pass: this.opts.pass,
          token: this.opts.token,
          name: "prism",
          timeout: 2000,
          maxReconnectAttempts: -1,
          reconnectTimeWait: 500,
          pingInterval: 10_000,
        });
        if (this.closing) {
          await nc.close().catch(() => {});
          return;
        }
        const jsm = await jetstreamManager(nc, { checkAPI: false, timeout: REQUEST_TIMEOUT_MS });
        this.conn = { nc, js: jetstream(nc, { timeout: REQUEST_TIMEOUT_MS }), jsm };
        this.up = true;
        if (this.lastError) this.ctx.log("info", `${this.display}: connected`);
        this.lastError = "";
        void this.watch(nc);
        return;
      } catch (e) {
        const msg = (e as Error).message;
        if (msg !== this.lastError) this.ctx.log("warn", `${this.display}: ${msg}; retrying`);
        this.lastError = msg;
        await new Promise<void>((r) => {
          this.wakeRetry = r;
          this.retryTimer = setTimeout(r, delay);
        });
        delay = Math.min(delay * 2, 2000);
      }
    }
  }

  private async watch(nc: NatsConnection): Promise<void> {
    void nc.closed().then(() => {
      this.up = false;
      if (this.closing) return;
      // Closed for good (e.g. an authorization error): start over.
      this.ctx.log("warn", `${this.display}: connection closed; reconnecting`);
      this.conn = undefined;
      void this.connectLoop();
    });
    for await (const s of nc.status()) {
      if (s.type === "disconnect") {
        this.up = false;
        this.lastError = "disconnected";
        this.ctx.log("warn", `${this.display}: disconnected; reconnecting`);
      } else if (s.type === "reconnect") {
        this.up = true;
        this.lastError = "";
        this.ctx.log("info", `${this.display}: reconnected`);
      }
    }
  }

  /** Round-trip time to the server. */
  async rtt(): Promise<number> {
    const c = await this.get();
    return c.nc.rtt();
  }

  async close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.retryTimer);
    this.wakeRetry?.();
    const c = this.conn;
    this.conn = undefined;
    this.up = false;
    if (c && !c.nc.isClosed()) await c.nc.close().catch(() => {});
    await this.first.catch(() => {});
  }
}
