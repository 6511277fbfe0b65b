/**
 * Idempotency records (the *_idempotent interfaces) in table idempotency,
 * written in the transaction of the write they answer for. The first call's
 * INSERT … ON CONFLICT DO NOTHING claims the key: a concurrent duplicate's
 * INSERT waits on that uncommitted row, then (committed) finds it and answers
 * from it, or (rolled back) claims the key itself. NOTIFYs issued by the write
 * go out at COMMIT, so a replay wakes nobody and a rolled-back write nobody.
 * Expired records are replaced on use and swept by the instance's sweeper.
 */
import { errors } from "../../core/errors.js";
import type { IdempotencyToken, Once } from "../driver.js";
import type { PgInstance } from "./instance.js";

/** As sql.ts's ident (not imported: sql.ts imports this module's migration). */
const ident = (name: string): string => `"${name.replace(/"/g, '""')}"`;

/** Migration step: the table (appended to sql.ts MIGRATIONS). */
export const IDEMPOTENCY_MIGRATION = (S: string): string => `
CREATE TABLE IF NOT EXISTS ${S}.idempotency (
  ns text NOT NULL,
  key text NOT NULL,
  hash text NOT NULL,
  result text NOT NULL,
  expires_at bigint NOT NULL,
  PRIMARY KEY (ns, key)
);
CREATE INDEX IF NOT EXISTS idempotency_expiry ON ${S}.idempotency (expires_at);
`;

export type Query = <R extends object = Record<string, unknown>>(name: string, text: string, values: unknown[]) => Promise<{ rows: R[]; rowCount: number | null }>;

export interface Codec<T> {
  enc(v: T): string;
  dec(s: string): T;
}
export const NUM: Codec<number> = { enc: String, dec: Number };
export const STR: Codec<string> = { enc: (s) => s, dec: (s) => s };
export const BOOL: Codec<boolean> = { enc: (b) => (b ? "1" : "0"), dec: (s) => s === "1" };

class OnceSql {
  readonly expire: string;
  readonly claim: string;
  readonly find: string;
  readonly settle: string;
  readonly sweep: string;
  constructor(S: string) {
    const T = `${S}.idempotency`;
    this.expire = `DELETE FROM ${T} WHERE ns = $1 AND key = $2 AND expires_at <= $3::int8`;
    this.claim = `INSERT INTO ${T} (ns, key, hash, result, expires_at) VALUES ($1, $2, $3, '', $4::int8) ON CONFLICT (ns, key) DO NOTHING`;
    this.find = `SELECT hash, result FROM ${T} WHERE ns = $1 AND key = $2`;
    this.settle = `UPDATE ${T} SET result = $3 WHERE ns = $1 AND key = $2`;
    this.sweep = `DELETE FROM ${T} WHERE ctid IN (SELECT ctid FROM ${T} WHERE expires_at <= $1::int8 LIMIT $2)`;
  }
}

const bySchema = new Map<string, OnceSql>();
function sqlOf(schema: string): OnceSql {
  let s = bySchema.get(schema);
  if (!s) bySchema.set(schema, (s = new OnceSql(ident(schema))));
  return s;
}

/** effect(q) in one transaction with the key's record, unless a live record answers. */
export function pgOnce<T>(db: PgInstance, ns: string, token: IdempotencyToken, now: number, codec: Codec<T>, effect: (q: Query) => Promise<T>): Promise<Once<T>> {
  const sql = sqlOf(db.schema);
  return db.tx(async (c) => {
    const q: Query = (name, text, values) => c.query({ name, text, values }) as never;
    await q("idem_expire", sql.expire, [ns, token.key, now]);
    const claimed = await q("idem_claim", sql.claim, [ns, token.key, token.requestHash, now + token.windowMs]);
    if (!claimed.rowCount) {
      const r = await q<{ hash: string; result: string }>("idem_find", sql.find, [ns, token.key]);
      const rec = r.rows[0];
      // Gone between the claim and the look-up: only an expiry sweep does that; the caller may retry.
      if (!rec) throw errors.unavailable(`idempotency record for this key changed concurrently; retry`);
      return { result: codec.dec(rec.result), replayedHash: rec.hash };
    }
    const result = await effect(q);
    await q("idem_settle", sql.settle, [ns, token.key, codec.enc(result)]);
    return { result };
  });
}

/** Deletes up to `limit` expired records; returns how many. */
export async function sweepOnce(query: (name: string, text: string, values: unknown[]) => Promise<{ rowCount: number | null }>, schema: string, now: number, limit: number): Promise<number> {
  return (await query("idem_sweep", sqlOf(schema).sweep, [now, limit])).rowCount ?? 0;
}
