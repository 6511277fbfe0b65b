/**
 * Idempotency records (the *_idempotent interfaces) in table
 * prism_idempotency, written in the same transaction as the write they
 * answer for: a crash leaves both or neither. Expired records are ignored and
 * replaced on use, and swept in batches by the instance's sweeper.
 */
import type { IdempotencyToken, Once } from "../driver.js";
import type { Db } from "./db.js";

export const IDEMPOTENCY_SCHEMA = `
CREATE TABLE IF NOT EXISTS prism_idempotency (
  ns TEXT NOT NULL,
  key TEXT NOT NULL,
  hash TEXT NOT NULL,
  result TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (ns, key)
);
CREATE INDEX IF NOT EXISTS prism_idempotency_expiry ON prism_idempotency (expires_at);
`;

/** How a result is kept in the record's text column. */
export interface Codec<T> {
  enc(v: T): string;
  dec(s: string): T;
}
export const NUM: Codec<number> = { enc: String, dec: Number };
export const STR: Codec<string> = { enc: (s) => s, dec: (s) => s };
export const BOOL: Codec<boolean> = { enc: (b) => (b ? "1" : "0"), dec: (s) => s === "1" };

const byDb = new WeakMap<Db, OnceStatements>();

export class OnceStatements {
  private readonly find;
  private readonly put;
  private readonly sweepStmt;
  private readonly tx: { immediate(f: () => unknown): unknown };

  /** One set per connection (the KeyValue, queue and stream statements share it). */
  static of(db: Db): OnceStatements {
    let s = byDb.get(db);
    if (!s) byDb.set(db, (s = new OnceStatements(db)));
    return s;
  }

  private constructor(db: Db) {
    db.exec(IDEMPOTENCY_SCHEMA);
    this.find = db.prepare<{ ns: string; key: string }, { hash: string; result: string; expires_at: number }>(
      "SELECT hash, result, expires_at FROM prism_idempotency WHERE ns = @ns AND key = @key",
    );
    this.put = db.prepare<{ ns: string; key: string; hash: string; result: string; exp: number }>(
      `INSERT INTO prism_idempotency (ns, key, hash, result, expires_at) VALUES (@ns, @key, @hash, @result, @exp)
       ON CONFLICT (ns, key) DO UPDATE SET hash = excluded.hash, result = excluded.result, expires_at = excluded.expires_at`,
    );
    this.sweepStmt = db.prepare<{ now: number; limit: number }>(
      "DELETE FROM prism_idempotency WHERE rowid IN (SELECT rowid FROM prism_idempotency WHERE expires_at <= @now LIMIT @limit)",
    );
    // BEGIN IMMEDIATE: another process on the same file cannot slip a write between the look-up and the record.
    this.tx = db.transaction((f: () => unknown) => f()) as unknown as { immediate(f: () => unknown): unknown };
  }

  /**
   * effect (synchronous: it runs inside the transaction) unless a live record
   * for the key answers; the record is written in the same transaction.
   */
  run<T>(ns: string, token: IdempotencyToken, now: number, codec: Codec<T>, effect: () => T): Once<T> {
    return this.tx.immediate(() => {
      const rec = this.find.get({ ns, key: token.key });
      if (rec && rec.expires_at > now) return { result: codec.dec(rec.result), replayedHash: rec.hash };
      const result = effect();
      this.put.run({ ns, key: token.key, hash: token.requestHash, result: codec.enc(result), exp: now + token.windowMs });
      return { result };
    }) as Once<T>;
  }

  sweep(now: number, limit: number): number {
    return this.sweepStmt.run({ now, limit }).changes;
  }
}
