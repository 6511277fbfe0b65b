/**
 * The config store: where namespaces and backend instances applied through
 * Admin live, with a revision that only grows. Every Prism instance pointed at
 * one store converges on its content (src/control/agent.ts polls
 * changesSince and listens to notify()). Implementations: memory (tests,
 * embedders), sqlite (the default: one file in server.data_dir), postgres (a
 * fleet of Prism instances).
 *
 * A write is a change set: its operations commit atomically and share one new
 * revision, strictly greater than every revision committed before it, so
 * "the later revision wins" is the commit order (writers are serialised on
 * the store's revision row).
 */

/** What an entry is: a namespace, a backend instance, or state a later layer keeps (migration cursors). */
export type EntryKind = string;

export interface StoredEntry {
  kind: EntryKind;
  name: string;
  /** The entry's JSON document; null when the entry was deleted (a tombstone, so changesSince reports deletes). */
  spec: unknown | null;
  /** The revision of the change set that last wrote it. */
  revision: number;
}

export interface WriteOp {
  kind: EntryKind;
  name: string;
  /** null: delete. */
  spec: unknown | null;
}

export interface WriteResult {
  /** The change set's revision (unchanged store revision when nothing was written). */
  revision: number;
  /** Per op: false for a delete of an entry that did not exist (nothing written for it). */
  written: boolean[];
}

export interface ConfigStore {
  readonly type: "memory" | "sqlite" | "postgres";
  /** Where it is, credentials masked (logs, banner). */
  readonly description: string;
  /** Live (not deleted) entries and the store's current revision. */
  snapshot(): Promise<{ revision: number; entries: StoredEntry[] }>;
  /** Entries written after `revision` (tombstones included), ascending by revision, and the current revision. */
  changesSince(revision: number): Promise<{ revision: number; changes: StoredEntry[] }>;
  /** Commits the ops atomically under one new revision. */
  write(ops: WriteOp[]): Promise<WriteResult>;
  /**
   * Calls `onChange` soon after another writer commits (postgres: LISTEN/NOTIFY).
   * Optional: sqlite and memory have no push; the agent's periodic revision check covers them.
   * Returns a function that stops listening.
   */
  subscribe?(onChange: () => void): () => void;
  close(): Promise<void>;
}
