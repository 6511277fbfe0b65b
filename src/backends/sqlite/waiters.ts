/**
 * In-process wake-ups for long polls (queue dequeue waitMs, stream readGroup
 * blockMs). SQLite has no notifications, so a waiter wakes on:
 * - notify(key) from a write in this process (enqueue, nack, append),
 * - one shared real-time tick (catches other processes, leases and delays
 *   coming due); it runs only while someone waits,
 * - a ManualClock advance, when the clock is one,
 * - its own abort signal, or close().
 * A woken waiter re-runs its query; the wait loop lives in poll().
 */
import type { Clock } from "../../core/clock.js";

type Wake = () => void;

export class Waiters {
  private readonly byKey = new Map<string, Set<Wake>>();
  private count = 0;
  private ticker: NodeJS.Timeout | undefined;
  private readonly stopClock: (() => void) | undefined;
  closed = false;

  constructor(
    private readonly clock: Clock,
    private readonly tickMs = 50,
  ) {
    const manual = clock as { onAdvance?: (l: () => void) => () => void };
    if (typeof manual.onAdvance === "function") this.stopClock = manual.onAdvance(() => this.wakeAll());
  }

  notify(key: string): void {
    const set = this.byKey.get(key);
    if (!set) return;
    this.byKey.delete(key);
    this.count -= set.size;
    for (const w of set) w();
    this.maybeStopTicker();
  }

  private wakeAll(): void {
    for (const key of [...this.byKey.keys()]) this.notify(key);
  }

  /** Resolves on the next wake-up of any kind; never rejects. */
  wait(key: string, signal: AbortSignal | undefined): Promise<void> {
    if (this.closed || signal?.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      let set = this.byKey.get(key);
      if (!set) this.byKey.set(key, (set = new Set()));
      const onAbort = (): void => {
        const s = this.byKey.get(key);
        if (s?.delete(wake)) {
          this.count--;
          if (s.size === 0) this.byKey.delete(key);
          this.maybeStopTicker();
        }
        resolve();
      };
      const wake = (): void => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      set.add(wake);
      this.count++;
      signal?.addEventListener("abort", onAbort, { once: true });
      if (!this.ticker) this.ticker = setInterval(() => this.wakeAll(), this.tickMs);
    });
  }

  private maybeStopTicker(): void {
    if (this.count === 0 && this.ticker) {
      clearInterval(this.ticker);
      this.ticker = undefined;
    }
  }

  /**
   * Long-poll loop, for a caller whose first attempt found nothing: runs
   * attempt() after every wake-up until it returns something, the signal
   * aborts, waitMs passes (by the injected clock or by real time, whichever
   * comes first) or the waiters close.
   */
  async poll<T>(key: string, waitMs: number, signal: AbortSignal | undefined, attempt: () => T[]): Promise<T[]> {
    let r: T[];
    const clockDeadline = this.clock.now() + waitMs;
    const realDeadline = Date.now() + waitMs;
    for (;;) {
      await this.wait(key, signal);
      if (this.closed || signal?.aborted) return [];
      r = attempt();
      if (r.length || this.clock.now() >= clockDeadline || Date.now() >= realDeadline) return r;
    }
  }

  close(): void {
    this.closed = true;
    this.stopClock?.();
    this.wakeAll();
    this.maybeStopTicker();
  }
}
