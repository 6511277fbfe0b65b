/**
 * Zero-downtime migrations of one slot of a namespace from a backend instance
 * (`from`) to another (`to`). The settings live in the namespace entry
 * (`migration:`); the phase and its progress live in the config store (kind
 * "migration"), so every Prism instance serves the same phase and a restart
 * resumes where it was.
 *
 * KeyValue:  dual_write → backfill → shadow → cutover (1% → … → 100%) → finish
 * Queue:     drain (enqueue to `to`, dequeue `from` first) → finish
 * PubSub / Stream: shadow (copy to `to`, metrics only) → finish
 */
export type MigrationPhase = "dual_write" | "backfill" | "shadow" | "cutover" | "drain";

export interface MigrationSettings {
  /** The slot that moves (default: the namespace's only slot, or its keyvalue slot). */
  slot: string;
  from: string;
  to: string;
  backfillRps: number;
  /** Percent of reads that also read `to` and compare (shadow phase and later). */
  shadowReadPct: number;
  /** Percent of keys served by `to`, step by step. */
  cutoverSteps: number[];
  rollbackOn: { errorRate: number; p99Ms: number; diffPct: number };
  /** The sliding window rollback thresholds are measured over. */
  windowSeconds: number;
  /** Never serve from `to`: dual-write and shadow reads only. */
  dryRun: boolean;
  /**
   * Write-behind bound: at most this many keys with a secondary write pending
   * (queued or in flight); beyond it a write waits for its secondary. 0: every
   * write waits (no write-behind). Default DEFAULT_MIGRATION.write_behind_max_keys.
   */
  writeBehindMaxKeys?: number;
  /** Write-behind bound on the key + value bytes pending secondary writes hold; beyond it a write waits. Default DEFAULT_MIGRATION.write_behind_max_bytes. */
  writeBehindMaxBytes?: number;
}

/** The shared, stored state of a migration (config store kind "migration"). */
export interface MigrationState {
  phase: MigrationPhase;
  /** Index into cutoverSteps (cutover phase). */
  step: number;
  startedAtMs: number;
  /** Set when traffic went back to `from`; cleared by the next advance. */
  rolledBack?: { reason: string; atMs: number; automatic: boolean };
  /** Backfill finished (all keys copied once). */
  backfillDone?: boolean;
  /** Rollbacks so far in this migration (automatic and by the operator): kept here, as a rollback re-applies the namespace (a new runtime, new stats). */
  rollbacks?: number;
  /** Started as a dry run (`prism migrate start --dry-run`): as settings.dryRun, for this run of the migration. */
  dryRun?: boolean;
}

/** Backfill progress, stored apart (kind "migration-cursor") so that saving it does not re-apply the namespace. */
export interface BackfillCursor {
  cursor: string;
  copied: number;
  skipped: number;
  done: boolean;
  /** Which Prism instance runs it, and when it last said so (another takes over after 10 s). */
  owner: string;
  heartbeatMs: number;
}

/** Which side of a KeyValue migration a key must be brought up to date on (its write there failed). */
export type RepairSide = "to" | "from";

/**
 * One batch of a namespace's repair journal (config store kind
 * "migration-repair", name `<namespace>/<id>`): keys whose write to one side
 * failed, written once by the process that saw the failures and deleted once
 * by a process that saw every key in it repaired (src/migrations/repair-journal.ts).
 */
export interface RepairBatch {
  /** Unique per process and batch; no "/". */
  id: string;
  /** When it was written (Date.now of the writer): a key listed twice takes its side from the later batch. */
  atMs: number;
  keys: [string, RepairSide][];
}

/**
 * A KeyValue migration's writer lease (config store kind "migration-writer", name
 * `<namespace>/<instance id>`): every process serving the namespace in migration
 * refreshes it every refreshMs; one not refreshed for expiryMs is a process that
 * died, possibly with write-behind copies pending, so a reconcile is requested.
 * Mutable for tests only.
 */
export const WRITER_LEASE = { refreshMs: 2000, expiryMs: 10_000 };

/** A reconcile asked for (kind "migration-reconcile", name `<namespace>`), written by the instance that saw a writer lease expire. */
export interface ReconcileRequest {
  /** Grows with each request: a cursor of an older generation is superseded (the pass starts again). */
  gen: number;
  atMs: number;
  reason: string;
}

/** A reconcile pass's progress (kind "migration-reconcile-cursor", name `<namespace>`), written by the instance running it. */
export interface ReconcileCursor extends BackfillCursor {
  /** The request it answers. */
  gen: number;
  /** 0: scanning `from`; 1: scanning `to` (keys deleted on their primary). */
  pass: 0 | 1;
}

/** What a migration's runtime asks of the control plane (the agent; a worker reaches it over IPC). */
export interface MigrationHost {
  loadCursor(namespace: string): Promise<BackfillCursor | null>;
  saveCursor(namespace: string, c: BackfillCursor): Promise<void>;
  /** Automatic rollback: stored so every instance follows. */
  rollback(namespace: string, reason: string, automatic: boolean): Promise<unknown>;
  /** The namespace's repair journal as this instance last synced it; null when it has no migration running. */
  loadRepairs(namespace: string): Promise<RepairBatch[] | null>;
  /** New batches and repaired (deleted) batch ids, in one change set; resolves once it is durable in the config store. */
  writeRepairs(namespace: string, put: RepairBatch[], remove: string[]): Promise<void>;
  /** Refreshes (alive) or deletes this process's writer lease on the namespace (WRITER_LEASE). */
  writerLease(namespace: string, instance: string, alive: boolean): Promise<void>;
  /** The pending reconcile request and its cursor; null when none was ever requested (or the migration is not running). */
  loadReconcile(namespace: string): Promise<{ request: ReconcileRequest; cursor: ReconcileCursor | null } | null>;
  saveReconcile(namespace: string, c: ReconcileCursor): Promise<void>;
}

/** Live numbers of a migration on this instance (Admin status, metrics). */
export interface MigrationStats {
  dualWriteErrors: number;
  repairsPending: number;
  repaired: number;
  shadowReads: number;
  shadowMismatches: number;
  /** Over the window: mismatches / shadow reads, percent. */
  diffPct: number;
  toCalls: number;
  toErrors: number;
  toErrorRate: number;
  toP99Ms: number;
  fromP99Ms: number;
  /** Over the window, shadow and cutover phases (where `from`'s calls are timed): failed / calls. */
  fromErrorRate: number;
  servedByTo: number;
  servedByFrom: number;
  /** In this migration (MigrationState.rollbacks), plus one decided here and not stored yet. */
  rollbacks: number;
  /** Keys with a secondary (write-behind) write queued or in flight, this process. */
  writeBehindPending?: number;
  backfill?: BackfillCursor & { estimatedTotal: number };
  /** The reconcile pass this process runs (after a writer died), if any. */
  reconcile?: BackfillCursor & { estimatedTotal: number };
}

export const DEFAULT_MIGRATION = {
  backfill_rps: 1000,
  shadow_read_pct: 10,
  cutover_steps: [1, 10, 50, 100],
  rollback_on: { error_rate: 0.01, p99_ms: 50, diff_pct: 0.1 },
  window_seconds: 30,
  write_behind_max_keys: 10_000,
  write_behind_max_bytes: 64 * 1024 * 1024,
};

/** A dry run never serves from `to`: the migration block says so, or it was started with --dry-run. */
export function isDryRun(settings: MigrationSettings, state: MigrationState | null | undefined): boolean {
  return settings.dryRun || !!state?.dryRun;
}

/** Which of 100 buckets a key falls in (FNV-1a): sticky per key, the same on every instance. */
export function keyBucket(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % 100;
}
