/**
 * Idempotency records kept in this process's memory, for the backends whose
 * data lives there too (memstore): a record is as durable as the write it
 * answers for. Concurrent calls with one key: the first runs the write, the
 * others wait for it and answer from its record (or run, if it failed).
 */
import type { Clock } from "../../core/clock.js";
import type { IdempotencyToken, Once } from "../driver.js";

interface MemRecord {
  hash: string;
  result: unknown;
  expiresAt: number;
}

export class MemIdempotency {
  private readonly records = new Map<string, MemRecord>();
  private readonly running = new Map<string, Promise<unknown>>();

  constructor(private readonly clock: Clock) {}

  async run<T>(token: IdempotencyToken, effect: () => Promise<T>): Promise<Once<T>> {
    for (;;) {
      const rec = this.records.get(token.key);
      if (rec && rec.expiresAt > this.clock.now()) return { result: rec.result as T, replayedHash: rec.hash };
      const pending = this.running.get(token.key);
      if (!pending) break;
      await pending.catch(() => {}); // then look again: its record, or our turn
    }
    // Registered before the first await: a duplicate arriving meanwhile waits on it.
    const p = effect();
    this.running.set(token.key, p);
    try {
      const result = await p;
      // Delete first so the map keeps insertion order ≈ expiry order (sweep stops early).
      this.records.delete(token.key);
      this.records.set(token.key, { hash: token.requestHash, result, expiresAt: this.clock.now() + token.windowMs });
      return { result };
    } finally {
      this.running.delete(token.key);
    }
  }

  /** Drops expired records, at most `budget` looked at; returns how many went. */
  sweep(now: number, budget: number): number {
    let n = 0;
    let seen = 0;
    for (const [k, r] of this.records) {
      if (++seen > budget) break;
      if (r.expiresAt <= now) {
        this.records.delete(k);
        n++;
      }
    }
    return n;
  }

  clear(): void {
    this.records.clear();
  }
}
