/**
 * Time source for time-based semantics (TTL, visibility timeouts, delays,
 * retention). Backends that keep time themselves (memstore, sqlite) take a
 * Clock so tests can move time exactly instead of sleeping.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** A clock that moves only when told to. */
export class ManualClock implements Clock {
  private t: number;
  private readonly listeners = new Set<() => void>();
  constructor(start = Date.UTC(2026, 0, 1)) {
    this.t = start;
  }
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
    for (const l of this.listeners) l();
  }
  /** Called after every advance (backends use it to wake long-polls whose deadline passed). */
  onAdvance(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
