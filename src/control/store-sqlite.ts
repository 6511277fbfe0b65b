/**
 * The config store in one SQLite file (the default: server.data_dir), which
 * several Prism processes on one machine may share. Writes run in BEGIN
 * IMMEDIATE transactions: the file's write lock serialises writers, so each
 * reads the latest committed revision and commits revision + 1, and revision
 * order is commit order. Reads run in one (deferred) transaction, a
 * consistent WAL snapshot of entries and revision.
 *
 * Durability as in src/backends/sqlite/db.ts: journal_mode=WAL with
 * synchronous=FULL, so an acknowledged write has been fsynced. busy_timeout
 * 5000: a writer waits up to 5 s for another process's transaction (this
 * blocks the event loop meanwhile; config writes are rare and short).
 *
 * No subscribe(): SQLite has no push; the agent's periodic revision check
 * notices other processes' writes.
 */
import { mkdirSync } from "node:fs";
import { dirname, isAbsolute } from "node:path";
import type Sqlite from "better-sqlite3";
import { requireCjs } from "../core/require-cjs.js";
import type { ConfigStore, StoredEntry, WriteOp, WriteResult } from "./store.js";
import { checkRevision, encodeOps, storeError, type EncodedOp } from "./stores.js";

const Database = requireCjs("better-sqlite3") as typeof import("better-sqlite3");

const BUSY_TIMEOUT_MS = 5_000;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS prism_config_entries (
  kind TEXT NOT NULL,
  name TEXT NOT NULL,
  spec TEXT NULL,
  revision INTEGER NOT NULL,
  PRIMARY KEY (kind, name)
);
CREATE INDEX IF NOT EXISTS prism_config_entries_revision ON prism_config_entries (revision);
CREATE TABLE IF NOT EXISTS prism_config_revision (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  revision INTEGER NOT NULL
);
INSERT OR IGNORE INTO prism_config_revision (id, revision) VALUES (1, 0);
`;

interface Row {
  kind: string;
  name: string;
  spec: string | null;
  revision: number;
}

const entryOf = (r: Row): StoredEntry => ({ kind: r.kind, name: r.name, spec: r.spec === null ? null : JSON.parse(r.spec), revision: r.revision });

export interface SqliteConfigStoreOptions {
  /** Absolute path of the database file; its directory is created when missing. */
  path: string;
}

export class SqliteConfigStore implements ConfigStore {
  readonly type = "sqlite" as const;
  readonly description: string;
  private readonly db: Sqlite.Database;
  private closed = false;
  private readonly sql: {
    revision: Sqlite.Statement<[], number>;
    live: Sqlite.Statement<[], Row>;
    since: Sqlite.Statement<[number], Row>;
    put: Sqlite.Statement<[string, string, string, number]>;
    del: Sqlite.Statement<[number, string, string]>;
    setRevision: Sqlite.Statement<[number]>;
  };
  private readonly readSnapshot: () => { revision: number; entries: StoredEntry[] };
  private readonly readChanges: (since: number) => { revision: number; changes: StoredEntry[] };
  private readonly commit: Sqlite.Transaction<(ops: EncodedOp[]) => WriteResult>;

  /** Opens (creating when missing) the file and its tables; throws when it cannot. */
  constructor(opts: SqliteConfigStoreOptions) {
    const path = opts?.path;
    this.description = `sqlite ${path}`;
    if (typeof path !== "string" || !isAbsolute(path)) {
      throw new Error(`config store ${this.description}: path must be an absolute file path`);
    }
    let db: Sqlite.Database | undefined;
    try {
      mkdirSync(dirname(path), { recursive: true });
      db = new Database(path, { timeout: BUSY_TIMEOUT_MS });
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = FULL");
      const schemaDb = db;
      schemaDb.transaction(() => schemaDb.exec(SCHEMA)).immediate();
    } catch (e) {
      try {
        db?.close();
      } catch {
        // already failing: the open error is the one to report
      }
      throw storeError(this.description, e);
    }
    this.db = db;
    const sql = {
      revision: db.prepare<[], number>("SELECT revision FROM prism_config_revision WHERE id = 1").pluck(),
      live: db.prepare<[], Row>("SELECT kind, name, spec, revision FROM prism_config_entries WHERE spec IS NOT NULL ORDER BY kind, name"),
      since: db.prepare<[number], Row>("SELECT kind, name, spec, revision FROM prism_config_entries WHERE revision > ? ORDER BY revision, kind, name"),
      put: db.prepare<[string, string, string, number]>(
        "INSERT INTO prism_config_entries (kind, name, spec, revision) VALUES (?, ?, ?, ?) " +
          "ON CONFLICT (kind, name) DO UPDATE SET spec = excluded.spec, revision = excluded.revision",
      ),
      del: db.prepare<[number, string, string]>("UPDATE prism_config_entries SET spec = NULL, revision = ? WHERE kind = ? AND name = ? AND spec IS NOT NULL"),
      setRevision: db.prepare<[number]>("UPDATE prism_config_revision SET revision = ? WHERE id = 1"),
    };
    this.sql = sql;
    const current = (): number => this.revisionNow();
    this.readSnapshot = db.transaction(() => ({ revision: current(), entries: sql.live.all().map(entryOf) }));
    this.readChanges = db.transaction((since: number) => ({ revision: current(), changes: sql.since.all(since).map(entryOf) }));
    this.commit = db.transaction((ops: EncodedOp[]): WriteResult => {
      const previous = current();
      const next = previous + 1;
      let any = false;
      const written = ops.map((op) => {
        const w = op.json === null ? sql.del.run(next, op.kind, op.name).changes > 0 : (sql.put.run(op.kind, op.name, op.json, next), true);
        any ||= w;
        return w;
      });
      if (!any) return { revision: previous, written };
      sql.setRevision.run(next);
      return { revision: next, written };
    });
  }

  private check(): void {
    if (this.closed) throw new Error(`config store ${this.description}: closed`);
  }

  async snapshot(): Promise<{ revision: number; entries: StoredEntry[] }> {
    this.check();
    try {
      return this.readSnapshot();
    } catch (e) {
      throw storeError(this.description, e);
    }
  }

  async changesSince(revision: number): Promise<{ revision: number; changes: StoredEntry[] }> {
    this.check();
    const since = checkRevision(revision, this.description);
    try {
      return this.readChanges(since);
    } catch (e) {
      throw storeError(this.description, e);
    }
  }

  async write(ops: WriteOp[]): Promise<WriteResult> {
    this.check();
    const encoded = encodeOps(ops, this.description);
    try {
      if (encoded.length === 0) return { revision: this.revisionNow(), written: [] };
      return this.commit.immediate(encoded);
    } catch (e) {
      throw storeError(this.description, e);
    }
  }

  private revisionNow(): number {
    const r = this.sql.revision.get();
    if (r === undefined) throw new Error("the revision row of prism_config_revision is missing");
    return r;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      this.db.close();
    } catch (e) {
      throw storeError(this.description, e);
    }
  }
}
