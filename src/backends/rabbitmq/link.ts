/**
 * One AMQP connection with its channels, fail-fast while RabbitMQ is down.
 * create() never throws: the connection is opened in the background and
 * reopened with exponential backoff after any loss; calls made meanwhile
 * reject with UNAVAILABLE at once (only the very first connect is awaited,
 * so a fresh process does not fail its first calls).
 *
 * Channels live in slots and are (re)opened on demand. A channel closed by
 * the broker (a channel error, or the connection going away) bumps its
 * slot's epoch and calls the slot's onLost: the work channel's leases and
 * the subscription channel's consumers die with their channel.
 */
import { connect, type Channel, type ChannelModel, type ConfirmChannel } from "amqplib";
import { errors, PrismError } from "../../core/errors.js";
import type { DriverContext } from "../driver.js";

/** AMQP reply codes that mean "your request is wrong", not "the broker is away". */
const HARD_CODES = new Set([403, 404, 405, 406, 502, 503, 504, 530, 540]);

export function toDriverError(e: unknown): PrismError {
  if (e instanceof PrismError) return e;
  const err = e as Error & { code?: number };
  if (typeof err?.code === "number" && HARD_CODES.has(err.code)) return errors.internal(`rabbitmq: ${err.message}`);
  return errors.unavailable("rabbitmq", err);
}

/** Rejection handler (module level: no closure per call). */
export function fail(e: unknown): never {
  throw toDriverError(e);
}

export class Slot<C extends Channel = Channel> {
  ch: C | null = null;
  pending: Promise<C> | null = null;
  /** Increases every time a new channel is opened in this slot. */
  epoch = 0;
  constructor(
    readonly confirm: boolean,
    readonly onLost: () => void = () => {},
  ) {}
}

export interface LinkOptions {
  url: string;
  /** The URL without credentials, for logs and errors. */
  display: string;
  connectTimeoutMs: number;
  maxBackoffMs: number;
}

export class AmqpLink {
  private model: ChannelModel | null = null;
  private first: Promise<void> | null;
  private retry: NodeJS.Timeout | undefined;
  private attempt = 0;
  private closing = false;
  private lastError = "";
  private readonly slots: Slot<any>[] = [];
  /** Called after every (re)connect: declaration caches start over. */
  onConnect: () => void = () => {};

  constructor(
    private readonly opts: LinkOptions,
    private readonly ctx: DriverContext,
  ) {
    this.first = this.connectOnce().finally(() => {
      this.first = null;
    });
  }

  slot<C extends Channel>(confirm: boolean, onLost?: () => void): Slot<C> {
    const s = new Slot<C>(confirm, onLost);
    this.slots.push(s);
    return s;
  }

  get connected(): boolean {
    return this.model !== null;
  }

  private async connectOnce(): Promise<void> {
    let m: ChannelModel;
    try {
      m = await connect(this.opts.url, { timeout: this.opts.connectTimeoutMs });
    } catch (e) {
      this.noteError((e as Error).message);
      this.scheduleRetry();
      return;
    }
    if (this.closing) {
      await m.close().catch(() => {});
      return;
    }
    m.on("error", (e: Error) => this.noteError(e.message));
    m.on("close", () => {
      if (this.model !== m) return;
      this.model = null;
      for (const s of this.slots) this.lose(s);
      if (!this.closing) {
        this.noteError("connection closed");
        this.scheduleRetry();
      }
    });
    this.model = m;
    this.attempt = 0;
    if (this.lastError) this.ctx.log("info", `${this.opts.display}: connected again`);
    this.lastError = "";
    this.onConnect();
  }

  private noteError(msg: string): void {
    // Logged once per outage, not on every retry.
    if (msg !== this.lastError) this.ctx.log("warn", `${this.opts.display}: ${msg}`);
    this.lastError = msg;
  }

  private scheduleRetry(): void {
    if (this.closing || this.retry) return;
    const delay = Math.min(100 * 2 ** Math.min(this.attempt++, 10), this.opts.maxBackoffMs);
    this.retry = setTimeout(() => {
      this.retry = undefined;
      void this.connectOnce();
    }, delay);
    this.retry.unref();
  }

  private lose(s: Slot<any>): void {
    if (!s.ch) return;
    s.ch = null;
    s.onLost();
  }

  private unavailable(): PrismError {
    return errors.unavailable(`rabbitmq ${this.opts.display} is not connected${this.lastError ? ` (${this.lastError})` : ""}`);
  }

  /** The slot's channel, opening it when needed; UNAVAILABLE while disconnected. */
  channel<C extends Channel>(s: Slot<C>): C | Promise<C> {
    if (s.ch) return s.ch;
    return this.openSlot(s);
  }

  private async openSlot<C extends Channel>(s: Slot<C>): Promise<C> {
    if (!this.model && this.first) await this.first;
    const m = this.model;
    if (!m) throw this.unavailable();
    if (s.ch) return s.ch;
    s.pending ??= (s.confirm ? (m.createConfirmChannel() as unknown as Promise<C>) : (m.createChannel() as Promise<C>)).then(
      (ch) => {
        s.pending = null;
        s.ch = ch;
        s.epoch++;
        ch.on("error", (e: Error) => this.ctx.log("warn", `${this.opts.display}: channel error: ${e.message}`));
        ch.on("close", () => {
          if (s.ch === ch) this.lose(s);
        });
        return ch;
      },
      (e) => {
        s.pending = null;
        throw toDriverError(e);
      },
    );
    return s.pending;
  }

  async close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.retry);
    this.retry = undefined;
    if (this.first) await this.first;
    const m = this.model;
    this.model = null;
    for (const s of this.slots) this.lose(s);
    if (!m) return;
    let t: NodeJS.Timeout | undefined;
    await Promise.race([m.close().catch(() => {}), new Promise((r) => (t = setTimeout(r, 2000)))]);
    clearTimeout(t);
  }
}

/** Publishes on a confirm channel; resolves once the broker confirmed the message. */
export function publishConfirmed(
  ch: ConfirmChannel,
  exchange: string,
  routingKey: string,
  content: Buffer,
  options: Parameters<ConfirmChannel["publish"]>[3],
): Promise<void> {
  return new Promise((resolve, reject) => {
    try {
      ch.publish(exchange, routingKey, content, options, (err) => (err ? reject(toDriverError(err)) : resolve()));
    } catch (e) {
      reject(toDriverError(e));
    }
  });
}
