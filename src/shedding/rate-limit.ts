/**
 * Per-namespace rate limit: a token bucket (rps refill, burst capacity),
 * refilled lazily from the clock on each take: no timer, no per-request
 * allocation.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly rps: number,
    readonly burst: number,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = burst;
    this.last = now();
  }

  /** Takes one token; false when the bucket is empty. */
  take(): boolean {
    const t = this.now();
    const elapsed = t - this.last;
    if (elapsed > 0) {
      this.last = t;
      this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.rps) / 1000);
    }
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Whole seconds until a token is available (at least 1, for Retry-After). */
  retryAfterSeconds(): number {
    const missing = 1 - this.tokens;
    return Math.max(1, Math.ceil(missing / this.rps));
  }
}
