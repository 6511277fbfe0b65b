/**
 * The worker's load signal: event-loop lag, sampled by one unref'd interval
 * (not per request). Each window keeps the largest lag seen; the reported
 * delay decays by half per window, so one GC pause does not shed for long but
 * a loop that stays behind keeps reporting it.
 */
export class LoopLag {
  private timer: NodeJS.Timeout | undefined = undefined;
  private expected = 0;
  private windowMax = 0;
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
    if (lag > this.delayMs) this.delayMs = lag;
    if (now >= this.windowEnds) {
      this.delayMs = Math.max(this.windowMax, this.delayMs / 2);
      this.windowMax = 0;
      this.windowEnds = now + this.windowMs;
    }
  }
}

function sample(l: LoopLag): void {
  l.tick();
}
