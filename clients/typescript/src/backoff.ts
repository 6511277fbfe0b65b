/** Reconnect delays: exponential from `initialDelayMs` to `maxDelayMs`, each spread by ±`jitter`. */
import { Code, PrismError } from "./errors.js";
import type { ReconnectOptions } from "./transport.js";

/** @internal Resolved reconnect settings. */
export interface Backoff {
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  readonly jitter: number;
  readonly waitMs: number;
}

export const BACKOFF_DEFAULTS: Backoff = { initialDelayMs: 100, maxDelayMs: 5000, jitter: 0.2, waitMs: 5000 };

/** @internal Validated settings; INVALID_ARGUMENT naming the option otherwise. */
export function backoffOptions(o: ReconnectOptions = {}): Backoff {
  const b = { ...BACKOFF_DEFAULTS };
  for (const k of ["initialDelayMs", "maxDelayMs", "waitMs"] as const) {
    const v = o[k];
    if (v === undefined) continue;
    if (!Number.isFinite(v) || v < 0) throw new PrismError(Code.INVALID_ARGUMENT, `reconnect.${k}: must be a number ≥ 0, got ${v}`);
    b[k] = v;
  }
  if (o.jitter !== undefined) {
    if (!Number.isFinite(o.jitter) || o.jitter < 0 || o.jitter > 1) throw new PrismError(Code.INVALID_ARGUMENT, `reconnect.jitter: must be between 0 and 1, got ${o.jitter}`);
    b.jitter = o.jitter;
  }
  if (b.maxDelayMs < b.initialDelayMs) b.maxDelayMs = b.initialDelayMs;
  return b;
}

/** @internal The delay before reconnect attempt `n` (0-based). */
export function delayFor(b: Backoff, n: number, random: () => number = Math.random): number {
  const base = Math.min(b.maxDelayMs, b.initialDelayMs * 2 ** Math.min(n, 30));
  return Math.max(0, Math.round(base * (1 + b.jitter * (2 * random() - 1))));
}
