/**
 * Long polls (queue dequeue waitMs, stream readGroup blockMs). A waiter
 * wakes on:
 * - a NOTIFY on the instance's wake channel naming its key (sent by enqueue,
 *   nack and append in the same statement as the write, from any process),
 * - a poll tick every POLL_MS, the fallback that makes a missed or dropped
 *   notification (listen connection down, LISTEN not yet live) cost at most
 *   one tick, and that notices delayed messages and expired leases coming due,
 * - its abort signal, or close().
 * A woken waiter re-runs its query.
 */
import type { Clock } from "../../core/clock.js";
import type { Listener } from "./listener.js";

export const POLL_MS = 250;

interface Waiter {
  woken: boolean;
  wake: (() => void) | undefined;
}

export class Waiters {
  private readonly byKey = new Map<string, Set<Waiter>>();
  private live: Promise<void> | undefined;
  private closed = false;
  private readonly onNotify = (key: string): void => this.notify(key);
  private readonly onLost = (): void => {
    this.live = undefined;
  };

  constructor(
    private readonly listener: Listener,
    /** The instance's wake channel (one per schema, shared by every Prism process on it). */
    readonly channel: string,
    private readonly clock: Clock,
  ) {}

  notify(key: string): void {
    const set = this.byKey.get(key);
    if (!set) return;
    for (const w of set) {
      w.woken = true;
      w.wake?.();
    }
  }

  /** Starts LISTEN on the wake channel if it is not live; never waits for it (polling covers the gap). */
  private ensureListening(): void {
    if (this.live || this.closed) return;
    this.live = this.listener.listen(this.channel, this.onNotify, this.onLost).catch(() => {
      this.live = undefined;
    });
  }

  /**
   * Runs attempt after every wake-up until it returns something, waitMs
   * passes (by the injected clock or real time, whichever first), the signal
   * aborts or the waiters close. The caller has made a first attempt already.
   */
  async poll<T>(key: string, waitMs: number, signal: AbortSignal | undefined, attempt: () => Promise<T[]>): Promise<T[]> {
    this.ensureListening();
    const w: Waiter = { woken: false, wake: undefined };
    let set = this.byKey.get(key);
    if (!set) this.byKey.set(key, (set = new Set()));
    set.add(w);
    const clockEnd = this.clock.now() + waitMs;
    const realEnd = Date.now() + waitMs;
    try {
      for (;;) {
        const left = Math.min(realEnd - Date.now(), clockEnd - this.clock.now());
        if (left <= 0 || this.closed || signal?.aborted) return [];
        if (!w.woken) await this.sleep(w, Math.min(POLL_MS, left), signal);
        w.woken = false;
        if (this.closed || signal?.aborted) return [];
        const r = await attempt();
        if (r.length) return r;
      }
    } finally {
      set.delete(w);
      if (set.size === 0 && this.byKey.get(key) === set) this.byKey.delete(key);
    }
  }

  private sleep(w: Waiter, ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        signal?.removeEventListener("abort", done);
        w.wake = undefined;
        resolve();
      };
      const t = setTimeout(done, ms);
      w.wake = done;
      signal?.addEventListener("abort", done, { once: true });
    });
  }

  close(): void {
    this.closed = true;
    for (const set of this.byKey.values()) for (const w of set) w.wake?.();
  }
}
