/**
 * The durable side of a KeyValue migration's pending repairs.
 *
 * MigratingKeyValueStore (keyvalue.ts) records in a per-namespace map the keys
 * whose write to the other side failed, and its repair loop copies them again
 * from their primary. That map is this class: a Map whose set() also records
 * the key in the config store (kind "migration-repair") and whose delete()
 * (the key repaired, or written to both sides since) removes it there once a
 * whole batch is resolved. Every instance loads the stored batches into its
 * own map (at attach, then every LOAD_MS) and works them off with its usual
 * repair loop, so keys recorded by a process that died are repaired by the
 * others, or by the next process started on the same config store.
 *
 * Cost: nothing on the path of a write that reached both sides (delete() of a
 * key that is not in the map is a Map lookup). A failed write records its key
 * in the next batch; batches are group-committed: at most one config-store
 * write in flight per namespace and process, and every failure seen meanwhile
 * goes in the next one (no fixed delay: an idle journal writes on the next
 * loop turn). A batch is written once and deleted once, never rewritten, so
 * two processes never race on one entry.
 *
 * When is a record durable, and why is that enough? A record is durable one
 * config-store write after the failure was seen, not before the caller's
 * write is acknowledged. The acknowledgement cannot wait for it: the caller's
 * guarantee is the primary's (its write committed there), and a secondary
 * write may complete after the acknowledgement (asynchronous secondary
 * writes), so its failure can be known only later. A process that dies between
 * the failure and the flush loses that record exactly as a process dying with
 * the secondary write still in flight loses it: the window is the same kind
 * and about as short (one store round trip), and awaiting the journal in the
 * acknowledgement would buy nothing for the second case while costing a store
 * write per failed call. What must not happen is the switch to `to` while
 * `to` is behind on a recorded key: finish refuses while the stored journal
 * lists keys behind on `to` (ControlAgent.finishMigration), and a record
 * that could not be written (the config store down too) stays in this
 * process's map, is repaired here as before, and is retried every second.
 * One more case: a key that fails again while a batch of this process
 * already lists it is not written again; if another process deletes that
 * batch meanwhile (it saw the key repaired), this process records the key
 * again at its next look (within LOAD_MS).
 */
import { randomBytes } from "node:crypto";
import type { MigrationHost, RepairBatch, RepairSide } from "./types.js";

type Log = (level: "info" | "warn" | "error", msg: string) => void;

/** How often every instance looks for batches recorded by others. */
const LOAD_MS = 1000;
/** After a failed journal write. */
const RETRY_MS = 1000;
/** A batch's size bounds (its spec is one config-store entry). */
const MAX_KEYS = 500;
const MAX_BYTES = 256 * 1024;

/** This process, in batch ids (unique across processes sharing a store; no "/"). */
const PROCESS = `${process.pid.toString(36)}${randomBytes(4).toString("hex")}`;
const OWN = `${PROCESS}-`;

export class RepairJournal extends Map<string, RepairSide> {
  private static readonly byNamespace = new Map<string, RepairJournal>();

  /** The journal of a namespace, once its migrating store created it. */
  static of(namespace: string): RepairJournal | undefined {
    return RepairJournal.byNamespace.get(namespace);
  }

  private host: MigrationHost | undefined;
  private log: Log = () => {};
  private attached = 0;
  private timer: ReturnType<typeof setInterval> | undefined;
  /** Recorded here, not written yet. */
  private readonly pending = new Map<string, RepairSide>();
  /** Stored batches every key of which was resolved here: to delete. */
  private readonly removals = new Set<string>();
  /** Stored batches this process knows (written here or loaded), with their keys not resolved yet. */
  private readonly batches = new Map<string, Map<string, RepairSide>>();
  /** Key → the known batches listing it. */
  private readonly byKey = new Map<string, Set<string>>();
  /** Flushes and loads run one at a time, in order. */
  private chain: Promise<void> = Promise.resolve();
  private flushQueued = false;
  private retry: ReturnType<typeof setTimeout> | undefined;
  private seq = 0;
  private failing = false;

  constructor(private readonly namespace: string) {
    super();
    RepairJournal.byNamespace.set(namespace, this);
  }

  override set(key: string, side: RepairSide): this {
    super.set(key, side);
    // Already durable with this side in a batch of this process: nothing more to record. (Not in
    // another's: that one may repair the key and delete its batch before this failure is repaired.)
    if (this.byKey?.has(key) && this.durableHere(key, side)) {
      this.pending.delete(key);
      return this;
    }
    this.pending?.set(key, side);
    this.schedule();
    return this;
  }

  override delete(key: string): boolean {
    const had = super.delete(key);
    if (had) this.resolved(key);
    return had;
  }

  override clear(): void {
    for (const k of [...this.keys()]) this.delete(k);
  }

  /**
   * Binds the journal to the control plane of the runtime now serving the
   * namespace (the latest attach wins; a phase change attaches the next
   * runtime before the previous one detaches). Loads the stored batches now
   * and every LOAD_MS while attached.
   */
  attach(host: MigrationHost, log: Log): () => void {
    this.host = host;
    this.log = log;
    this.attached++;
    if (this.timer === undefined) {
      this.timer = setInterval(() => void this.run(() => this.load()), LOAD_MS);
      this.timer.unref?.();
    }
    void this.run(() => this.load());
    this.schedule();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (--this.attached > 0) return;
      clearInterval(this.timer);
      this.timer = undefined;
    };
  }

  /** Keys recorded here and not written to the store yet (tests, status). */
  get unwritten(): number {
    return this.pending.size;
  }

  private resolved(key: string): void {
    this.pending.delete(key);
    const ids = this.byKey.get(key);
    if (!ids) return;
    this.byKey.delete(key);
    for (const id of ids) {
      const b = this.batches.get(id);
      if (!b) continue;
      b.delete(key);
      if (b.size === 0) {
        this.batches.delete(id);
        this.removals.add(id);
      }
    }
    if (this.removals.size) this.schedule();
  }

  private run(f: () => Promise<void>): Promise<void> {
    const p = this.chain.then(f);
    this.chain = p.catch(() => {});
    return p;
  }

  private schedule(): void {
    if (this.host === undefined || this.flushQueued || this.retry !== undefined) return;
    if (!this.pending.size && !this.removals.size) return;
    this.flushQueued = true;
    // The next loop turn: the failures of this turn share one write.
    setImmediate(() => {
      this.flushQueued = false;
      void this.run(() => this.flush());
    });
  }

  private async flush(): Promise<void> {
    const host = this.host;
    if (host === undefined || (!this.pending.size && !this.removals.size)) return;
    const recorded = [...this.pending];
    this.pending.clear();
    const put: RepairBatch[] = [];
    let keys: [string, RepairSide][] = [];
    let bytes = 0;
    for (const e of recorded) {
      if (keys.length >= MAX_KEYS || (keys.length > 0 && bytes + e[0].length > MAX_BYTES)) {
        put.push({ id: `${PROCESS}-${(++this.seq).toString(36)}`, atMs: Date.now(), keys });
        keys = [];
        bytes = 0;
      }
      keys.push(e);
      bytes += e[0].length + 16;
    }
    if (keys.length) put.push({ id: `${PROCESS}-${(++this.seq).toString(36)}`, atMs: Date.now(), keys });
    const remove = [...this.removals];
    this.removals.clear();
    try {
      await host.writeRepairs(this.namespace, put, remove);
      if (this.failing) this.log("info", `migration ${this.namespace}: repair journal written again`);
      this.failing = false;
    } catch (e) {
      // Still repaired here (the map has them); written with the next attempt.
      for (const [k] of recorded) {
        const side = super.get(k);
        if (side !== undefined && !this.pending.has(k)) this.pending.set(k, side);
      }
      for (const id of remove) this.removals.add(id);
      if (!this.failing) this.log("warn", `migration ${this.namespace}: could not record ${recorded.length} key(s) for repair in the config store (${(e as Error).message}); they are repaired by this process, and the record is retried every ${RETRY_MS / 1000} s`);
      this.failing = true;
      this.retry = setTimeout(() => {
        this.retry = undefined;
        this.schedule();
      }, RETRY_MS);
      this.retry.unref?.();
      return;
    }
    for (const b of put) {
      const left = new Map<string, RepairSide>();
      // A key resolved while the batch was being written needs no repair any more.
      for (const [k, side] of b.keys) if (super.has(k)) left.set(k, side);
      if (left.size === 0) {
        this.removals.add(b.id);
        continue;
      }
      this.track(b.id, left);
    }
    this.schedule();
  }

  private track(id: string, keys: Map<string, RepairSide>): void {
    this.batches.set(id, keys);
    for (const k of keys.keys()) {
      let ids = this.byKey.get(k);
      if (!ids) this.byKey.set(k, (ids = new Set()));
      ids.add(id);
    }
  }

  private untrack(id: string): void {
    const b = this.batches.get(id);
    if (!b) return;
    this.batches.delete(id);
    for (const k of b.keys()) {
      const ids = this.byKey.get(k);
      ids?.delete(id);
      if (ids?.size === 0) this.byKey.delete(k);
    }
  }

  /** Takes in the batches other processes stored (their keys join this map and its repair loop). */
  private async load(): Promise<void> {
    const host = this.host;
    if (host === undefined) return;
    let stored: RepairBatch[] | null;
    try {
      stored = await host.loadRepairs(this.namespace);
    } catch {
      return; // the config store does not answer: the next look
    }
    if (stored === null) return;
    const seen = new Set<string>(stored.map((b) => b.id));
    const fresh = stored.filter((b) => !this.batches.has(b.id) && !this.removals.has(b.id)).sort((a, b) => a.atMs - b.atMs);
    // A key already pending here keeps its side (this process saw it fail, or loaded it before);
    // among the batches taken in now, the latest record of a key wins (its side is where the last acknowledged write is not).
    const takenNow = new Set<string>();
    for (const b of fresh) {
      const keys = new Map<string, RepairSide>(b.keys);
      for (const [k, side] of keys) {
        if (super.has(k) && !takenNow.has(k)) continue;
        super.set(k, side);
        takenNow.add(k);
      }
      this.track(b.id, keys);
    }
    // Deleted from the store (another process saw every key of it repaired): forget it. Its keys still
    // here are repaired here once more, harmlessly; one of this process's own is recorded again, as
    // this process may have seen it fail again since (and skipped recording it, as already durable).
    for (const [id, keys] of [...this.batches]) {
      if (seen.has(id)) continue;
      this.untrack(id);
      if (!id.startsWith(OWN)) continue;
      for (const k of keys.keys()) {
        const side = super.get(k);
        if (side !== undefined && !this.durableHere(k, side)) this.pending.set(k, side);
      }
    }
    this.schedule();
  }

  /** Whether a batch of this process, still stored, lists the key with this side. */
  private durableHere(key: string, side: RepairSide): boolean {
    for (const id of this.byKey.get(key) ?? []) if (id.startsWith(OWN) && this.batches.get(id)?.get(key) === side) return true;
    return false;
  }
}
