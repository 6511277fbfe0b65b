/**
 * The schema Prism keeps in PostgreSQL (one set of tables per configured
 * schema, every row keyed by namespace), its migration, result type parsing
 * and the mapping of pg failures to Prism errors.
 */
import pg from "pg";
import { errors, PrismError } from "../../core/errors.js";
import { IDEMPOTENCY_MIGRATION } from "./idempotency.js";

/** A double-quoted identifier (schema names are validated, this is belt and braces). */
export function ident(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * Migrations, in order: index i brings the schema to version i + 1. Never edit
 * a shipped step; append a new one. `S` is the quoted schema name.
 */
const MIGRATIONS: ((S: string) => string)[] = [
  (S) => `
CREATE TABLE IF NOT EXISTS ${S}.kv (
  ns text NOT NULL,
  key text COLLATE "C" NOT NULL,
  value bytea NOT NULL,
  version bigint NOT NULL,
  expires_at bigint,
  PRIMARY KEY (ns, key)
);
CREATE INDEX IF NOT EXISTS kv_expiry ON ${S}.kv (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS ${S}.queue (
  id bigserial PRIMARY KEY,
  ns text NOT NULL,
  queue text NOT NULL,
  payload bytea NOT NULL,
  attributes jsonb,
  enqueued_at bigint NOT NULL,
  visible_at bigint NOT NULL,
  delivery_count integer NOT NULL DEFAULT 0,
  receipt text
);
CREATE INDEX IF NOT EXISTS queue_visible ON ${S}.queue (ns, queue, visible_at, id);

CREATE TABLE IF NOT EXISTS ${S}.stream_meta (
  ns text NOT NULL,
  stream text NOT NULL,
  last_offset bigint NOT NULL,
  PRIMARY KEY (ns, stream)
);
CREATE TABLE IF NOT EXISTS ${S}.stream (
  ns text NOT NULL,
  stream text NOT NULL,
  off bigint NOT NULL,
  payload bytea NOT NULL,
  attributes jsonb,
  ts bigint NOT NULL,
  PRIMARY KEY (ns, stream, off)
);
CREATE TABLE IF NOT EXISTS ${S}.stream_group (
  ns text NOT NULL,
  stream text NOT NULL,
  grp text NOT NULL,
  cursor bigint NOT NULL,
  PRIMARY KEY (ns, stream, grp)
);
CREATE TABLE IF NOT EXISTS ${S}.stream_pending (
  ns text NOT NULL,
  stream text NOT NULL,
  grp text NOT NULL,
  off bigint NOT NULL,
  consumer text NOT NULL,
  delivered_at bigint NOT NULL,
  delivery_count integer NOT NULL,
  PRIMARY KEY (ns, stream, grp, off)
);
CREATE INDEX IF NOT EXISTS stream_pending_idle ON ${S}.stream_pending (ns, stream, grp, delivered_at);
`,
  // 2: keyvalue_outbox. Messages committed with a KeyValue write until the relay has them acknowledged;
  // failed_at: parked (refused for good by the messaging backend), kept for the operator.
  (S) => `
CREATE TABLE IF NOT EXISTS ${S}.outbox (
  id bigserial PRIMARY KEY,
  ns text NOT NULL,
  key text COLLATE "C" NOT NULL,
  topic text NOT NULL,
  payload bytea NOT NULL,
  attributes jsonb,
  created_at bigint NOT NULL,
  sent_at bigint,
  failed_at bigint,
  error text
);
CREATE INDEX IF NOT EXISTS outbox_pending ON ${S}.outbox (ns, id) WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_sent ON ${S}.outbox (ns, sent_at) WHERE sent_at IS NOT NULL;
`,
  // 3: the *_idempotent interfaces' records (idempotency.ts).
  IDEMPOTENCY_MIGRATION,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/**
 * Creates the schema and brings it to SCHEMA_VERSION. Runs under a
 * transaction-scoped advisory lock keyed by the schema name, so Prism
 * processes starting together take turns instead of racing on CREATE.
 */
export async function migrate(client: pg.ClientBase, schema: string): Promise<void> {
  const S = ident(schema);
  await client.query("BEGIN");
  try {
    await client.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [`prism-schema:${schema}`]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${S}`);
    await client.query(`CREATE TABLE IF NOT EXISTS ${S}.schema_version (version integer NOT NULL)`);
    const r = await client.query<{ version: number }>(`SELECT version FROM ${S}.schema_version`);
    const have = r.rows[0]?.version ?? 0;
    if (have > SCHEMA_VERSION) {
      throw errors.unavailable(`postgres schema "${schema}" is at version ${have}, newer than this Prism (${SCHEMA_VERSION})`);
    }
    for (let v = have; v < SCHEMA_VERSION; v++) await client.query(MIGRATIONS[v]!(S));
    if (r.rows.length === 0) await client.query(`INSERT INTO ${S}.schema_version (version) VALUES ($1)`, [SCHEMA_VERSION]);
    else if (have < SCHEMA_VERSION) await client.query(`UPDATE ${S}.schema_version SET version = $1`, [SCHEMA_VERSION]);
    await client.query("COMMIT");
  } catch (e) {
    await client.query("ROLLBACK").catch(() => {});
    throw e;
  }
}

/** bigint (int8) columns arrive as JS numbers: offsets, versions and ms timestamps stay far below 2^53. */
export const types = {
  getTypeParser(oid: number, format?: "text" | "binary") {
    if (oid === 20 && format !== "binary") return (v: string) => Number(v);
    return pg.types.getTypeParser(oid, format as "text");
  },
} as unknown as pg.CustomTypesConfig;

/** SQLSTATE classes meaning "the database is not usable right now" rather than a bug. */
const UNAVAILABLE_STATE = /^(08|53|57|58|40001|40P01|55P03)/;

const CONNECTION_TROUBLE = /connect|terminated|timeout|pool|not queryable|ended/i;

/** Any failure from a pg call → the error the caller sees. */
export function mapError(err: unknown, label: string): unknown {
  if (err instanceof PrismError) return err;
  const code = (err as { code?: unknown })?.code;
  if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code)) {
    if (UNAVAILABLE_STATE.test(code)) return errors.unavailable(label, err);
    // A key or name PostgreSQL cannot store as text (e.g. containing U+0000).
    if (code === "22021" || code === "22P05") return errors.invalidArgument("key", `cannot be stored by PostgreSQL: ${(err as Error).message}`);
    return err;
  }
  // No SQLSTATE: socket errors (ECONNREFUSED, ...), connect timeouts, a
  // connection terminated mid-query, a pool already ended.
  if (typeof code === "string" || CONNECTION_TROUBLE.test((err as Error)?.message ?? "")) return errors.unavailable(label, err);
  return err;
}

/** Attributes are stored as jsonb, NULL when empty (the common case pays nothing). */
export function encodeAttrs(a: Record<string, string>): string | null {
  for (const _ in a) return JSON.stringify(a);
  return null;
}

export function decodeAttrs(a: Record<string, string> | null): Record<string, string> {
  return a ?? {};
}

/** pg serialises Buffers (also inside arrays) as bytea; a plain Uint8Array is wrapped without copying. */
export function buf(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}
