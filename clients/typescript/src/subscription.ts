/**
 * A subscription as the application sees it: an async iterable of messages
 * with a `ready` promise and `close()`. Transports feed it through StreamSink.
 */
import { PrismError, Code } from "./errors.js";
import { Emitter } from "./emitter.js";
import type { StreamHandle, StreamSink } from "./transport.js";

/** A message delivered to a subscriber. */
export interface PubSubMessage {
  topic: string;
  payload: Uint8Array;
  attributes: Record<string, string>;
  messageId: string;
  publishTimeMs: number;
}

/**
 * A live subscription.
 * - `ready` resolves once the server has the subscription live (messages
 *   published after that are delivered); it rejects when subscribing fails
 *   (e.g. NOT_FOUND for an unknown namespace).
 * - Iterate with `for await`; breaking out of the loop closes it. Iteration
 *   throws the subscription's error, if any, after the messages received before it.
 * - Messages are buffered while the application is not iterating.
 * - When the connection drops, the subscription is resumed on the new
 *   connection by itself: `disconnected` fires when it is cut off, `resumed`
 *   once it is live again. Pub/sub is at-most-once across a reconnect: what
 *   is published between the two events is not delivered to it.
 */
export interface Subscription<T = PubSubMessage> extends AsyncIterable<T> {
  readonly ready: Promise<void>;
  close(): Promise<void>;
  on(event: "disconnected", fn: (err: PrismError) => void): this;
  on(event: "resumed", fn: () => void): this;
  off(event: "disconnected", fn: (err: PrismError) => void): this;
  off(event: "resumed", fn: () => void): this;
}

type SubscriptionEvents = { disconnected: [PrismError]; resumed: [] };

type Waiter<T> = { resolve(r: IteratorResult<T>): void; reject(e: unknown): void };

/** @internal The buffer between a transport's StreamSink and the application's iterator. */
export class SubscriptionImpl<T> implements Subscription<T>, StreamSink, AsyncIterator<T> {
  readonly ready: Promise<void>;
  handle: StreamHandle | undefined;
  private readyResolve!: () => void;
  private readyReject!: (e: unknown) => void;
  private isReady = false;
  private buffer: T[] = [];
  private head = 0;
  private waiter: Waiter<T> | undefined;
  private done = false;
  private failure: PrismError | undefined;
  private readonly events = new Emitter<SubscriptionEvents>();

  constructor(private readonly convert: (msg: unknown) => T) {
    this.ready = new Promise<void>((resolve, reject) => {
      this.readyResolve = resolve;
      this.readyReject = reject;
    });
    // A failed subscribe must not become an unhandled rejection when nobody awaits `ready`.
    this.ready.catch(() => {});
  }

  on<K extends keyof SubscriptionEvents>(event: K, fn: (...args: SubscriptionEvents[K]) => void): this {
    this.events.on(event, fn);
    return this;
  }

  off<K extends keyof SubscriptionEvents>(event: K, fn: (...args: SubscriptionEvents[K]) => void): this {
    this.events.off(event, fn);
    return this;
  }

  // ---- StreamSink (transport side)
  onDisconnected(err: PrismError): void {
    if (!this.done) this.events.emit("disconnected", err);
  }

  onResumed(): void {
    if (!this.done) this.events.emit("resumed");
  }

  onReady(): void {
    if (this.isReady || this.done) return;
    this.isReady = true;
    this.readyResolve();
  }

  onMessage(msg: unknown): void {
    if (this.done) return;
    const value = this.convert(msg);
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve({ value, done: false });
    } else {
      this.buffer.push(value);
    }
  }

  onError(err: PrismError): void {
    if (this.done) return;
    this.failure = err;
    this.finish();
  }

  onEnd(): void {
    if (this.done) return;
    this.finish();
  }

  private finish(): void {
    this.done = true;
    if (!this.isReady) {
      this.isReady = true;
      this.readyReject(this.failure ?? new PrismError(Code.UNAVAILABLE, "subscription ended before it was live"));
    }
    if (this.waiter && this.head >= this.buffer.length) {
      const w = this.waiter;
      this.waiter = undefined;
      this.settleEnd(w);
    }
  }

  private settleEnd(w: Waiter<T>): void {
    const f = this.failure;
    if (f) {
      this.failure = undefined; // thrown once; later next() calls report done
      w.reject(f);
    } else {
      w.resolve({ value: undefined, done: true });
    }
  }

  // ---- application side
  next(): Promise<IteratorResult<T>> {
    if (this.head < this.buffer.length) {
      const value = this.buffer[this.head]!;
      this.buffer[this.head++] = undefined as T;
      if (this.head === this.buffer.length) {
        this.buffer = [];
        this.head = 0;
      }
      return Promise.resolve({ value, done: false });
    }
    if (this.done) {
      return new Promise((resolve, reject) => this.settleEnd({ resolve, reject }));
    }
    if (this.waiter) return Promise.reject(new PrismError(Code.FAILED_PRECONDITION, "subscription: next() called while another next() is pending"));
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  async return(): Promise<IteratorResult<T>> {
    await this.close();
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return this;
  }

  /** Stops the subscription on the server and ends iteration. Idempotent. */
  async close(): Promise<void> {
    if (!this.done) {
      this.handle?.cancel();
      this.failure = undefined;
      this.finishClosed();
    }
  }

  private finishClosed(): void {
    this.done = true;
    this.buffer = [];
    this.head = 0;
    if (!this.isReady) {
      this.isReady = true;
      this.readyReject(new PrismError(Code.CANCELLED, "subscription closed before it was live"));
    }
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve({ value: undefined, done: true });
    }
  }
}
