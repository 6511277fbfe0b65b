/**
 * A KeyValue store in migration from `from` to `to`.
 *
 * Writes go to the key's primary first (its acknowledged-write guarantee is
 * the primary's), then to the other; a write that fails on the other is
 * recorded for repair (copied again from the primary in the background),
 * never failed to the caller. The primary is `from`, except during cutover
 * for the keys whose bucket (FNV-1a of the key, 0-99) is below the step's
 * percentage, which are read from and written first to `to`. Shadow reads
 * (a share of reads, from the shadow phase on) read the other side too and
 * compare. Rollback thresholds on `to`'s error rate, p99 latency and the
 * shadow diff are checked four times a second: crossing one sends every key
 * back to `from` at once (locally) and records why in the config store
 * (every instance follows).
 */
import type { Bytes, IdempotencyToken, KeyValueStore, KvRecord, Once, ScanPage, SetOptions } from "../backends/driver.js";
import type { Clock } from "../core/clock.js";
import { PrismError } from "../core/errors.js";
import { Backfill } from "./backfill.js";
import { KeyValueByKey } from "../backends/common/kv-by-key.js";
import { Window } from "./monitor.js";
import { keyBucket, type MigrationHost, type MigrationSettings, type MigrationState, type MigrationStats } from "./types.js";

type Log = (level: "info" | "warn" | "error", msg: string) => void;

/**
 * Pending repairs by namespace, outliving one runtime: a phase change re-applies
 * the namespace (a new store), and a key recorded for repair must stay recorded.
 */
const REPAIRS = new Map<string, Map<string, "to" | "from">>();

/** Unavailable, timed out or not a Prism answer at all: worth trying the other side. Refusals (CAS, bad input) are answers. */
function transient(e: unknown): boolean {
  if (!(e instanceof PrismError)) return true;
  return e.code === 14 || e.code === 4 || e.code === 13;
}

/** Fewer calls than this in the window: too few to judge a rate or a p99. */
const MIN_SAMPLES = 20;

function sameValue(a: KvRecord | null, b: KvRecord | null): boolean {
  if (a === null || b === null) return a === b;
  return Buffer.compare(Buffer.from(a.value.buffer, a.value.byteOffset, a.value.length), Buffer.from(b.value.buffer, b.value.byteOffset, b.value.length)) === 0;
}

export class MigratingKeyValueStore extends KeyValueByKey {
  readonly stats: MigrationStats = {
    dualWriteErrors: 0,
    repairsPending: 0,
    repaired: 0,
    shadowReads: 0,
    shadowMismatches: 0,
    diffPct: 0,
    toCalls: 0,
    toErrors: 0,
    toErrorRate: 0,
    toP99Ms: 0,
    fromP99Ms: 0,
    servedByTo: 0,
    servedByFrom: 0,
    rollbacks: 0,
  };
  private readonly window: Window;
  /** Keys whose secondary write failed: key → which side must be brought up to date (kept across phase changes). */
  private readonly repairs: Map<string, "to" | "from">;
  private rolledBack: boolean;
  private readonly timers: ReturnType<typeof setInterval>[] = [];
  private readonly backfill: Backfill | undefined;
  private closed = false;
  private lastSampleLog = 0;

  constructor(
    private readonly namespace: string,
    private readonly from: KeyValueStore,
    private readonly to: KeyValueStore,
    private readonly settings: MigrationSettings,
    private readonly state: MigrationState,
    private readonly host: MigrationHost | undefined,
    private readonly clock: Clock,
    private readonly log: Log,
  ) {
    super();
    this.window = new Window(clock, settings.windowSeconds);
    let repairs = REPAIRS.get(namespace);
    if (!repairs) REPAIRS.set(namespace, (repairs = new Map()));
    this.repairs = repairs;
    this.rolledBack = !!state.rolledBack;
    if (from.scan) this.scan = (p, c, l, k) => this.primaryForScan().scan!(p, c, l, k);
    if (from.setOnce && from.deleteOnce && to.setOnce && to.deleteOnce) {
      this.setOnce = (k, v, o, t) => this.keyedSet(k, v, o, t);
      this.deleteOnce = (k, t) => this.keyedDelete(k, t);
    }
    const repair = setInterval(() => void this.repair(), 500);
    repair.unref?.();
    this.timers.push(repair);
    if (state.phase === "shadow" || state.phase === "cutover") {
      const check = setInterval(() => this.check(), 250);
      check.unref?.();
      this.timers.push(check);
    }
    if (state.phase === "backfill" && host) {
      this.backfill = new Backfill(namespace, from, to, settings.backfillRps, host, clock, log);
      this.backfill.start();
    }
  }

  /** The percentage of keys `to` serves now. */
  get cutoverPct(): number {
    if (this.state.phase !== "cutover" || this.rolledBack || this.settings.dryRun) return 0;
    return this.settings.cutoverSteps[this.state.step] ?? 0;
  }

  private toServes(key: string): boolean {
    const pct = this.cutoverPct;
    return pct >= 100 || (pct > 0 && keyBucket(key) < pct);
  }

  private primaryForScan(): KeyValueStore {
    return this.cutoverPct >= 100 ? this.to : this.from;
  }

  private async timedTo<T>(f: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      const r = await f();
      this.window.to(performance.now() - t0, true);
      this.stats.toCalls++;
      return r;
    } catch (e) {
      this.window.to(performance.now() - t0, false);
      this.stats.toCalls++;
      this.stats.toErrors++;
      throw e;
    }
  }

  private async timedFrom<T>(f: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    const r = await f();
    this.window.from(performance.now() - t0);
    return r;
  }

  get(key: string): Promise<KvRecord | null> {
    // Dual-write and backfill read `from` only and compare nothing: no wrapper on the hot path.
    if (!this.comparing) {
      this.stats.servedByFrom++;
      return this.from.get(key);
    }
    return this.getComparing(key);
  }

  /** Shadow and cutover phases: reads may go to `to`, and a share is compared. */
  private get comparing(): boolean {
    return this.state.phase === "shadow" || this.state.phase === "cutover";
  }

  private async getComparing(key: string): Promise<KvRecord | null> {
    let viaTo = this.toServes(key);
    let rec: KvRecord | null;
    if (viaTo) {
      try {
        rec = await this.timedTo(() => this.to.get(key));
      } catch (e) {
        if (!transient(e)) throw e;
        // `from` has every write too (dual-write): answer from it; the failure counts toward a rollback.
        viaTo = false;
        rec = await this.timedFrom(() => this.from.get(key));
      }
    } else rec = await this.timedFrom(() => this.from.get(key));
    if (viaTo) this.stats.servedByTo++;
    else this.stats.servedByFrom++;
    if ((this.state.phase === "shadow" || this.state.phase === "cutover") && Math.random() * 100 < this.settings.shadowReadPct && !this.repairs.has(key)) {
      void this.shadowRead(key, rec, viaTo);
    }
    return rec;
  }

  private async shadowRead(key: string, served: KvRecord | null, viaTo: boolean): Promise<void> {
    try {
      const other = viaTo ? await this.from.get(key) : await this.timedTo(() => this.to.get(key));
      let match = sameValue(served, other);
      // A write in flight between the two reads is not a divergence: compare again once it settled (three tries).
      for (let i = 0; !match && i < 3; i++) {
        await new Promise((r) => setTimeout(r, 50));
        const [a, b] = await Promise.all([this.from.get(key), this.to.get(key)]);
        match = sameValue(a, b) || this.repairs.has(key);
      }
      this.stats.shadowReads++;
      this.window.shadow(match);
      if (!match) {
        this.stats.shadowMismatches++;
        const now = this.clock.now();
        if (now - this.lastSampleLog > 1000) {
          this.lastSampleLog = now;
          // Keys only, never values.
          this.log("warn", `migration ${this.namespace}: shadow read mismatch on key ${JSON.stringify(key.slice(0, 200))} (${this.stats.shadowMismatches} so far)`);
        }
      }
    } catch {
      /* a failed shadow read counts as a `to` error (timedTo), not a mismatch */
    }
  }

  private async write<T>(key: string, primaryCall: (s: KeyValueStore) => Promise<T>, secondaryCall: (s: KeyValueStore, r: T) => Promise<unknown>): Promise<T> {
    let viaTo = this.toServes(key);
    let r: T;
    if (viaTo) {
      try {
        r = await this.timedTo(() => primaryCall(this.to));
      } catch (e) {
        if (!transient(e)) throw e;
        // `to` does not answer: `from` takes the write as primary; `to` is repaired later.
        viaTo = false;
        r = await this.timedFrom(() => primaryCall(this.from));
        this.repairs.set(key, "to");
        this.stats.repairsPending = this.repairs.size;
        return r;
      }
    } else r = this.comparing ? await this.timedFrom(() => primaryCall(this.from)) : await primaryCall(this.from);
    const secondary = viaTo ? this.from : this.to;
    try {
      if (viaTo) await secondaryCall(secondary, r);
      else await this.timedTo(() => secondaryCall(secondary, r));
      if (this.repairs.delete(key)) this.stats.repairsPending = this.repairs.size;
    } catch (e) {
      // A refusal the primary accepted (CAS) is not the other side's to make: copy it over instead.
      this.stats.dualWriteErrors++;
      this.repairs.set(key, viaTo ? "from" : "to");
      this.stats.repairsPending = this.repairs.size;
      if (!(e instanceof PrismError) || this.stats.dualWriteErrors % 1000 === 1) this.log("warn", `migration ${this.namespace}: write to ${viaTo ? "from" : "to"} failed, recorded for repair: ${(e as Error).message}`);
    }
    return r;
  }

  set(key: string, value: Bytes, opts: SetOptions): Promise<number> {
    // The other side takes the value as the primary stored it (no CAS of its own: the primary decided).
    return this.write(key, (s) => s.set(key, value, opts), (s) => s.set(key, value, { ttlMs: opts.ttlMs }));
  }

  delete(key: string): Promise<boolean> {
    return this.write(key, (s) => s.delete(key), (s) => s.delete(key));
  }

  /**
   * keyvalue_idempotent (both sides have it): the key's primary runs the keyed
   * write; a write that ran (not a replay) is copied to the other side with the
   * same idempotency key, so both sides hold the record and a retry finds it
   * whichever side is the key's primary by then. A key first used before the
   * migration started is known to `from` only (README: Idempotency keys).
   */
  setOnce?: (key: string, value: Bytes, opts: SetOptions, token: IdempotencyToken) => Promise<Once<number>>;
  deleteOnce?: (key: string, token: IdempotencyToken) => Promise<Once<boolean>>;

  private keyedSet(key: string, value: Bytes, opts: SetOptions, token: IdempotencyToken): Promise<Once<number>> {
    return this.write(
      key,
      (s) => s.setOnce!(key, value, opts, token),
      (s, once) => (once.replayedHash === undefined ? s.setOnce!(key, value, { ttlMs: opts.ttlMs }, token) : Promise.resolve()),
    );
  }

  private keyedDelete(key: string, token: IdempotencyToken): Promise<Once<boolean>> {
    return this.write(
      key,
      (s) => s.deleteOnce!(key, token),
      (s, once) => (once.replayedHash === undefined ? s.deleteOnce!(key, token) : Promise.resolve()),
    );
  }


  scan?: (prefix: string, cursor: string, limit: number, keysOnly: boolean) => Promise<ScanPage>;

  /** Brings the lagging side of each recorded key up to date from its primary. */
  private async repair(): Promise<void> {
    if (this.closed || this.repairs.size === 0) return;
    for (const [key, side] of [...this.repairs].slice(0, 200)) {
      const src = side === "to" ? this.from : this.to;
      const dst = side === "to" ? this.to : this.from;
      try {
        const rec = await src.get(key);
        if (rec) await dst.set(key, rec.value, {});
        else await dst.delete(key);
        if (this.repairs.get(key) === side) this.repairs.delete(key);
        this.stats.repaired++;
      } catch {
        break; // still down: try again later
      }
    }
    this.stats.repairsPending = this.repairs.size;
  }

  /** The rollback thresholds over the window. */
  private check(): void {
    if (this.closed || this.rolledBack) return;
    const w = this.window.summary();
    Object.assign(this.stats, { diffPct: w.diffPct, toErrorRate: w.errorRate, toP99Ms: w.p99Ms, fromP99Ms: w.fromP99Ms });
    const r = this.settings.rollbackOn;
    let reason: string | undefined;
    if (w.calls >= MIN_SAMPLES && w.errorRate > r.errorRate) reason = `to's error rate ${(w.errorRate * 100).toFixed(2)}% over ${this.settings.windowSeconds} s exceeds ${(r.errorRate * 100).toFixed(2)}%`;
    else if (w.calls >= MIN_SAMPLES && w.p99Ms > r.p99Ms) reason = `to's p99 latency ${w.p99Ms} ms over ${this.settings.windowSeconds} s exceeds ${r.p99Ms} ms`;
    else if (w.shadow >= MIN_SAMPLES && w.diffPct > r.diffPct) reason = `shadow diff ${w.diffPct.toFixed(2)}% over ${this.settings.windowSeconds} s exceeds ${r.diffPct}%`;
    if (reason === undefined) return;
    // Only cutover moves traffic; before it, a breach is still recorded so the operator sees it.
    this.rolledBack = true;
    this.stats.rollbacks++;
    this.log("error", `migration ${this.namespace}: automatic rollback to ${this.settings.from}: ${reason}`);
    this.host?.rollback(this.namespace, reason, true).catch((e) => this.log("error", `migration ${this.namespace}: recording the rollback failed: ${(e as Error).message}`));
  }

  /** The stats with the window's current rates. */
  snapshot(): MigrationStats {
    const w = this.window.summary();
    return { ...this.stats, diffPct: w.diffPct, toErrorRate: w.errorRate, toP99Ms: w.p99Ms, fromP99Ms: w.fromP99Ms, repairsPending: this.repairs.size };
  }

  get isRolledBack(): boolean {
    return this.rolledBack;
  }

  get backfillProgress() {
    return this.backfill?.progress;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    await this.backfill?.stop();
  }
}
