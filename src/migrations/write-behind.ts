/**
 * Write-behind for a KeyValue migration's secondary writes
 * (src/migrations/keyvalue.ts): the caller is answered once the key's primary
 * has the write; the copy to the other side is queued here and applied in the
 * background.
 *
 * - Per key, ops apply in the order they were queued (primary-ack order), one
 *   at a time: the head of a key's queue is in flight, the rest wait.
 * - Coalescing: a write queued while its key's tail op waits (is not in
 *   flight) and writes the same side replaces that op, so a hot key costs at
 *   most one op in flight plus one waiting. A keyed (idempotent) op is never
 *   replaced: the other side must record its token, so it waits in line
 *   (a later keyed op may replace a plain one: it carries the newer value).
 * - Bounded: `push` hands back a promise the caller must await (the write
 *   waits for its secondary, as without write-behind) when a new key would
 *   take the number of keys with pending ops past `maxKeys`, when the bytes
 *   the queued ops hold (keys + values) pass `maxBytes`, or when a key
 *   already has an op in flight and one waiting that cannot be replaced.
 *   Memory is then held by waiting callers, never by the queue alone.
 * - Batched: a plain Set without TTL or a Delete may go out together with
 *   other keys' in one batchSet / batchDelete call on the same store (group
 *   commit: at most BATCHES_IN_FLIGHT calls per store in flight, the ops that
 *   became ready meanwhile go in the next, at most BATCH_MAX keys each). A
 *   key has one op in a batch at most (its head), so per-key order holds;
 *   a failed batch fails each of its ops.
 *
 * One instance per namespace lives at module level in keyvalue.ts, so a
 * store re-created on a phase change sees the ops its predecessor queued.
 * Each op carries the store it writes, so it lands where it was meant to
 * even after the namespace's runtime changed.
 */
import type { Bytes, KeyValueStore } from "../backends/driver.js";

export type Side = "to" | "from";

/** Calls on one store in flight for batched ops; the rest wait and go in the next call (one: more ops per call, measured faster on redis → postgres). */
const BATCHES_IN_FLIGHT = 1;
const BATCH_MAX = 256;
/** How long ready ops wait for others to join their batch call. */
const LINGER_MS = 1;

/** A plain Set (value) or Delete (null) that may share one batch call on `store` with other keys' ops. */
export interface Batchable {
  readonly store: KeyValueStore;
  readonly value: Bytes | null;
  /** Wraps the batch call (timing of `to`'s calls): the first op's wrapper is used for the whole batch. */
  readonly call: <T>(f: () => Promise<T>) => Promise<T>;
}

interface Ready {
  key: string;
  op: SecondaryOp;
  done: (error: unknown) => void;
}

/** Batched ops waiting for, or in, a call on one store. */
interface Group {
  sets: Ready[];
  deletes: Ready[];
  inFlight: number;
  scheduled: boolean;
  /** Sets and deletes take turns when both wait (neither starves the other). */
  deletesNext: boolean;
}

export interface SecondaryOp {
  /** The side it writes. */
  readonly side: Side;
  /** An idempotent write whose token the other side must record: never replaced by a later op. */
  readonly keyed: boolean;
  /** What it holds in memory (key + value bytes), counted against maxBytes. */
  readonly bytes: number;
  /** Performs the write (alone). */
  readonly run: () => Promise<unknown>;
  /** Set when it may go out in a batch instead (the store has batchSet / batchDelete). */
  readonly batch?: Batchable;
  /** Bookkeeping once it ran (ok false: it threw `error`). Not called for an op that a later one replaced before it ran. */
  readonly settle: (ok: boolean, error: unknown) => void;
}

interface Entry {
  op: SecondaryOp;
  /** Callers waiting for this entry (backpressure, flush, a primary switch): told whether it succeeded. */
  waiters: ((ok: boolean) => void)[] | undefined;
}

export class WriteBehind {
  /** key → its entries in order; [0] is in flight. Never empty: a key leaves when its last entry ran. */
  private readonly keys = new Map<string, Entry[]>();

  /** Bytes held by queued and in-flight ops. */
  private held = 0;
  private readonly groups = new Map<KeyValueStore, Group>();

  constructor(
    public maxKeys: number,
    public maxBytes: number,
  ) {}

  /** Keys with an op queued or in flight. */
  get size(): number {
    return this.keys.size;
  }

  /** Key and value bytes the queued and in-flight ops hold. */
  get bytes(): number {
    return this.held;
  }

  has(key: string): boolean {
    return this.keys.has(key);
  }

  /** True while an op that writes `side` for `key` has not finished: that side lags for this key. */
  targets(key: string, side: Side): boolean {
    const q = this.keys.get(key);
    if (q === undefined) return false;
    for (const e of q) if (e.op.side === side) return true;
    return false;
  }

  /**
   * Queues `op` behind `key`'s earlier ops. undefined: the caller may answer
   * now. A promise (always when `wait`): the caller waits for this op (or the
   * later one that replaced it) to run; it resolves true when that succeeded.
   */
  push(key: string, op: SecondaryOp, wait = false): Promise<boolean> | undefined {
    let q = this.keys.get(key);
    if (q === undefined) {
      const e: Entry = { op, waiters: undefined };
      this.keys.set(key, (q = [e]));
      this.held += op.bytes;
      const p = wait || this.keys.size > this.maxKeys || this.held > this.maxBytes ? waitFor(e) : undefined;
      void this.pump(key, q);
      return p;
    }
    const tail = q[q.length - 1]!;
    if (q.length > 1 && !tail.op.keyed && tail.op.side === op.side) {
      // Not in flight yet, and this op carries the newer state of the key: it goes instead (waiters now wait for it).
      this.held += op.bytes - tail.op.bytes;
      tail.op = op;
      return wait || this.held > this.maxBytes ? waitFor(tail) : undefined;
    }
    const e: Entry = { op, waiters: undefined };
    q.push(e);
    this.held += op.bytes;
    return wait || q.length > 2 || this.held > this.maxBytes ? waitFor(e) : undefined;
  }

  /** Resolves once no op that writes `side` for `key` is queued or in flight. */
  async clear(key: string, side: Side): Promise<void> {
    for (;;) {
      const q = this.keys.get(key);
      if (q === undefined) return;
      let last: Entry | undefined;
      for (const e of q) if (e.op.side === side) last = e;
      if (last === undefined) return;
      await waitFor(last);
    }
  }

  /** Resolves once every op queued before the call ran (ops queued later may still be pending). */
  async flush(): Promise<void> {
    const ps: Promise<boolean>[] = [];
    for (const q of this.keys.values()) ps.push(waitFor(q[q.length - 1]!));
    await Promise.all(ps);
  }

  private async pump(key: string, q: Entry[]): Promise<void> {
    while (q.length !== 0) {
      const e = q[0]!;
      const op = e.op;
      let ok = true;
      let error: unknown;
      try {
        await (op.batch ? this.batched(key, op, op.batch) : op.run());
      } catch (err) {
        ok = false;
        error = err;
      }
      q.shift();
      this.held -= op.bytes;
      try {
        op.settle(ok, error);
      } catch {
        /* bookkeeping must not stop the key's queue */
      }
      if (e.waiters) for (const w of e.waiters) w(ok);
    }
    this.keys.delete(key);
  }

  /** Runs `op` in the next batch call on its store. */
  private batched(key: string, op: SecondaryOp, b: Batchable): Promise<void> {
    return new Promise((resolve, reject) => {
      let g = this.groups.get(b.store);
      if (g === undefined) this.groups.set(b.store, (g = { sets: [], deletes: [], inFlight: 0, scheduled: false, deletesNext: false }));
      (b.value === null ? g.deletes : g.sets).push({ key, op, done: (e) => (e === undefined ? resolve() : reject(e)) });
      this.kick(b.store, g);
    });
  }

  private kick(store: KeyValueStore, g: Group): void {
    if (g.scheduled || g.inFlight >= BATCHES_IN_FLIGHT) return;
    g.scheduled = true;
    // A millisecond later: the ops that became ready meanwhile go in one call (fewer, fuller calls on `to`).
    setTimeout(() => {
      g.scheduled = false;
      while (g.inFlight < BATCHES_IN_FLIGHT && (g.sets.length !== 0 || g.deletes.length !== 0)) {
        const deletes = g.sets.length === 0 || (g.deletes.length !== 0 && g.deletesNext);
        g.deletesNext = !deletes;
        const batch = (deletes ? g.deletes : g.sets).splice(0, BATCH_MAX);
        const call = batch[0]!.op.batch!.call;
        g.inFlight++;
        const p = deletes
          ? call(() => store.batchDelete!(batch.map((r) => r.key)))
          : call(() => store.batchSet!(batch.map((r) => ({ key: r.key, value: r.op.batch!.value! })), undefined));
        p.then(
          () => {
            for (const r of batch) r.done(undefined);
          },
          (e: unknown) => {
            for (const r of batch) r.done(e ?? new Error("batch call failed"));
          },
        ).finally(() => {
          g.inFlight--;
          if (g.inFlight === 0 && g.sets.length === 0 && g.deletes.length === 0 && !g.scheduled) this.groups.delete(store);
          else this.kick(store, g);
        });
      }
      if (g.inFlight === 0 && g.sets.length === 0 && g.deletes.length === 0) this.groups.delete(store);
    }, LINGER_MS);
  }
}

function waitFor(e: Entry): Promise<boolean> {
  return new Promise((resolve) => (e.waiters ??= []).push(resolve));
}
