/**
 * The self-healing Channel between the client layer and a Transport:
 * - reconnects after the connection drops, with jittered exponential backoff;
 * - calls issued while disconnected wait for the connection (up to their
 *   deadline, else `reconnect.waitMs`) and are then sent once;
 * - calls in flight when the connection drops fail with UNAVAILABLE, except the
 *   retryable ones (retry.ts), which are sent again after the reconnect, within
 *   the same budget;
 * - subscriptions are resumed on the new connection (`disconnected`, `resumed`);
 * - connection state changes are reported (`connecting` → `ready` ⇄ `reconnecting` → `closed`).
 * The fast path (connected) adds no timer and no promise to a call.
 */
import { PrismError, cancelled, deadlineExceeded, isConnectionLost, isServerGoingAway, unavailable } from "./errors.js";
import { delayFor, type Backoff } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { retryable } from "./retry.js";
import type { MethodInfo } from "./methods.js";
import type { Attempt, Channel, ConnectionState, OpenOptions, StreamHandle, StreamSink, Transport, UnaryOptions } from "./transport.js";

/** @internal Opens one connection. */
export type Opener = (opts: OpenOptions) => Promise<Transport>;

/** @internal Settings of a Channel. */
export interface ChannelSettings {
  open: Opener;
  openOptions: Omit<OpenOptions, "lost">;
  /** undefined: a dropped connection closes the channel. */
  reconnect: Backoff | undefined;
  timeoutMs: number;
  autoIdempotency: boolean;
  coalesce: boolean;
  onState?: (s: ConnectionState) => void;
}

const NO_ATTEMPT: Attempt = Object.freeze({ deadline: 0 });

/** A call waiting for the connection. */
interface Waiter {
  resolve(t: Transport): void;
  reject(e: PrismError): void;
}

/** @internal */
export class HealingChannel implements Channel {
  readonly events = new Emitter<{ state: [ConnectionState] }>();
  readonly autoIdempotency: boolean;
  readonly coalesce: boolean;
  private stateNow: ConnectionState = "connecting";
  private current: Transport | undefined;
  private readonly waiters = new Set<Waiter>();
  /** Subscriptions waiting for the connection to resume on. */
  private readonly parked = new Set<ResumingStream>();
  private readonly streams = new Set<ResumingStream>();
  /** Transports whose connection was lost, while calls may still be running on them. */
  private readonly retired = new Set<Transport>();
  private timer: NodeJS.Timeout | undefined;
  private tries = 0;
  /** Set once closed (by the client, or by a dropped connection without reconnect). */
  private closedError: PrismError | undefined;
  private closing: Promise<void> | undefined;

  private constructor(private readonly s: ChannelSettings) {
    this.autoIdempotency = s.autoIdempotency;
    this.coalesce = s.coalesce;
  }

  /** Opens the first connection; rejects (and reports `closed`) when it cannot: the first connect does not retry. */
  static async connect(s: ChannelSettings): Promise<HealingChannel> {
    const c = new HealingChannel(s);
    s.onState?.("connecting");
    try {
      c.current = await c.openOne();
    } catch (e) {
      c.closedError = e instanceof PrismError ? e : unavailable("connect", e);
      c.setState("closed");
      throw e;
    }
    c.setState("ready");
    return c;
  }

  get state(): ConnectionState {
    return this.stateNow;
  }

  get backoff(): Backoff | undefined {
    return this.s.reconnect;
  }

  /** The connected transport, if any (subscriptions start on it). */
  get transport(): Transport | undefined {
    return this.current;
  }

  private setState(s: ConnectionState): void {
    if (s === this.stateNow) return;
    this.stateNow = s;
    this.s.onState?.(s);
    this.events.emit("state", s);
  }

  private openOne(): Promise<Transport> {
    let t: Transport | undefined;
    let early: PrismError | undefined;
    const lost = (err: PrismError) => {
      if (t) this.onLost(t, err);
      else early = err;
    };
    return this.s.open({ ...this.s.openOptions, lost }).then((opened) => {
      t = opened;
      if (early) queueMicrotask(() => this.onLost(opened, early!));
      return opened;
    });
  }

  private onLost(t: Transport, err: PrismError): void {
    if (this.closedError || t !== this.current) return;
    this.current = undefined;
    // Not closed here: calls in flight on it may still finish (gRPC after GOAWAY). close() ends them.
    for (const r of this.retired) if (r.idle()) this.retired.delete(r);
    this.retired.add(t);
    if (!this.s.reconnect) {
      this.shutDown(err);
      return;
    }
    this.setState("reconnecting");
    this.tries = 0;
    this.schedule();
  }

  private schedule(): void {
    const delay = delayFor(this.s.reconnect!, this.tries++);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.reconnectOnce();
    }, delay);
  }

  private async reconnectOnce(): Promise<void> {
    if (this.closedError) return;
    let t: Transport;
    try {
      t = await this.openOne();
    } catch {
      if (!this.closedError) this.schedule();
      return;
    }
    if (this.closedError) {
      void t.close().catch(() => {});
      return;
    }
    this.current = t;
    this.setState("ready");
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const w of waiters) w.resolve(t);
    const parked = [...this.parked];
    this.parked.clear();
    for (const s of parked) s.start();
  }

  /** The connection, when there is one; else waits for the reconnect within the call's budget. */
  private whenConnected(deadline: number, signal: AbortSignal | undefined): Promise<Transport> {
    if (this.closedError) return Promise.reject(this.closedError);
    if (signal?.aborted) return Promise.reject(cancelled(signal));
    if (this.current) return Promise.resolve(this.current);
    const wait = deadline > 0 ? deadline - Date.now() : this.s.reconnect!.waitMs;
    if (wait <= 0) return Promise.reject(deadline > 0 ? deadlineExceeded() : this.noConnection());
    return new Promise<Transport>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        this.waiters.delete(w);
      };
      const w: Waiter = {
        resolve: (t) => {
          done();
          resolve(t);
        },
        reject: (e) => {
          done();
          reject(e);
        },
      };
      const onAbort = () => w.reject(cancelled(signal));
      const timer = setTimeout(() => w.reject(deadline > 0 ? deadlineExceeded() : this.noConnection()), wait);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiters.add(w);
    });
  }

  private noConnection(): PrismError {
    return unavailable(`no connection to Prism: still reconnecting after ${this.s.reconnect!.waitMs} ms (reconnect.waitMs)`);
  }

  unary(method: MethodInfo, request: object, opts?: UnaryOptions): Promise<any> {
    let attempt = NO_ATTEMPT;
    if (opts) {
      const timeoutMs = opts.timeoutMs ?? this.s.timeoutMs;
      const deadline = timeoutMs > 0 ? Date.now() + timeoutMs + (opts.extraMs ?? 0) : 0;
      if (deadline > 0 || opts.signal) attempt = { deadline, signal: opts.signal };
    } else if (this.s.timeoutMs > 0) {
      attempt = { deadline: Date.now() + this.s.timeoutMs };
    }
    const t = this.current;
    if (t === undefined) return this.slowUnary(method, request, attempt);
    const p = t.unary(method, request, attempt);
    if (!this.s.reconnect || !retryable(method.retry, request)) return p;
    return p.catch((e: unknown) => {
      if (!isConnectionLost(e) || this.closedError) throw e;
      return this.slowUnary(method, request, attempt);
    });
  }

  /** Waits for the connection, sends; again after a dropped connection when the call may be repeated. */
  private async slowUnary(method: MethodInfo, request: object, attempt: Attempt): Promise<any> {
    const again = retryable(method.retry, request);
    for (;;) {
      const t = await this.whenConnected(attempt.deadline, attempt.signal);
      try {
        return await t.unary(method, request, attempt);
      } catch (e) {
        if (!isConnectionLost(e) || !again || this.closedError || !this.s.reconnect) throw e;
      }
    }
  }

  serverStream(method: MethodInfo, request: object, sink: StreamSink): StreamHandle {
    const s = new ResumingStream(this, method, request, sink);
    if (this.closedError) {
      const err = this.closedError;
      queueMicrotask(() => sink.onError(err));
      return s;
    }
    this.streams.add(s);
    s.start();
    return s;
  }

  /** @internal A stream wants to (re)start: now on the current connection, or once reconnected. */
  park(s: ResumingStream): void {
    if (this.closedError) return s.fail(this.closedError);
    this.parked.add(s);
  }

  /** @internal */
  forget(s: ResumingStream): void {
    this.streams.delete(s);
    this.parked.delete(s);
  }

  /** @internal May a failed stream be resumed? */
  canResume(): boolean {
    return this.s.reconnect !== undefined && this.closedError === undefined;
  }

  private shutDown(err: PrismError): void {
    this.closedError = err;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const w of waiters) w.reject(err);
    const streams = [...this.streams];
    this.streams.clear();
    this.parked.clear();
    for (const s of streams) s.stopTimer();
    for (const s of streams) if (!s.running) s.fail(err);
    this.setState("closed");
  }

  /** Closes for good: pending calls reject with UNAVAILABLE, subscriptions end with it. Idempotent. */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      const t = this.current;
      this.current = undefined;
      const streams = [...this.streams];
      if (!this.closedError) this.shutDown(unavailable("connection closed by the client"));
      // Streams running on the transport end through its close() (their sinks get its error).
      const retired = [...this.retired];
      this.retired.clear();
      await Promise.all([t?.close(), ...retired.map((r) => r.close())]);
      for (const s of streams) s.fail(this.closedError!);
    })());
  }
}

/** @internal A subscription that outlives connections: restarted on each new one. */
class ResumingStream implements StreamHandle {
  private inner: StreamHandle | undefined;
  private ranOn: Transport | undefined;
  private gen = 0;
  private wasReady = false;
  private down = false;
  private over = false;
  private tries = 0;
  private timer: NodeJS.Timeout | undefined;
  running = false;

  constructor(
    private readonly ch: HealingChannel,
    private readonly method: MethodInfo,
    private readonly request: object,
    private readonly sink: StreamSink,
  ) {}

  start(): void {
    if (this.over) return;
    const t = this.ch.transport;
    if (!t) return this.ch.park(this);
    const gen = ++this.gen;
    this.ranOn = t;
    this.running = true;
    const live = () => gen === this.gen && !this.over;
    this.inner = t.serverStream(this.method, this.request, {
      onReady: () => {
        if (!live()) return;
        this.tries = 0;
        if (!this.wasReady) {
          this.wasReady = true;
          this.down = false;
          this.sink.onReady();
        } else if (this.down) {
          this.down = false;
          this.sink.onResumed?.();
        }
      },
      onMessage: (m) => {
        if (live()) this.sink.onMessage(m);
      },
      onError: (err) => {
        if (!live()) return;
        this.running = false;
        this.inner = undefined;
        const resumable = isConnectionLost(err) || (this.wasReady && isServerGoingAway(err));
        if (!resumable || !this.ch.canResume()) return this.fail(err);
        if (!this.down) {
          this.down = true;
          this.sink.onDisconnected?.(err);
        }
        this.later();
      },
      onEnd: () => {
        if (!live()) return;
        this.running = false;
        this.over = true;
        this.ch.forget(this);
        this.sink.onEnd();
      },
    });
  }

  /** Restart: on a new connection at once; on the same one (server going away) after a backoff delay. */
  private later(): void {
    const t = this.ch.transport;
    if (t === undefined) return this.ch.park(this);
    if (t !== this.ranOn) return this.start();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.start();
    }, delayFor(this.ch.backoff!, this.tries++));
  }

  stopTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Ends the stream with `err` (once). */
  fail(err: PrismError): void {
    if (this.over) return;
    this.over = true;
    this.stopTimer();
    this.ch.forget(this);
    this.inner?.cancel();
    this.inner = undefined;
    this.sink.onError(err);
  }

  cancel(): void {
    if (this.over) return;
    this.over = true;
    this.stopTimer();
    this.ch.forget(this);
    this.inner?.cancel();
    this.inner = undefined;
  }
}
