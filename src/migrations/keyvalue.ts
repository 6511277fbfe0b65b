/**
 * A KeyValue store in migration from `from` to `to`.
 *
 * Writes go to the key's primary first (its acknowledged-write guarantee is
 * the primary's): the caller is answered once the primary has the write, and
 * the copy to the other side is queued (write-behind, ./write-behind.ts: per
 * key in primary-ack order, coalesced, batched across keys, bounded by
 * writeBehindMaxKeys and writeBehindMaxBytes, beyond which the write waits
 * for its copy). A copy that fails is recorded for repair (copied again from
 * the primary in the background), never failed to the caller. A key with a
 * copy pending is read from the side that has the write and is left out of
 * shadow comparisons. The primary is `from`, except during cutover for the
 * keys whose bucket (FNV-1a of the key, 0-99) is below the step's
 * percentage, which are read from and written first to `to`. Shadow reads
 * (a share of reads, from the shadow phase on) read the other side too and
 * compare. Rollback thresholds on `to`'s error rate, p99 latency and the
 * shadow diff are checked four times a second: crossing one sends every key
 * back to `from` at once (locally) and records why in the config store
 * (every instance follows).
 *
 * Copies pending in a process that dies are lost; every process serving the
 * namespace holds a writer lease in the config store (holdLease below), and
 * an expired one makes another instance request a reconcile pass
 * (./reconcile.ts, reconcileKey below) that finish waits for.
 */
import type { Bytes, IdempotencyToken, KeyValueStore, KvRecord, Once, ScanPage, SetOptions } from "../backends/driver.js";
import type { Clock } from "../core/clock.js";
import { PrismError } from "../core/errors.js";
import { Backfill, INSTANCE_ID } from "./backfill.js";
import { Reconcile } from "./reconcile.js";
import { KeyValueByKey } from "../backends/common/kv-by-key.js";
import { Window } from "./monitor.js";
import { RepairJournal } from "./repair-journal.js";
import { WriteBehind, type SecondaryOp, type Side } from "./write-behind.js";
import { DEFAULT_MIGRATION, WRITER_LEASE, isDryRun, keyBucket, type MigrationHost, type MigrationSettings, type MigrationState, type MigrationStats } from "./types.js";

type Log = (level: "info" | "warn" | "error", msg: string) => void;

/**
 * Pending repairs by namespace, outliving one runtime: a phase change re-applies
 * the namespace (a new store), and a key recorded for repair must stay recorded.
 */
const REPAIRS = new Map<string, Map<string, "to" | "from">>();

/** Secondary writes not applied yet, by namespace, outliving one runtime for the same reason (a phase change must not lose or reorder them). */
const WRITE_BEHIND = new Map<string, WriteBehind>();

/**
 * This process's writer lease per namespace (types.ts WRITER_LEASE), held while any migrating store of
 * the namespace is open (a phase change opens the next before or after closing the previous one).
 * Lease writes run one at a time, in order, so a refresh never lands after the delete that followed it.
 */
const LEASES = new Map<string, { stores: number; timer: ReturnType<typeof setInterval> | undefined; chain: Promise<void>; host: MigrationHost; failing: boolean }>();

/** Takes a hold on the namespace's writer lease; the returned function lets go (clean: delete the lease, else let it expire). */
function holdLease(namespace: string, host: MigrationHost, log: Log): (clean: boolean) => Promise<void> {
  let l = LEASES.get(namespace);
  if (!l) LEASES.set(namespace, (l = { stores: 0, timer: undefined, chain: Promise.resolve(), host, failing: false }));
  const lease = l;
  lease.host = host;
  const put = (alive: boolean): Promise<void> =>
    (lease.chain = lease.chain.then(async () => {
      try {
        await lease.host.writerLease(namespace, INSTANCE_ID, alive);
        lease.failing = false;
      } catch (e) {
        // Also a control plane not up yet (a runtime applied during its start): the next refresh.
        if (!lease.failing) log("warn", `migration ${namespace}: could not ${alive ? "refresh" : "delete"} this process's writer lease: ${(e as Error).message}`);
        lease.failing = true;
      }
    }));
  if (lease.stores++ === 0) {
    void put(true);
    lease.timer = setInterval(() => void put(true), WRITER_LEASE.refreshMs);
    lease.timer.unref?.();
  }
  let held = true;
  return async (clean) => {
    if (!held) return;
    held = false;
    if (--lease.stores > 0) return;
    clearInterval(lease.timer);
    lease.timer = undefined;
    if (clean) await put(false);
  };
}

/** How long close() waits for pending secondary writes before it lets them finish in the background. */
const FLUSH_TIMEOUT_MS = 10_000;

/** Unavailable, timed out or not a Prism answer at all: worth trying the other side. Refusals (CAS, bad input) are answers. */
function transient(e: unknown): boolean {
  if (!(e instanceof PrismError)) return true;
  return e.code === 14 || e.code === 4 || e.code === 13;
}

/** Fewer calls than this in the window: too few to judge a rate or a p99. */
const MIN_SAMPLES = 20;

/**
 * The options of a copy of `key` from `src` to `dst`: the key's remaining TTL on `src` (read right
 * after its value), so a copied key expires when the original does instead of living forever on `dst`.
 * "gone": the key expired (or was deleted) between the two reads: nothing to copy.
 */
async function copyOptions(src: KeyValueStore, dst: KeyValueStore, key: string, extra: SetOptions = {}): Promise<SetOptions | "gone"> {
  if (!src.ttl || !dst.ttl) return extra;
  const t = await src.ttl(key);
  if (t === null) return "gone";
  return t.ttlMs === null ? extra : t.ttlMs > 0 ? { ...extra, ttlMs: t.ttlMs } : "gone";
}

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
    fromErrorRate: 0,
    servedByTo: 0,
    servedByFrom: 0,
    rollbacks: 0,
  };
  private readonly window: Window;
  /** Keys whose secondary write failed: key → which side must be brought up to date (kept across phase changes). */
  private readonly repairs: Map<string, "to" | "from">;
  /** Secondary writes queued or in flight (kept across phase changes). */
  private readonly wb: WriteBehind;
  /** 0: every write waits for its secondary. */
  private readonly wbMax: number;
  private rolledBack: boolean;
  private readonly timers: ReturnType<typeof setInterval>[] = [];
  private readonly backfill: Backfill | undefined;
  private readonly reconcile: Reconcile | undefined;
  private readonly releaseLease: ((clean: boolean) => Promise<void>) | undefined;
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
    if (!repairs) REPAIRS.set(namespace, (repairs = new RepairJournal(namespace))); // durable record of the keys: ./repair-journal.ts
    this.repairs = repairs;
    this.wbMax = settings.writeBehindMaxKeys ?? DEFAULT_MIGRATION.write_behind_max_keys;
    let wb = WRITE_BEHIND.get(namespace);
    const maxBytes = settings.writeBehindMaxBytes ?? DEFAULT_MIGRATION.write_behind_max_bytes;
    if (!wb) WRITE_BEHIND.set(namespace, (wb = new WriteBehind(this.wbMax, maxBytes)));
    wb.maxKeys = this.wbMax;
    wb.maxBytes = maxBytes;
    this.wb = wb;
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
      this.backfill = new Backfill(namespace, from, to, settings.backfillRps, host, clock, log, (k) => this.backfillKey(k));
      this.backfill.start();
    }
    if (host) {
      // Lost-write guard: a process that dies with copies pending stops refreshing its lease; another
      // instance sees it expire and requests a reconcile (src/control/agent.ts), which every store runs.
      this.releaseLease = holdLease(namespace, host, log);
      if (from.scan && to.scan) {
        this.reconcile = new Reconcile(namespace, from, to, settings.backfillRps, host, clock, log, (k) => this.reconcileKey(k));
        this.reconcile.start();
      } else log("warn", `migration ${namespace}: a backend cannot scan, so a reconcile after a writer died cannot run (finish stays refused while one is requested)`);
    }
  }

  /**
   * The reconcile pass's step for one key (./reconcile.ts): when the other side differs from the key's
   * primary, copy the primary over, queued like a write (writes acknowledged meanwhile apply after it),
   * re-reading the primary and copying again while it changed. True when it wrote.
   */
  private async reconcileKey(key: string): Promise<boolean> {
    const viaTo = this.toServes(key);
    const primary = viaTo ? this.to : this.from;
    const other = viaTo ? this.from : this.to;
    const [p, o] = await Promise.all([primary.get(key), other.get(key)]);
    if (sameValue(p, o)) return false;
    const side: Side = viaTo ? "from" : "to";
    const ok = await this.queueCopy(key, side, primary, other);
    if (!ok) throw new Error(`could not bring key ${JSON.stringify(key.slice(0, 200))} up to date on ${side}`);
    return true;
  }

  /**
   * The backfill's step for one key (./backfill.ts): a copy from `from` to `to` queued on the key's
   * write-behind line like a client write's copy, so it is ordered with them: a client write
   * acknowledged before the copy runs has its copy land first (the copy then finds the key on `to`), one
   * acknowledged after has its copy queued behind it (it lands after). The copy reads `from` when it
   * runs (not the scanned value, which may be older) and writes it if-absent: a key already on `to`
   * was put there by a copy of a client write, which is at least as new; a key with a client write's copy
   * still pending is left to it. Another process's writes
   * are not on this line: after writing, `from` is read again and followed while it changed (as the
   * repairs do), which leaves the per-process limit the README states. True when it wrote.
   */
  private async backfillKey(key: string): Promise<boolean> {
    // A client write's copy still to land: it carries `from`'s state as of that write, and later writes queue behind it.
    // (Queued behind it, this copy would replace a waiting one, dropping its TTL or, finding the key there, its value.)
    if (this.wb.targets(key, "to")) return false;
    let wrote = false;
    let error: unknown;
    const ok = await this.wb.push(
      key,
      {
        side: "to",
        keyed: false,
        bytes: key.length,
        run: async () => {
          let rec = await this.from.get(key);
          if (rec === null) return; // deleted since the scan: the client's delete (and its copy) stand
          const opts = await copyOptions(this.from, this.to, key, { ifAbsent: true });
          if (opts === "gone") return; // expired meanwhile
          try {
            await this.to.set(key, rec.value, opts);
          } catch (e) {
            if ((e as { reason?: string }).reason === "PRISM_ERR_CAS_CONFLICT") return; // a client's copy got there first: it is newer
            throw e;
          }
          wrote = true;
          for (let tries = 0; tries < 4; tries++) {
            const again = await this.from.get(key);
            if (sameValue(again, rec)) break;
            rec = again;
            const o = rec ? await copyOptions(this.from, this.to, key) : "gone";
            if (rec && o !== "gone") await this.to.set(key, rec.value, o);
            else await this.to.delete(key);
          }
        },
        settle: (_ok, e) => (error = e),
      },
      true,
    )!;
    if (!ok) throw error ?? new Error(`could not copy key ${JSON.stringify(key.slice(0, 200))} to ${this.settings.to}`);
    return wrote;
  }

  /** The percentage of keys `to` serves now. */
  get cutoverPct(): number {
    if (this.state.phase !== "cutover" || this.rolledBack || isDryRun(this.settings, this.state)) return 0;
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
    let r: T;
    try {
      r = await f();
    } catch (e) {
      // A refusal (CAS, bad input) is an answer, not a failure of `from`.
      this.window.from(performance.now() - t0, !transient(e));
      throw e;
    }
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
    // A secondary write still to land on the side that serves the key: that side lags, the other has the write.
    if (this.wb.size !== 0 && this.wb.targets(key, viaTo ? "to" : "from")) viaTo = !viaTo;
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
    if ((this.state.phase === "shadow" || this.state.phase === "cutover") && Math.random() * 100 < this.settings.shadowReadPct && !this.repairs.has(key) && !this.wb.has(key)) {
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
        match = sameValue(a, b) || this.repairs.has(key) || this.wb.has(key);
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

  /**
   * The key's primary takes the write (the caller's answer); the other side's
   * copy is queued behind the key's earlier copies (write-behind). `secondary`
   * builds that copy from the primary's result (undefined: nothing to copy);
   * `ttl` turns the caller's TTL into what is left of it when the copy runs.
   */
  private async write<T>(
    key: string,
    primaryCall: (s: KeyValueStore) => Promise<T>,
    secondary: (r: T) => ((s: KeyValueStore, ttl: (ms: number | undefined) => number | undefined) => Promise<unknown>) | undefined,
    keyed: boolean,
    valueBytes: number,
    /** A plain Set without TTL (its value) or Delete (null): the copy may share a batch call with other keys'. */
    plain?: Bytes | null,
  ): Promise<T> {
    let viaTo = this.toServes(key);
    // An older copy still to land on this write's primary would overwrite it there: let it land first (a cutover step or rollback moved the key).
    if (this.wb.size !== 0 && this.wb.targets(key, viaTo ? "to" : "from")) await this.wb.clear(key, viaTo ? "to" : "from");
    let r: T;
    if (viaTo) {
      try {
        r = await this.timedTo(() => primaryCall(this.to));
      } catch (e) {
        if (!transient(e)) throw e;
        // `to` does not answer: `from` takes the write as primary; the copy to `to` is queued like any (recorded for repair if it fails too).
        viaTo = false;
        if (this.wb.targets(key, "from")) await this.wb.clear(key, "from");
        r = await this.timedFrom(() => primaryCall(this.from));
      }
    } else r = this.comparing ? await this.timedFrom(() => primaryCall(this.from)) : await primaryCall(this.from);
    const copy = secondary(r);
    if (copy === undefined) return r;
    const side: Side = viaTo ? "from" : "to";
    const ackedAt = this.clock.now();
    const ttl = (ms: number | undefined) => (ms ? Math.max(1, ms - (this.clock.now() - ackedAt)) : ms);
    const target = side === "to" ? this.to : this.from;
    const call = side === "to" ? <U>(f: () => Promise<U>) => this.timedTo(f) : async <U>(f: () => Promise<U>): Promise<U> => f();
    const op: SecondaryOp = {
      side,
      keyed,
      bytes: key.length + valueBytes,
      run: () => call(() => copy(target, ttl)),
      batch: plain !== undefined && (plain === null ? target.batchDelete : target.batchSet) ? { store: target, value: plain, call } : undefined,
      settle: (ok, e) => this.settled(key, side, ok, e),
    };
    const wait = this.wb.push(key, op, this.wbMax === 0);
    if (wait !== undefined) await wait;
    return r;
  }

  /** A queued copy ran: on success the key needs no repair; on failure it is recorded for one. */
  private settled(key: string, side: Side, ok: boolean, e: unknown): void {
    if (ok) {
      if (this.repairs.delete(key)) this.stats.repairsPending = this.repairs.size;
      return;
    }
    // A refusal the primary accepted (CAS) is not the other side's to make: copy it over instead.
    this.stats.dualWriteErrors++;
    this.repairs.set(key, side);
    this.stats.repairsPending = this.repairs.size;
    if (!(e instanceof PrismError) || this.stats.dualWriteErrors % 1000 === 1) this.log("warn", `migration ${this.namespace}: write to ${side} failed, recorded for repair: ${(e as Error)?.message}`);
  }

  set(key: string, value: Bytes, opts: SetOptions): Promise<number> {
    // The other side takes the value as the primary stored it (no CAS of its own: the primary decided).
    return this.write(key, (s) => s.set(key, value, opts), () => (s, ttl) => s.set(key, value, { ttlMs: ttl(opts.ttlMs) }), false, value.length, opts.ttlMs ? undefined : value);
  }

  delete(key: string): Promise<boolean> {
    return this.write(key, (s) => s.delete(key), () => (s) => s.delete(key), false, 0, null);
  }

  /**
   * keyvalue_idempotent (both sides have it): the key's primary runs the keyed
   * write; a write that ran (not a replay) is copied to the other side with the
   * same idempotency key, so both sides hold the record and a retry finds it
   * whichever side is the key's primary by then. A key first used before the
   * migration started is known to `from` only (README: Idempotency keys).
   * The copy is queued like any, in order, but never coalesced away (the
   * other side must record the token).
   */
  setOnce?: (key: string, value: Bytes, opts: SetOptions, token: IdempotencyToken) => Promise<Once<number>>;
  deleteOnce?: (key: string, token: IdempotencyToken) => Promise<Once<boolean>>;

  private keyedSet(key: string, value: Bytes, opts: SetOptions, token: IdempotencyToken): Promise<Once<number>> {
    return this.write(
      key,
      (s) => s.setOnce!(key, value, opts, token),
      (once) => (once.replayedHash === undefined ? (s, ttl) => s.setOnce!(key, value, { ttlMs: ttl(opts.ttlMs) }, token) : undefined),
      true,
      value.length + token.key.length,
    );
  }

  private keyedDelete(key: string, token: IdempotencyToken): Promise<Once<boolean>> {
    return this.write(
      key,
      (s) => s.deleteOnce!(key, token),
      (once) => (once.replayedHash === undefined ? (s) => s.deleteOnce!(key, token) : undefined),
      true,
      token.key.length,
    );
  }


  scan?: (prefix: string, cursor: string, limit: number, keysOnly: boolean) => Promise<ScanPage>;

  /**
   * Brings the lagging side of each recorded key up to date from its primary.
   * The copy is queued like a write (writes acknowledged meanwhile apply after
   * it); a key with a copy pending is left to it (it succeeds, or records the
   * key again).
   */
  private async repair(): Promise<void> {
    if (this.closed || this.repairs.size === 0) return;
    for (const [key, side] of [...this.repairs].slice(0, 200)) {
      if (this.wb.has(key)) continue;
      const src = side === "to" ? this.from : this.to;
      const dst = side === "to" ? this.to : this.from;
      const ok = await this.queueCopy(key, side, src, dst);
      if (!ok) break; // still down: try again later
      if (this.repairs.get(key) === side) this.repairs.delete(key);
      this.stats.repaired++;
    }
    this.stats.repairsPending = this.repairs.size;
  }

  /**
   * Queues a copy of `key` from `src` to `dst` (side `side`) like a write, so writes acknowledged
   * meanwhile apply after it; resolves false when the copy failed. Another process may write the key
   * between our read and our copy (its own copy could then land first and ours overwrite it with an
   * older value): the source is read again after copying, and copied again while it changed
   * (converges once writes to the key pause; a few tries at most).
   */
  private queueCopy(key: string, side: Side, src: KeyValueStore, dst: KeyValueStore): Promise<boolean> {
    return this.wb.push(
      key,
      {
        side,
        keyed: false,
        bytes: key.length,
        run: async () => {
          let rec = await src.get(key);
          for (let tries = 0; ; tries++) {
            const o = rec ? await copyOptions(src, dst, key) : "gone";
            if (rec && o !== "gone") await dst.set(key, rec.value, o);
            else await dst.delete(key);
            const again = await src.get(key);
            if (sameValue(again, rec) || tries >= 4) break;
            rec = again;
          }
        },
        settle: () => {},
      },
      true,
    )!;
  }

  /** The rollback thresholds over the window. */
  private check(): void {
    if (this.closed || this.rolledBack) return;
    const w = this.window.summary();
    Object.assign(this.stats, { diffPct: w.diffPct, toErrorRate: w.errorRate, toP99Ms: w.p99Ms, fromP99Ms: w.fromP99Ms, fromErrorRate: w.fromErrorRate });
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
    // Rollbacks: the stored count survives the re-apply a rollback causes; one decided here counts until the store has it.
    const rollbacks = (this.state.rollbacks ?? 0) + (this.rolledBack && !this.state.rolledBack ? 1 : 0);
    return { ...this.stats, rollbacks, reconcile: this.reconcile?.progress, diffPct: w.diffPct, toErrorRate: w.errorRate, toP99Ms: w.p99Ms, fromP99Ms: w.fromP99Ms, fromErrorRate: w.fromErrorRate, repairsPending: this.repairs.size, writeBehindPending: this.wb.size };
  }

  get isRolledBack(): boolean {
    return this.rolledBack;
  }

  get backfillProgress() {
    return this.backfill?.progress;
  }

  get reconcileProgress() {
    return this.reconcile?.progress;
  }

  /** Resolves once every secondary write queued so far (on this namespace, by this store or its predecessors) ran. */
  flush(): Promise<void> {
    return this.wb.flush();
  }

  /** Stops the timers and the backfill and waits for the queued secondary writes (at most FLUSH_TIMEOUT_MS; later ones finish in the background). */
  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    await this.backfill?.stop();
    await this.reconcile?.stop();
    if (this.wb.size === 0) {
      await this.releaseLease?.(true);
      return;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<boolean>((r) => {
      timer = setTimeout(() => r(false), FLUSH_TIMEOUT_MS);
      timer.unref?.();
    });
    const flushed = await Promise.race([this.wb.flush().then(() => true), timeout]);
    clearTimeout(timer);
    if (!flushed) this.log("warn", `migration ${this.namespace}: ${this.wb.size} key(s) still have a secondary write in flight after ${FLUSH_TIMEOUT_MS} ms; they finish in the background (a failure is recorded for repair)`);
    // Copies still pending: the lease is left to expire (not deleted), so a reconcile follows should they never land.
    await this.releaseLease?.(flushed);
  }
}
