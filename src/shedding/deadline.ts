/**
 * Deadlines on one coarse shared timer (undici's habit): instead of one
 * setTimeout per request, entries are bucketed by tick (default 10 ms) and a
 * single interval, running only while entries exist, expires whole
 * buckets. A call therefore ends at most one tick after its deadline.
 */
import { errors } from "../core/errors.js";
import type { RequestContext } from "../core/context.js";

/** Something the wheel expires. */
export interface WheelEntry {
  /** Called once, on the wheel's tick, when the entry's time has come. */
  expire(): void;
  /** Set by the wheel: the tick the entry sits in (-1: not scheduled). */
  wheelTick: number;
}

export class TimerWheel {
  private readonly buckets = new Map<number, Set<WheelEntry>>();
  private size = 0;
  private timer: NodeJS.Timeout | undefined = undefined;

  constructor(
    readonly resolutionMs = 10,
    private readonly now: () => number = Date.now,
  ) {}

  get pending(): number {
    return this.size;
  }

  /** Schedules `e` to expire at `at` (ms, same clock as `now`), rounded up to the next tick. */
  add(e: WheelEntry, at: number): void {
    const tick = Math.ceil(at / this.resolutionMs);
    let b = this.buckets.get(tick);
    if (b === undefined) this.buckets.set(tick, (b = new Set()));
    b.add(e);
    e.wheelTick = tick;
    if (this.size++ === 0) this.start();
  }

  remove(e: WheelEntry): void {
    if (e.wheelTick < 0) return;
    const tick = e.wheelTick;
    const b = this.buckets.get(tick);
    e.wheelTick = -1;
    if (b === undefined || !b.delete(e)) return;
    if (b.size === 0) this.buckets.delete(tick);
    if (--this.size === 0) this.stop();
  }

  /** Expires every entry whose tick has come (the interval calls this; tests may too). */
  advance(): void {
    const current = Math.floor(this.now() / this.resolutionMs);
    if (this.buckets.size === 0) return;
    // Walk the (few) buckets rather than every tick since the last run: a paused loop may have skipped many.
    for (const [tick, b] of this.buckets) {
      if (tick > current) continue;
      this.buckets.delete(tick);
      for (const e of b) {
        e.wheelTick = -1;
        this.size--;
        e.expire();
      }
    }
    if (this.size === 0) this.stop();
  }

  private start(): void {
    if (this.timer !== undefined) return;
    // Not unref'd: a pending deadline is pending work; the interval stops once the wheel is empty.
    this.timer = setInterval(advanceWheel, this.resolutionMs, this);
  }

  private stop(): void {
    if (this.timer === undefined) return;
    clearInterval(this.timer);
    this.timer = undefined;
  }
}

function advanceWheel(w: TimerWheel): void {
  w.advance();
}

/** The process-wide deadline wheel. */
export const deadlineWheel = new TimerWheel(10);

/** One call racing its deadline: settles with the call, or DEADLINE_EXCEEDED when the wheel expires it first. */
class DeadlineRace<T> implements WheelEntry {
  wheelTick = -1;
  done = false;
  resolve!: (v: T) => void;
  reject!: (e: unknown) => void;

  constructor(
    private readonly ctx: RequestContext,
    private readonly wheel: TimerWheel,
  ) {}

  expire(): void {
    if (this.done) return;
    this.done = true;
    const err = errors.deadline(this.ctx.method.path);
    // Aborts long polls (Dequeue wait, ReadGroup block) so the backend call ends too.
    this.ctx.cancel(err);
    this.reject(err);
  }

  ok = (v: T): void => {
    if (this.done) return;
    this.done = true;
    this.wheel.remove(this);
    this.resolve(v);
  };

  fail = (e: unknown): void => {
    if (this.done) return;
    this.done = true;
    this.wheel.remove(this);
    this.reject(e);
  };
}

function swallow(): void {}

/**
 * `p`, abandoned with DEADLINE_EXCEEDED once ctx.deadline passes (ctx.cancel
 * is called so a long poll behind `p` returns early). The backend's eventual
 * answer is ignored.
 */
export function raceDeadline<T>(ctx: RequestContext, p: Promise<T>, wheel: TimerWheel = deadlineWheel): Promise<T> {
  if (ctx.deadline <= Date.now()) {
    p.catch(swallow);
    const err = errors.deadline(ctx.method.path);
    ctx.cancel(err);
    return Promise.reject(err);
  }
  const race = new DeadlineRace<T>(ctx, wheel);
  const out = new Promise<T>((resolve, reject) => {
    race.resolve = resolve;
    race.reject = reject;
  });
  wheel.add(race, ctx.deadline);
  p.then(race.ok, race.fail);
  return out;
}
