/**
 * The sliding window a migration's rollback thresholds are judged on: `to`'s
 * error rate and p99 latency, and the shadow diff percentage (also `from`'s
 * error rate and p99, for the operator), over the last
 * windowSeconds, in one-second buckets (no per-call allocation).
 */
import type { Clock } from "../core/clock.js";

const LAT_BOUNDS = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, Infinity];

class Bucket {
  sec = -1;
  calls = 0;
  errors = 0;
  shadow = 0;
  mismatch = 0;
  fromCalls = 0;
  fromErrors = 0;
  readonly lat = new Array<number>(LAT_BOUNDS.length).fill(0);
  fromLat = new Array<number>(LAT_BOUNDS.length).fill(0);
  reset(sec: number): void {
    this.sec = sec;
    this.calls = this.errors = this.shadow = this.mismatch = this.fromCalls = this.fromErrors = 0;
    this.lat.fill(0);
    this.fromLat.fill(0);
  }
}

function p99(counts: number[]): number {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return 0;
  let acc = 0;
  for (let i = 0; i < counts.length; i++) {
    acc += counts[i]!;
    if (acc >= total * 0.99) return LAT_BOUNDS[i] === Infinity ? LAT_BOUNDS[i - 1]! * 2 : LAT_BOUNDS[i]!;
  }
  return 0;
}

export class Window {
  private readonly buckets: Bucket[];
  constructor(
    private readonly clock: Clock,
    private readonly seconds: number,
  ) {
    this.buckets = Array.from({ length: Math.max(1, seconds) }, () => new Bucket());
  }

  private bucket(): Bucket {
    const sec = Math.floor(this.clock.now() / 1000);
    const b = this.buckets[sec % this.buckets.length]!;
    if (b.sec !== sec) b.reset(sec);
    return b;
  }

  to(ms: number, ok: boolean): void {
    const b = this.bucket();
    b.calls++;
    if (!ok) b.errors++;
    let i = 0;
    while (ms > LAT_BOUNDS[i]!) i++;
    b.lat[i]!++;
  }

  from(ms: number, ok = true): void {
    const b = this.bucket();
    b.fromCalls++;
    if (!ok) b.fromErrors++;
    let i = 0;
    while (ms > LAT_BOUNDS[i]!) i++;
    b.fromLat[i]!++;
  }

  shadow(match: boolean): void {
    const b = this.bucket();
    b.shadow++;
    if (!match) b.mismatch++;
  }

  summary(): { calls: number; errors: number; errorRate: number; p99Ms: number; fromP99Ms: number; fromErrorRate: number; shadow: number; mismatches: number; diffPct: number } {
    const now = Math.floor(this.clock.now() / 1000);
    let calls = 0, errors = 0, shadow = 0, mismatches = 0, fromCalls = 0, fromErrors = 0;
    const lat = new Array<number>(LAT_BOUNDS.length).fill(0);
    const fromLat = new Array<number>(LAT_BOUNDS.length).fill(0);
    for (const b of this.buckets) {
      if (b.sec < 0 || now - b.sec >= this.buckets.length) continue;
      calls += b.calls;
      errors += b.errors;
      shadow += b.shadow;
      mismatches += b.mismatch;
      fromCalls += b.fromCalls;
      fromErrors += b.fromErrors;
      b.lat.forEach((n, i) => (lat[i]! += n));
      b.fromLat.forEach((n, i) => (fromLat[i]! += n));
    }
    return { calls, errors, errorRate: calls ? errors / calls : 0, p99Ms: p99(lat), fromP99Ms: p99(fromLat), fromErrorRate: fromCalls ? fromErrors / fromCalls : 0, shadow, mismatches, diffPct: shadow ? (100 * mismatches) / shadow : 0 };
  }
}
