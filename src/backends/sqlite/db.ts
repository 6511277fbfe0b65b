/**
 * Opening the SQLite file: pragmas, the schema (one set of tables per file,
 * every row keyed by namespace) and the mapping of SQLite failures to Prism
 * errors.
 *
 * Durability: journal_mode=WAL with synchronous=FULL by default, so an
 * acknowledged write has been fsynced to the WAL and survives power loss, not
 * only a process crash. synchronous=NORMAL (option `synchronous: normal`)
 * skips that fsync: still safe against SIGKILL (the WAL is in the OS page
 * cache), but the last commits can be lost on power failure.
 */
import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { errors, PrismError } from "../../core/errors.js";

export type Db = Database.Database;
/** A prepared statement taking named parameters P and returning rows R. */
export type Stmt<P extends object, R = unknown> = Database.Statement<[P], R>;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS prism_kv (
  ns TEXT NOT NULL,
  key TEXT NOT NULL COLLATE BINARY,
  value BLOB NOT NULL,
  version INTEGER NOT NULL,
  expires_at INTEGER,
  PRIMARY KEY (ns, key)
);
CREATE INDEX IF NOT EXISTS prism_kv_expiry ON prism_kv (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS prism_queue (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ns TEXT NOT NULL,
  queue TEXT NOT NULL,
  payload BLOB NOT NULL,
  attributes TEXT,
  enqueued_at INTEGER NOT NULL,
  visible_at INTEGER NOT NULL,
  delivery_count INTEGER NOT NULL DEFAULT 0,
  receipt TEXT
);
CREATE INDEX IF NOT EXISTS prism_queue_visible ON prism_queue (ns, queue, visible_at, id);

CREATE TABLE IF NOT EXISTS prism_stream_meta (
  ns TEXT NOT NULL,
  stream TEXT NOT NULL,
  last_offset INTEGER NOT NULL,
  PRIMARY KEY (ns, stream)
);
CREATE TABLE IF NOT EXISTS prism_stream (
  ns TEXT NOT NULL,
  stream TEXT NOT NULL,
  "offset" INTEGER NOT NULL,
  payload BLOB NOT NULL,
  attributes TEXT,
  ts INTEGER NOT NULL,
  PRIMARY KEY (ns, stream, "offset")
);
CREATE TABLE IF NOT EXISTS prism_stream_group (
  ns TEXT NOT NULL,
  stream TEXT NOT NULL,
  grp TEXT NOT NULL,
  cursor INTEGER NOT NULL,
  PRIMARY KEY (ns, stream, grp)
);
CREATE TABLE IF NOT EXISTS prism_stream_pending (
  ns TEXT NOT NULL,
  stream TEXT NOT NULL,
  grp TEXT NOT NULL,
  "offset" INTEGER NOT NULL,
  consumer TEXT NOT NULL,
  delivered_at INTEGER NOT NULL,
  delivery_count INTEGER NOT NULL,
  PRIMARY KEY (ns, stream, grp, "offset")
);
CREATE INDEX IF NOT EXISTS prism_stream_pending_idle ON prism_stream_pending (ns, stream, grp, delivered_at);

-- keyvalue_outbox: messages committed with a KeyValue write, until the relay has them acknowledged.
-- AUTOINCREMENT: ids never go back, even after sent rows are deleted. failed_at: parked (refused for good).
CREATE TABLE IF NOT EXISTS prism_outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ns TEXT NOT NULL,
  key TEXT NOT NULL,
  topic TEXT NOT NULL,
  payload BLOB NOT NULL,
  attributes TEXT,
  created_at INTEGER NOT NULL,
  sent_at INTEGER,
  failed_at INTEGER,
  error TEXT
);
CREATE INDEX IF NOT EXISTS prism_outbox_pending ON prism_outbox (ns, id) WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX IF NOT EXISTS prism_outbox_sent ON prism_outbox (ns, sent_at) WHERE sent_at IS NOT NULL;
`;

export interface OpenOptions {
  path: string;
  busyTimeoutMs: number;
  synchronous: "full" | "normal";
}

export function openDb(o: OpenOptions): Db {
  // The path was confined to server.data_dir (or an allowed path) when the config entered; its folders appear on first use.
  if (o.path !== ":memory:" && o.path !== "") mkdirSync(dirname(o.path), { recursive: true });
  const db = new Database(o.path, { timeout: o.busyTimeoutMs });
  try {
    db.pragma("journal_mode = WAL");
    db.pragma(`synchronous = ${o.synchronous === "normal" ? "NORMAL" : "FULL"}`);
    db.pragma("foreign_keys = OFF");
    db.exec(SCHEMA);
    return db;
  } catch (e) {
    db.close();
    throw e;
  }
}

/** SQLite result codes that mean "the file is not usable right now" rather than a bug. */
const UNAVAILABLE = /^SQLITE_(BUSY|LOCKED|IOERR|FULL|CANTOPEN|READONLY|NOTADB|CORRUPT|PROTOCOL|NOLFS|AUTH)/;

/** Any failure from a SQLite call → the error the caller sees. */
export function mapError(err: unknown, path: string): unknown {
  if (err instanceof PrismError) return err;
  const code = (err as { code?: unknown })?.code;
  if (typeof code === "string" && UNAVAILABLE.test(code)) return errors.unavailable(`sqlite ${path}`, err);
  if (err instanceof TypeError && /database connection is not open/i.test(err.message)) {
    return errors.unavailable(`sqlite ${path}: closed`);
  }
  return err;
}

/** Attributes are stored as JSON text, NULL when empty (the common case pays no parse). */
export function encodeAttrs(a: Record<string, string>): string | null {
  for (const _ in a) return JSON.stringify(a);
  return null;
}

export function decodeAttrs(s: string | null): Record<string, string> {
  return s ? (JSON.parse(s) as Record<string, string>) : {};
}
