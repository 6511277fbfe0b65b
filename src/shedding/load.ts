/**
 * The worker's load signals: event-loop lag, and event-loop utilization. Node's native loop-delay monitor
 * (perf_hooks.monitorEventLoopDelay) samples the loop every `resolutionMs`
 * without running any JavaScript; one unref'd interval per window reads the
 * window's largest delay and resets the histogram. An idle worker therefore
 * runs 5 JavaScript ticks a second, not 50, and allocates next to nothing:
 * idle allocation is what makes an idle process's RSS creep as the young
 * generation fills up between scavenges.
 *
 * Each window keeps the largest lag seen; the reported delay is the smaller
 * of the last two windows' maxima, so a single stall (a GC pause, one big
 * synchronous batch) sheds nothing, while a loop that stays behind for two
 * windows in a row reports its lag.
 */
import { monitorEventLoopDelay, performance, type EventLoopUtilization, type IntervalHistogram } from "node:perf_hooks";

export class LoopLag {
  private histogram: IntervalHistogram | undefined = undefined;
  private timer: NodeJS.Timeout | undefined = undefined;
  private lastWindowMax = 0;
  private expected = 0;
  /** Smoothed event-loop delay in ms. */
  delayMs = 0;
  /**
   * Event-loop utilization (0-1: the smaller of the last two windows' share the loop spent running callbacks rather
   * than waiting for I/O), from performance.eventLoopUtilization(). A loop can be busy all the time
   * with short turns, so its delay stays low while every call waits its turn: this is that signal.
   */
  utilization = 0;
  private elu: EventLoopUtilization | undefined = undefined;

  constructor(
    readonly resolutionMs = 20,
    private readonly windowMs = 200,
  ) {}

  start(): void {
    if (this.timer !== undefined) return;
    this.histogram = monitorEventLoopDelay({ resolution: this.resolutionMs });
    this.histogram.enable();
    this.elu = performance.eventLoopUtilization();
    this.expected = performance.now() + this.windowMs;
    this.timer = setInterval(closeWindow, this.windowMs, this);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.histogram?.disable();
    this.timer = undefined;
    this.histogram = undefined;
  }

  /** Ends a window whose largest loop lag was `windowMaxMs` and utilization `utilization` (the interval calls this; tests may too). */
  endWindow(windowMaxMs: number, utilization = this.lastUtilization): void {
    this.delayMs = Math.min(this.lastWindowMax, windowMaxMs);
    this.lastWindowMax = windowMaxMs;
    // The same rule for utilization: busy for two windows in a row, not one burst.
    this.utilization = Math.min(this.lastUtilization, utilization);
    this.lastUtilization = utilization;
  }
  private lastUtilization = 0;

  /** @internal the window interval's tick */
  readWindow(): void {
    const h = this.histogram;
    if (h === undefined) return;
    const now = performance.now();
    // How late this tick itself is: a loop turn longer than the window leaves the
    // monitor at most one sample per window, and reset() drops that one.
    let maxMs = now - this.expected;
    this.expected = now + this.windowMs;
    // The monitor records whole intervals between its samples (resolution + lag), in ns.
    if (h.count > 0 && h.max / 1e6 - this.resolutionMs > maxMs) maxMs = h.max / 1e6 - this.resolutionMs;
    h.reset();
    const elu = performance.eventLoopUtilization();
    const util = this.elu === undefined ? 0 : performance.eventLoopUtilization(elu, this.elu).utilization;
    this.elu = elu;
    this.endWindow(maxMs > 0 ? maxMs : 0, util);
  }
}

function closeWindow(l: LoopLag): void {
  l.readWindow();
}
