/**
 * The worker's load signal: event-loop lag, sampled by one unref'd interval
 * (not per request). Each window keeps the largest lag seen; the reported
 * delay is the smaller of the last two windows' maxima, so a single stall
 * (a GC pause, one big synchronous batch) sheds nothing, while a loop that
 * stays behind for two windows in a row reports its lag.
 */
export class LoopLag {
  private timer: NodeJS.Timeout | undefined = undefined;
  private expected = 0;
  private windowMax = 0;
  private lastWindowMax = 0;
  private windowEnds = 0;
  /** Smoothed event-loop delay in ms. */
  delayMs = 0;

  constructor(
    private readonly intervalMs = 20,
    private readonly windowMs = 200,
  ) {}

  start(): void {
    if (this.timer !== undefined) return;
    const now = performance.now();
    this.expected = now + this.intervalMs;
    this.windowEnds = now + this.windowMs;
    this.timer = setInterval(sample, this.intervalMs, this);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** @internal the interval's tick */
  tick(): void {
    const now = performance.now();
    const lag = Math.max(0, now - this.expected);
    this.expected = now + this.intervalMs;
    if (lag > this.windowMax) this.windowMax = lag;
    if (now >= this.windowEnds) {
      this.delayMs = Math.min(this.lastWindowMax, this.windowMax);
      this.lastWindowMax = this.windowMax;
      this.windowMax = 0;
      this.windowEnds = now + this.windowMs;
    }
  }
}

function sample(l: LoopLag): void {
  l.tick();
}
