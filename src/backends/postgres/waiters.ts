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
 *
 * A NOTIFY payload is the key, or `<key>\t<n>` when the writer knows that n
 * rows arrived (queue enqueue): then only as many waiters are woken as can
 * take n rows (by the capacity each one polls with), oldest first, instead of
 * every waiter running its query for rows that a few of them will take. A
 * waiter woken that leaves without querying (aborted, timed out) hands its
 * wake-up to the next one.
 */
import type { Clock } from "../../core/clock.js";
import type { Listener } from "./listener.js";

export const POLL_MS = 250;

interface Waiter {
  woken: boolean;
  /** Rows one attempt takes at most (Infinity: unknown). */
  capacity: number;
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

  notify(payload: string): void {
    const tab = payload.lastIndexOf("\t");
    const key = tab < 0 ? payload : payload.slice(0, tab);
    const set = this.byKey.get(key);
    if (!set) return;
    let rows = tab < 0 ? Infinity : Number(payload.slice(tab + 1));
    if (!(rows > 0)) rows = Infinity;
    for (const w of set) {
      if (rows <= 0) break;
      // Already woken ones run their query anyway; counting them again could leave rows waiting for a tick.
      if (w.woken) continue;
      w.woken = true;
      w.wake?.();
      rows -= w.capacity;
    }
  }

  private handOff(set: Set<Waiter>, from: Waiter): void {
    for (const w of set) {
      if (w === from || w.woken) continue;
      w.woken = true;
      w.wake?.();
      return;
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
  async poll<T>(key: string, waitMs: number, signal: AbortSignal | undefined, attempt: () => Promise<T[]>, capacity = Infinity): Promise<T[]> {
    this.ensureListening();
    const w: Waiter = { woken: false, capacity, wake: undefined };
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
        if (this.closed || signal?.aborted) return [];
        w.woken = false;
        const r = await attempt();
        if (r.length) return r;
      }
    } finally {
      set.delete(w);
      if (w.woken && !this.closed) this.handOff(set, w);
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
