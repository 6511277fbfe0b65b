/**
 * KeyValue on table prism_kv (ns, key, value, version, expires_at).
 * A row whose expires_at has passed is absent for every read and write (a
 * write over it starts again at version 1); the instance's sweeper deletes
 * such rows later. Keys are TEXT with BINARY collation: SQLite compares the
 * UTF-8 bytes, which is the byte order Scan promises.
 */
import { errors } from "../../core/errors.js";
import type { Clock } from "../../core/clock.js";
import type { IdempotencyToken, Once } from "../driver.js";
import { BOOL, NUM, OnceStatements } from "./idempotency.js";
import type { Bytes, KeyValueStore, KvRecord, OutboxMessage, OutboxOutcome, OutboxPass, OutboxRecord, OutboxRelayOptions, ScanPage, SetOptions } from "../driver.js";
import { decodeAttrs, encodeAttrs, type Db, type Stmt } from "./db.js";

const LIVE = "(expires_at IS NULL OR expires_at > @now)";

type KeyQ = { ns: string; key: string; now: number };
type ScanQ = { ns: string; prefix: string; cursor: string; now: number; limit: number };
type ScanRow = { key: string; value?: Buffer; version: number };

interface Row {
  value: Buffer;
  version: number;
  expires_at: number | null;
}

type OutboxRow = { id: number; key: string; topic: string; payload: Buffer; attributes: string | null; created_at: number };
type OutboxInsert = { ns: string; key: string; topic: string; payload: Bytes; attrs: string | null; now: number };

/** Prepared once per file; every statement takes the namespace as a parameter. */
export class KvStatements {
  readonly get: Stmt<KeyQ, Row>;
  readonly head: Stmt<KeyQ, { version: number; expires_at: number | null }>;
  readonly exists: Stmt<KeyQ, number>;
  readonly upsert: Stmt<{ ns: string; key: string; value: Bytes; exp: number | null; now: number }, number>;
  readonly del: Stmt<KeyQ>;
  /** [with value, keys only] × [bounded by the prefix's upper bound, open-ended]. */
  readonly scanBounded: [Stmt<ScanQ & { upper: string }, ScanRow>, Stmt<ScanQ & { upper: string }, ScanRow>];
  readonly scanOpen: [Stmt<ScanQ, ScanRow>, Stmt<ScanQ, ScanRow>];
  readonly expire: Stmt<KeyQ & { exp: number }>;
  readonly persist: Stmt<KeyQ>;
  readonly sweep: Stmt<{ now: number; limit: number }>;
  readonly casSet: (ns: string, key: string, value: Bytes, opts: SetOptions, now: number) => number;
  readonly batchSet: (ns: string, entries: { key: string; value: Bytes }[], expiresAt: number | null, now: number) => number[];
  readonly batchGet: (ns: string, keys: string[], now: number) => (KvRecord | null)[];
  readonly batchDelete: (ns: string, keys: string[], now: number) => number;
  // keyvalue_outbox
  readonly outboxInsert: Stmt<OutboxInsert>;
  readonly outboxPending: Stmt<{ ns: string; limit: number }, OutboxRow>;
  readonly outboxCount: Stmt<{ ns: string }, number>;
  readonly outboxPurge: Stmt<{ ns: string; before: number }>;
  readonly setWithMessage: (ns: string, key: string, value: Bytes, opts: SetOptions, msg: OutboxMessage, now: number) => number;
  readonly deleteWithMessage: (ns: string, key: string, msg: OutboxMessage, now: number) => boolean;
  readonly outboxSettle: (ns: string, outcome: OutboxOutcome, now: number) => void;
  /** Namespaces whose relay pass is running (one file has one connection, in one process: an in-process lock suffices). */
  readonly relaying = new Set<string>();
  readonly once: OnceStatements;

  constructor(db: Db) {
    this.once = OnceStatements.of(db);
    this.get = db.prepare<{ ns: string; key: string; now: number }, Row>(
      `SELECT value, version, expires_at FROM prism_kv WHERE ns = @ns AND key = @key AND ${LIVE}`,
    );
    this.head = db.prepare<{ ns: string; key: string; now: number }, { version: number; expires_at: number | null }>(
      `SELECT version, expires_at FROM prism_kv WHERE ns = @ns AND key = @key AND ${LIVE}`,
    );
    this.exists = db
      .prepare<{ ns: string; key: string; now: number }, number>(`SELECT 1 FROM prism_kv WHERE ns = @ns AND key = @key AND ${LIVE}`)
      .pluck();
    // One statement per write: the version bump, the TTL and the value change together.
    this.upsert = db
      .prepare<{ ns: string; key: string; value: Bytes; exp: number | null; now: number }, number>(
        `INSERT INTO prism_kv (ns, key, value, version, expires_at) VALUES (@ns, @key, @value, 1, @exp)
         ON CONFLICT (ns, key) DO UPDATE SET
           value = excluded.value,
           version = CASE WHEN prism_kv.expires_at IS NULL OR prism_kv.expires_at > @now THEN prism_kv.version + 1 ELSE 1 END,
           expires_at = excluded.expires_at
         RETURNING version`,
      )
      .pluck();
    this.del = db.prepare<{ ns: string; key: string; now: number }>(`DELETE FROM prism_kv WHERE ns = @ns AND key = @key AND ${LIVE}`);
    const scan = (cols: string, bounded: boolean) =>
      db.prepare<ScanQ & { upper: string }, ScanRow>(
        `SELECT ${cols} FROM prism_kv
         WHERE ns = @ns AND key >= @prefix ${bounded ? "AND key < @upper" : ""} AND key > @cursor AND ${LIVE}
         ORDER BY key LIMIT @limit`,
      );
    this.scanBounded = [scan("key, value, version", true), scan("key, version", true)];
    this.scanOpen = [scan("key, value, version", false), scan("key, version", false)];
    this.expire = db.prepare<{ ns: string; key: string; now: number; exp: number }>(
      `UPDATE prism_kv SET expires_at = @exp WHERE ns = @ns AND key = @key AND ${LIVE}`,
    );
    this.persist = db.prepare<{ ns: string; key: string; now: number }>(
      `UPDATE prism_kv SET expires_at = NULL WHERE ns = @ns AND key = @key AND ${LIVE}`,
    );
    this.sweep = db.prepare<{ now: number; limit: number }>(
      `DELETE FROM prism_kv WHERE rowid IN (SELECT rowid FROM prism_kv WHERE expires_at <= @now LIMIT @limit)`,
    );

    // The CAS check and the write (inside a transaction).
    const checkedSet = (ns: string, key: string, value: Bytes, opts: SetOptions, now: number): number => {
      if (opts.ifAbsent || opts.expectedVersion !== undefined) {
        const cur = this.head.get({ ns, key, now });
        if (opts.ifAbsent && cur) throw errors.casConflict(key, "already exists");
        if (opts.expectedVersion !== undefined) {
          const have = cur ? cur.version : 0;
          if (have !== opts.expectedVersion) {
            throw errors.casConflict(key, `expected version ${opts.expectedVersion}, current version is ${have}`);
          }
        }
      }
      return this.upsert.get({ ns, key, value, exp: expiresAt(opts.ttlMs, now), now })!;
    };
    this.casSet = db.transaction(checkedSet).immediate;
    this.batchSet = db
      .transaction((ns: string, entries: { key: string; value: Bytes }[], exp: number | null, now: number): number[] =>
        entries.map((e) => this.upsert.get({ ns, key: e.key, value: e.value, exp, now })!),
      )
      .immediate;
    this.batchGet = db.transaction((ns: string, keys: string[], now: number) =>
      keys.map((key) => {
        const r = this.get.get({ ns, key, now });
        return r ? { value: r.value, version: r.version } : null;
      }),
    ).deferred;
    this.batchDelete = db
      .transaction((ns: string, keys: string[], now: number): number => {
        let n = 0;
        for (const key of keys) n += this.del.run({ ns, key, now }).changes;
        return n;
      })
      .immediate;

    // keyvalue_outbox. One writer at a time (BEGIN IMMEDIATE), so id order is commit order.
    this.outboxInsert = db.prepare<OutboxInsert>(
      `INSERT INTO prism_outbox (ns, key, topic, payload, attributes, created_at) VALUES (@ns, @key, @topic, @payload, @attrs, @now)`,
    );
    this.outboxPending = db.prepare<{ ns: string; limit: number }, OutboxRow>(
      `SELECT id, key, topic, payload, attributes, created_at FROM prism_outbox
       WHERE ns = @ns AND sent_at IS NULL AND failed_at IS NULL ORDER BY id LIMIT @limit`,
    );
    this.outboxCount = db
      .prepare<{ ns: string }, number>(`SELECT count(*) FROM prism_outbox WHERE ns = @ns AND sent_at IS NULL AND failed_at IS NULL`)
      .pluck();
    this.outboxPurge = db.prepare<{ ns: string; before: number }>(`DELETE FROM prism_outbox WHERE ns = @ns AND sent_at IS NOT NULL AND sent_at <= @before`);
    const markSent = db.prepare<{ id: number; ns: string; now: number }>(`UPDATE prism_outbox SET sent_at = @now WHERE id = @id AND ns = @ns`);
    const park = db.prepare<{ id: number; ns: string; now: number; error: string }>(
      `UPDATE prism_outbox SET failed_at = @now, error = @error WHERE id = @id AND ns = @ns AND sent_at IS NULL`,
    );
    const insert = (ns: string, key: string, msg: OutboxMessage, now: number) =>
      this.outboxInsert.run({ ns, key, topic: msg.topic, payload: msg.payload, attrs: encodeAttrs(msg.attributes), now });
    this.setWithMessage = db
      .transaction((ns: string, key: string, value: Bytes, opts: SetOptions, msg: OutboxMessage, now: number): number => {
        const version = checkedSet(ns, key, value, opts, now); // a CAS refusal throws: nothing is committed
        insert(ns, key, msg, now);
        return version;
      })
      .immediate;
    this.deleteWithMessage = db
      .transaction((ns: string, key: string, msg: OutboxMessage, now: number): boolean => {
        if (this.del.run({ ns, key, now }).changes === 0) return false;
        insert(ns, key, msg, now);
        return true;
      })
      .immediate;
    this.outboxSettle = db
      .transaction((ns: string, outcome: OutboxOutcome, now: number): void => {
        for (const id of outcome.sent) markSent.run({ id, ns, now });
        for (const f of outcome.failed) park.run({ id: f.id, ns, now, error: f.error });
      })
      .immediate;
  }
}

function expiresAt(ttlMs: number | undefined, now: number): number | null {
  return ttlMs ? now + ttlMs : null;
}

/**
 * The smallest string above every string that starts with prefix, in code
 * point (= UTF-8 byte) order: the prefix with its last code point incremented.
 * null when no such bound is needed (empty prefix, or only U+10FFFF).
 */
export function prefixUpperBound(prefix: string): string | null {
  const cps = Array.from(prefix);
  while (cps.length) {
    const cp = cps[cps.length - 1]!.codePointAt(0)!;
    if (cp < 0x10ffff) {
      // Skip the surrogate range: no well-formed string holds those code points.
      const next = cp + 1 === 0xd800 ? 0xe000 : cp + 1;
      cps[cps.length - 1] = String.fromCodePoint(next);
      return cps.join("");
    }
    cps.pop();
  }
  return null;
}

/** How often a relay pass also deletes old sent outbox rows. */
const PURGE_EVERY_MS = 10_000;

export class SqliteKeyValue implements KeyValueStore {
  private lastPurge = 0;

  constructor(
    private readonly ns: string,
    private readonly s: () => KvStatements,
    private readonly clock: Clock,
  ) {}

  async get(key: string): Promise<KvRecord | null> {
    const r = this.s().get.get({ ns: this.ns, key, now: this.clock.now() });
    return r ? { value: r.value, version: r.version } : null;
  }

  async set(key: string, value: Bytes, opts: SetOptions): Promise<number> {
    return this.setNow(this.s(), key, value, opts, this.clock.now());
  }

  private setNow(s: KvStatements, key: string, value: Bytes, opts: SetOptions, now: number): number {
    if (opts.ifAbsent || opts.expectedVersion !== undefined) return s.casSet(this.ns, key, value, opts, now);
    return s.upsert.get({ ns: this.ns, key, value, exp: expiresAt(opts.ttlMs, now), now })!;
  }

  async delete(key: string): Promise<boolean> {
    return this.s().del.run({ ns: this.ns, key, now: this.clock.now() }).changes > 0;
  }

  /** keyvalue_idempotent: the write and its idempotency record in one transaction (a CAS refusal rolls both back). */
  async setOnce(key: string, value: Bytes, opts: SetOptions, token: IdempotencyToken): Promise<Once<number>> {
    const s = this.s();
    const now = this.clock.now();
    return s.once.run(this.ns, token, now, NUM, () => this.setNow(s, key, value, opts, now));
  }

  async deleteOnce(key: string, token: IdempotencyToken): Promise<Once<boolean>> {
    const s = this.s();
    const now = this.clock.now();
    return s.once.run(this.ns, token, now, BOOL, () => s.del.run({ ns: this.ns, key, now }).changes > 0);
  }

  async exists(key: string): Promise<boolean> {
    return this.s().exists.get({ ns: this.ns, key, now: this.clock.now() }) !== undefined;
  }

  async batchGet(keys: string[]): Promise<(KvRecord | null)[]> {
    return this.s().batchGet(this.ns, keys, this.clock.now());
  }

  async batchSet(entries: { key: string; value: Bytes }[], ttlMs: number | undefined): Promise<number[]> {
    const now = this.clock.now();
    return this.s().batchSet(this.ns, entries, expiresAt(ttlMs, now), now);
  }

  async batchDelete(keys: string[]): Promise<number> {
    return this.s().batchDelete(this.ns, keys, this.clock.now());
  }

  /** Keyset pagination: the cursor is the last key returned, so inserts between pages never cause skips or repeats. */
  async scan(prefix: string, cursor: string, limit: number, keysOnly: boolean): Promise<ScanPage> {
    const s = this.s();
    const upper = prefixUpperBound(prefix);
    const q = { ns: this.ns, prefix, cursor, now: this.clock.now(), limit: limit + 1 };
    const which = keysOnly ? 1 : 0;
    // Rows already have the ScanItem shape (no value column when keysOnly).
    const items = upper === null ? s.scanOpen[which].all(q) : s.scanBounded[which].all({ ...q, upper });
    const more = items.length > limit;
    if (more) items.length = limit;
    return { items, nextCursor: more ? items[items.length - 1]!.key : "" };
  }

  async expire(key: string, ttlMs: number): Promise<boolean> {
    const now = this.clock.now();
    return this.s().expire.run({ ns: this.ns, key, now, exp: now + ttlMs }).changes > 0;
  }

  async ttl(key: string): Promise<{ ttlMs: number | null } | null> {
    const now = this.clock.now();
    const r = this.s().head.get({ ns: this.ns, key, now });
    if (!r) return null;
    return { ttlMs: r.expires_at === null ? null : r.expires_at - now };
  }

  async persist(key: string): Promise<boolean> {
    return this.s().persist.run({ ns: this.ns, key, now: this.clock.now() }).changes > 0;
  }

  async setWithMessage(key: string, value: Bytes, opts: SetOptions, msg: OutboxMessage): Promise<number> {
    return this.s().setWithMessage(this.ns, key, value, opts, msg, this.clock.now());
  }

  async deleteWithMessage(key: string, msg: OutboxMessage): Promise<boolean> {
    return this.s().deleteWithMessage(this.ns, key, msg, this.clock.now());
  }

  /**
   * Reads the oldest unsent rows, awaits deliver (no transaction is open
   * meanwhile: SQLite has one writer, and the writes must go on), then marks
   * sent / parks in one transaction. A crash before that mark leaves the rows
   * unsent: they are handed out again after the restart (at least once).
   */
  async outboxRelay(opts: OutboxRelayOptions, deliver: (batch: OutboxRecord[]) => Promise<OutboxOutcome>): Promise<OutboxPass> {
    const s = this.s();
    if (s.relaying.has(this.ns)) return { locked: false, handed: 0, pending: 0 };
    s.relaying.add(this.ns);
    try {
      if (Date.now() - this.lastPurge >= PURGE_EVERY_MS) {
        this.lastPurge = Date.now();
        s.outboxPurge.run({ ns: this.ns, before: this.clock.now() - opts.keepSentMs });
      }
      const rows = s.outboxPending.all({ ns: this.ns, limit: opts.limit });
      if (rows.length) {
        const batch: OutboxRecord[] = rows.map((r) => ({
          id: r.id,
          key: r.key,
          topic: r.topic,
          payload: r.payload,
          attributes: decodeAttrs(r.attributes),
          createdAtMs: r.created_at,
        }));
        const outcome = await deliver(batch);
        // The file may have been closed (and reopened) meanwhile: settle on the current connection.
        this.s().outboxSettle(this.ns, outcome, this.clock.now());
      }
      return { locked: true, handed: rows.length, pending: this.s().outboxCount.get({ ns: this.ns }) ?? 0 };
    } finally {
      s.relaying.delete(this.ns);
    }
  }
}
