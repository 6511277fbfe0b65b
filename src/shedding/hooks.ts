/**
 * Observation points of the shedding layer, for metrics (src/observability).
 * Each hook is null until something installs it, so a disabled hook costs one
 * null check. Install once at startup:
 *
 *   sheddingHooks.shed = (ns, priority) => metrics.shed(ns, priority);
 */
import type { Priority } from "../core/context.js";

export type CircuitState = "closed" | "open" | "half_open";

export interface SheddingHooks {
  /** A call was refused by admission control (overload). ns is "" for Admin calls. */
  shed: ((ns: string, priority: Priority) => void) | null;
  /** A call was refused by the namespace's rate limit. */
  rateLimited: ((ns: string) => void) | null;
  /** A backend instance's circuit changed state; `namespaces` are those served by that instance. */
  breakerState: ((namespaces: ReadonlySet<string>, backend: string, state: CircuitState) => void) | null;
  /** A call was retried (idempotent methods only). */
  retried: ((ns: string, method: string) => void) | null;
  /** A pub/sub message was dropped for a slow subscriber (backpressure policy "drop"). */
  dropped: ((ingress: string, count: number) => void) | null;
}

export const sheddingHooks: SheddingHooks = {
  shed: null,
  rateLimited: null,
  breakerState: null,
  retried: null,
  dropped: null,
};
