/**
 * Parking for long polls (Queue.Dequeue waitMs, Stream.ReadGroup blockMs).
 * A parked call wakes when its structure changes (wake()), when a real timer
 * fires (its wait budget, or the next due time the caller computed), when its
 * signal aborts, or, under a ManualClock, whenever the clock is advanced.
 * The caller re-checks its condition after every wake.
 */
import type { Clock } from "../../core/clock.js";
import type { NamespaceLimits } from "../driver.js";

export interface Waiter {
  wake(): void;
}

/** State the namespace's stores share; `limits` is replaced when the namespace is re-applied. */
export interface NsContext {
  clock: Clock;
  limits: NamespaceLimits;
  /** Bumped when the namespace or instance closes: parked calls started before it return. */
  epoch: number;
}

type AdvanceClock = Clock & { onAdvance(listener: () => void): () => void };

function onAdvanceOf(clock: Clock): AdvanceClock["onAdvance"] | undefined {
  const c = clock as Partial<AdvanceClock>;
  return typeof c.onAdvance === "function" ? c.onAdvance.bind(clock) : undefined;
}

/** Resolves after at most `ms` real milliseconds, or earlier on wake / abort / clock advance. */
export function park(waiters: Set<Waiter>, ms: number, signal: AbortSignal | undefined, clock: Clock): Promise<void> {
  return new Promise<void>((resolve) => {
    let offAdvance: (() => void) | undefined;
    const done = (): void => {
      if (!waiters.delete(w)) return;
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      offAdvance?.();
      resolve();
    };
    const w: Waiter = { wake: done };
    waiters.add(w);
    const timer = setTimeout(done, Math.max(1, Math.ceil(ms)));
    signal?.addEventListener("abort", done, { once: true });
    const onAdvance = onAdvanceOf(clock);
    if (onAdvance) offAdvance = onAdvance(done);
    if (signal?.aborted) done();
  });
}

/** Wakes the longest-parked waiter. */
export function wakeOne(waiters: Set<Waiter>): void {
  for (const w of waiters) {
    w.wake();
    return;
  }
}

export function wakeAll(waiters: Set<Waiter>): void {
  for (const w of [...waiters]) w.wake();
}
