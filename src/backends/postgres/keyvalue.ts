/**
 * KeyValue on table kv (ns, key, value, version, expires_at), key COLLATE "C"
 * so ORDER BY key is UTF-8 byte order (the order Scan promises). A row whose
 * expires_at has passed is absent for every read and write (a write over it
 * starts again at version 1); the instance's sweeper deletes such rows later.
 * Every write is one statement: value, version bump, TTL and CAS check
 * together. Times come from the injected clock, never now() in SQL.
 */
import { errors } from "../../core/errors.js";
import type { Clock } from "../../core/clock.js";
import type pg from "pg";
import type { IdempotencyToken, Once } from "../driver.js";
import { BOOL, NUM, pgOnce } from "./idempotency.js";
import type { Bytes, KeyValueStore, KvRecord, OutboxMessage, OutboxOutcome, OutboxPass, OutboxRecord, OutboxRelayOptions, ScanPage, SetOptions } from "../driver.js";
import type { PgInstance } from "./instance.js";
import { buf, decodeAttrs, encodeAttrs } from "./sql.js";
import { PgGetBatcher } from "./get-batch.js";

/** SQL text for one schema, built once per instance. `L(t)`: row t is live at $now. */
export class KvSql {
  readonly get: string;
  readonly head: string;
  readonly exists: string;
  readonly upsert: string;
  readonly insertIfAbsent: string;
  readonly updateIfVersion: string;
  readonly del: string;
  readonly batchGet: string;
  readonly batchSet: string;
  readonly batchDelete: string;
  readonly scan: string[];
  readonly expire: string;
  readonly persist: string;
  readonly sweep: string;
  // keyvalue_outbox
  readonly lock: string;
  readonly outboxInsert: string;
  readonly outboxPending: string;
  readonly outboxCount: string;
  readonly outboxMarkSent: string;
  readonly outboxPark: string;
  readonly outboxPurge: string;

  constructor(S: string) {
    const T = `${S}.kv`;
    const live = (t: string, now: string) => `(${t}.expires_at IS NULL OR ${t}.expires_at > ${now})`;
    this.get = `SELECT value, version FROM ${T} t WHERE ns = $1 AND key = $2 AND ${live("t", "$3::int8")}`;
    this.head = `SELECT version, expires_at FROM ${T} t WHERE ns = $1 AND key = $2 AND ${live("t", "$3::int8")}`;
    this.exists = `SELECT 1 FROM ${T} t WHERE ns = $1 AND key = $2 AND ${live("t", "$3::int8")}`;
    // $1 ns, $2 key, $3 value, $4 expires_at, $5 now
    const write = (where: string) =>
      `INSERT INTO ${T} AS t (ns, key, value, version, expires_at) VALUES ($1, $2, $3, 1, $4::int8)
       ON CONFLICT (ns, key) DO UPDATE SET
         value = EXCLUDED.value,
         version = CASE WHEN ${live("t", "$5::int8")} THEN t.version + 1 ELSE 1 END,
         expires_at = EXCLUDED.expires_at
       ${where}
       RETURNING version`;
    this.upsert = write("");
    // Absent, or present but expired: the conflicting row is only overwritten when it is dead.
    this.insertIfAbsent = write(`WHERE NOT ${live("t", "$5::int8")}`);
    // expectedVersion > 0: the key must exist, be live and carry that version.
    this.updateIfVersion = `UPDATE ${T} t SET value = $3, version = t.version + 1, expires_at = $4::int8
       WHERE ns = $1 AND key = $2 AND ${live("t", "$5::int8")} AND version = $6::int8 RETURNING version`;
    this.del = `DELETE FROM ${T} t WHERE ns = $1 AND key = $2 AND ${live("t", "$3::int8")}`;
    this.batchGet = `SELECT key, value, version FROM ${T} t WHERE ns = $1 AND key = ANY($2::text[]) AND ${live("t", "$3::int8")}`;
    this.batchSet = `INSERT INTO ${T} AS t (ns, key, value, version, expires_at)
       SELECT $1, u.k, u.v, 1, $4::int8 FROM unnest($2::text[], $3::bytea[]) AS u(k, v)
       ON CONFLICT (ns, key) DO UPDATE SET
         value = EXCLUDED.value,
         version = CASE WHEN ${live("t", "$5::int8")} THEN t.version + 1 ELSE 1 END,
         expires_at = EXCLUDED.expires_at
       RETURNING key, version`;
    this.batchDelete = `DELETE FROM ${T} t WHERE ns = $1 AND key = ANY($2::text[]) AND ${live("t", "$3::int8")}`;
    // $1 ns, $2 prefix, $3 cursor, $4 now, $5 limit, [$6 upper bound]. [with value, keys only] × [bounded, open].
    const scan = (cols: string, bounded: boolean) =>
      `SELECT ${cols} FROM ${T} t WHERE ns = $1 AND key >= $2 ${bounded ? "AND key < $6" : ""} AND key > $3
         AND ${live("t", "$4::int8")} ORDER BY key LIMIT $5`;
    this.scan = [scan("key, value, version", true), scan("key, version", true), scan("key, value, version", false), scan("key, version", false)];
    this.expire = `UPDATE ${T} t SET expires_at = $4::int8 WHERE ns = $1 AND key = $2 AND ${live("t", "$3::int8")}`;
    this.persist = `UPDATE ${T} t SET expires_at = NULL WHERE ns = $1 AND key = $2 AND ${live("t", "$3::int8")}`;
    this.sweep = `DELETE FROM ${T} WHERE ctid = ANY(ARRAY(SELECT ctid FROM ${T} WHERE expires_at <= $1::int8 LIMIT $2))`;

    const O = `${S}.outbox`;
    this.lock = `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`;
    this.outboxInsert = `INSERT INTO ${O} (ns, key, topic, payload, attributes, created_at) VALUES ($1, $2, $3, $4, $5::jsonb, $6::int8)`;
    this.outboxPending = `SELECT id, key, topic, payload, attributes, created_at FROM ${O}
       WHERE ns = $1 AND sent_at IS NULL AND failed_at IS NULL ORDER BY id LIMIT $2`;
    this.outboxCount = `SELECT count(*)::int8 AS n FROM ${O} WHERE ns = $1 AND sent_at IS NULL AND failed_at IS NULL`;
    this.outboxMarkSent = `UPDATE ${O} SET sent_at = $2::int8 WHERE ns = $1 AND id = ANY($3::int8[])`;
    this.outboxPark = `UPDATE ${O} o SET failed_at = $2::int8, error = u.e FROM unnest($3::int8[], $4::text[]) AS u(i, e)
       WHERE o.ns = $1 AND o.id = u.i AND o.sent_at IS NULL`;
    this.outboxPurge = `DELETE FROM ${O} WHERE ctid = ANY(ARRAY(SELECT ctid FROM ${O} WHERE ns = $1 AND sent_at IS NOT NULL AND sent_at <= $2::int8 LIMIT 1000))`;
  }
}

/** One statement, on the pool or on a transaction's connection. */
type Query = <R extends object>(name: string, text: string, values: unknown[]) => Promise<{ rows: R[]; rowCount: number | null }>;

/** How often a relay pass also deletes old sent outbox rows. */
const PURGE_EVERY_MS = 10_000;

function expiresAt(ttlMs: number | undefined, now: number): number | null {
  return ttlMs ? now + ttlMs : null;
}

/**
 * The smallest string above every string that starts with prefix, in code
 * point (= UTF-8 byte) order: the prefix with its last code point
 * incremented. null when no bound is needed (empty prefix, or only U+10FFFF).
 */
export function prefixUpperBound(prefix: string): string | null {
  const cps = Array.from(prefix);
  while (cps.length) {
    const cp = cps[cps.length - 1]!.codePointAt(0)!;
    if (cp < 0x10ffff) {
      const next = cp + 1 === 0xd800 ? 0xe000 : cp + 1; // no well-formed string holds surrogates
      cps[cps.length - 1] = String.fromCodePoint(next);
      return cps.join("");
    }
    cps.pop();
  }
  return null;
}

export class PgKeyValue implements KeyValueStore {
  private readonly sql: KvSql;
  /** The Gets of one loop turn in one statement (get-batch.ts). */
  private readonly gets: PgGetBatcher;

  private readonly pool: Query;
  private lastPurge = 0;

  constructor(
    private readonly ns: string,
    private readonly db: PgInstance,
    private readonly clock: Clock,
  ) {
    this.sql = db.kvSql;
    this.gets = new PgGetBatcher({ getOne: (key) => this.getOne(key), getMany: (keys) => this.batchGet(keys) });
    this.pool = (name, text, values) => this.db.query(name, text, values);
  }

  get(key: string): Promise<KvRecord | null> {
    return this.gets.get(key);
  }

  private async getOne(key: string): Promise<KvRecord | null> {
    const r = await this.db.query<KvRecord>("kv_get", this.sql.get, [this.ns, key, this.clock.now()]);
    return r.rows[0] ?? null;
  }

  set(key: string, value: Bytes, opts: SetOptions): Promise<number> {
    return this.write(this.pool, key, value, opts, this.clock.now());
  }

  /** The write with its CAS check, through q (the pool, or a transaction's connection). */
  private async write(q: Query, key: string, value: Bytes, opts: SetOptions, now: number): Promise<number> {
    const exp = expiresAt(opts.ttlMs, now);
    const base = [this.ns, key, buf(value), exp, now];
    if (opts.expectedVersion !== undefined && opts.expectedVersion > 0) {
      if (opts.ifAbsent) throw errors.casConflict(key, `ifAbsent with expected version ${opts.expectedVersion} can never hold`);
      const r = await q<{ version: number }>("kv_set_ver", this.sql.updateIfVersion, [...base, opts.expectedVersion]);
      if (r.rows[0]) return r.rows[0].version;
      const cur = await this.headVersion(q, key, now);
      throw errors.casConflict(key, `expected version ${opts.expectedVersion}, current version is ${cur}`);
    }
    if (opts.ifAbsent || opts.expectedVersion === 0) {
      const r = await q<{ version: number }>("kv_set_absent", this.sql.insertIfAbsent, base);
      if (r.rows[0]) return r.rows[0].version;
      if (opts.ifAbsent) throw errors.casConflict(key, "already exists");
      const cur = await this.headVersion(q, key, now);
      throw errors.casConflict(key, `expected version 0, current version is ${cur}`);
    }
    const r = await q<{ version: number }>("kv_set", this.sql.upsert, base);
    return r.rows[0]!.version;
  }

  /** For conflict messages only (off the success path). */
  private async headVersion(q: Query, key: string, now: number): Promise<number> {
    const r = await q<{ version: number }>("kv_head", this.sql.head, [this.ns, key, now]);
    return r.rows[0]?.version ?? 0;
  }

  // ------------------------------------------------------------ keyvalue_outbox

  /**
   * fn in one transaction that first takes a lock on (schema, namespace, key):
   * writes with a message to one key commit one after the other, so their
   * outbox ids (taken after the lock) grow in commit order per key, which is
   * the order the relay hands them out. Without the lock, a delete of an
   * absent key locks no row, and a bigserial id taken earlier could commit later.
   */
  private withKeyLock<T>(key: string, fn: (q: Query) => Promise<T>): Promise<T> {
    return this.db.tx(async (c: pg.PoolClient) => {
      const q: Query = (name, text, values) => c.query({ name, text, values }) as never;
      await q("outbox_key_lock", this.sql.lock, [JSON.stringify(["outbox-key", this.db.schema, this.ns, key])]);
      return fn(q);
    });
  }

  private insertMessage(q: Query, key: string, msg: OutboxMessage, now: number) {
    return q("outbox_insert", this.sql.outboxInsert, [this.ns, key, msg.topic, buf(msg.payload), encodeAttrs(msg.attributes), now]);
  }

  setWithMessage(key: string, value: Bytes, opts: SetOptions, msg: OutboxMessage): Promise<number> {
    return this.withKeyLock(key, async (q) => {
      const now = this.clock.now();
      const version = await this.write(q, key, value, opts, now); // a CAS refusal throws: the transaction rolls back
      await this.insertMessage(q, key, msg, now);
      return version;
    });
  }

  deleteWithMessage(key: string, msg: OutboxMessage): Promise<boolean> {
    return this.withKeyLock(key, async (q) => {
      const now = this.clock.now();
      const deleted = ((await q("kv_del", this.sql.del, [this.ns, key, now])).rowCount ?? 0) > 0;
      if (deleted) await this.insertMessage(q, key, msg, now);
      return deleted;
    });
  }

  /** The relay lock of this namespace's outbox (schema-wide: processes on other schemas never meet). */
  private get relayKey(): string {
    return JSON.stringify(["outbox-relay", this.db.schema, this.ns]);
  }

  /**
   * One relay pass, by the process holding this namespace's relay lock
   * (relay-lock.ts: a session advisory lock, released by PostgreSQL when the
   * holder dies). One relay per namespace at a time rather than SELECT … FOR
   * UPDATE SKIP LOCKED: relays splitting a batch would publish one key's
   * messages out of order. No transaction stays open while deliver runs: the
   * rows are read, delivered, then marked, each statement on its own. A crash
   * between delivery and the mark hands the rows out again (at least once).
   */
  async outboxRelay(opts: OutboxRelayOptions, deliver: (batch: OutboxRecord[]) => Promise<OutboxOutcome>): Promise<OutboxPass> {
    const key = this.relayKey;
    if (this.db.relaying.has(key)) return { locked: false, handed: 0, pending: 0 };
    this.db.relaying.add(key);
    try {
      if (!(await this.db.relayLocks.hold(key, this))) return { locked: false, handed: 0, pending: 0 };
      if (Date.now() - this.lastPurge >= PURGE_EVERY_MS) {
        this.lastPurge = Date.now();
        await this.db.query("outbox_purge", this.sql.outboxPurge, [this.ns, this.clock.now() - opts.keepSentMs]);
      }
      const r = await this.db.query<{ id: number; key: string; topic: string; payload: Buffer; attributes: Record<string, string> | null; created_at: number }>(
        "outbox_pending",
        this.sql.outboxPending,
        [this.ns, opts.limit],
      );
      if (r.rows.length) {
        const outcome = await deliver(
          r.rows.map((row) => ({ id: row.id, key: row.key, topic: row.topic, payload: row.payload, attributes: decodeAttrs(row.attributes), createdAtMs: row.created_at })),
        );
        const now = this.clock.now();
        if (outcome.sent.length) await this.db.query("outbox_sent", this.sql.outboxMarkSent, [this.ns, now, outcome.sent]);
        if (outcome.failed.length) {
          await this.db.query("outbox_park", this.sql.outboxPark, [this.ns, now, outcome.failed.map((f) => f.id), outcome.failed.map((f) => f.error)]);
        }
      }
      const n = await this.db.query<{ n: number }>("outbox_count", this.sql.outboxCount, [this.ns]);
      return { locked: true, handed: r.rows.length, pending: n.rows[0]?.n ?? 0 };
    } finally {
      this.db.relaying.delete(key);
    }
  }

  /** This namespace's stores close: its relay (if any) lets go of the relay lock. */
  releaseRelay(): void {
    this.db.relayLocks.release(this.relayKey, this);
  }

  async delete(key: string): Promise<boolean> {
    return ((await this.db.query("kv_del", this.sql.del, [this.ns, key, this.clock.now()])).rowCount ?? 0) > 0;
  }

  /** keyvalue_idempotent: the write and its idempotency record in one transaction (a CAS refusal rolls both back). */
  setOnce(key: string, value: Bytes, opts: SetOptions, token: IdempotencyToken): Promise<Once<number>> {
    const now = this.clock.now();
    return pgOnce(this.db, this.ns, token, now, NUM, (q) => this.write(q, key, value, opts, now));
  }

  deleteOnce(key: string, token: IdempotencyToken): Promise<Once<boolean>> {
    const now = this.clock.now();
    return pgOnce(this.db, this.ns, token, now, BOOL, async (q) => ((await q("kv_del", this.sql.del, [this.ns, key, now])).rowCount ?? 0) > 0);
  }

  async exists(key: string): Promise<boolean> {
    return (await this.db.query("kv_exists", this.sql.exists, [this.ns, key, this.clock.now()])).rows.length > 0;
  }

  async batchGet(keys: string[]): Promise<(KvRecord | null)[]> {
    if (!keys.length) return [];
    const r = await this.db.query<{ key: string; value: Buffer; version: number }>("kv_bget", this.sql.batchGet, [this.ns, keys, this.clock.now()]);
    const found = new Map<string, KvRecord>();
    for (const row of r.rows) found.set(row.key, { value: row.value, version: row.version });
    return keys.map((k) => found.get(k) ?? null);
  }

  async batchSet(entries: { key: string; value: Bytes }[], ttlMs: number | undefined): Promise<number[]> {
    if (!entries.length) return [];
    const now = this.clock.now();
    const exp = expiresAt(ttlMs, now);
    const keys = entries.map((e) => e.key);
    if (new Set(keys).size !== keys.length) {
      // ON CONFLICT cannot touch one row twice in a statement: a batch naming a key
      // twice is applied in order, one upsert per entry, in one transaction.
      return this.db.tx(async (c) => {
        const out: number[] = [];
        for (const e of entries) {
          const r = await c.query<{ version: number }>({ name: "kv_set", text: this.sql.upsert, values: [this.ns, e.key, buf(e.value), exp, now] });
          out.push(r.rows[0]!.version);
        }
        return out;
      });
    }
    const r = await this.db.query<{ key: string; version: number }>("kv_bset", this.sql.batchSet, [
      this.ns,
      keys,
      entries.map((e) => buf(e.value)),
      exp,
      now,
    ]);
    const versions = new Map<string, number>();
    for (const row of r.rows) versions.set(row.key, row.version);
    return keys.map((k) => versions.get(k)!);
  }

  async batchDelete(keys: string[]): Promise<number> {
    if (!keys.length) return 0;
    return (await this.db.query("kv_bdel", this.sql.batchDelete, [this.ns, keys, this.clock.now()])).rowCount ?? 0;
  }

  /** Keyset pagination: the cursor is the last key returned, so writes between pages never cause skips or repeats. */
  async scan(prefix: string, cursor: string, limit: number, keysOnly: boolean): Promise<ScanPage> {
    const upper = prefixUpperBound(prefix);
    const which = (upper === null ? 2 : 0) + (keysOnly ? 1 : 0);
    const values: unknown[] = [this.ns, prefix, cursor, this.clock.now(), limit + 1];
    if (upper !== null) values.push(upper);
    const r = await this.db.query<{ key: string; value?: Buffer; version: number }>(`kv_scan${which}`, this.sql.scan[which]!, values);
    const items = r.rows;
    const more = items.length > limit;
    if (more) items.length = limit;
    return { items, nextCursor: more ? items[items.length - 1]!.key : "" };
  }

  async expire(key: string, ttlMs: number): Promise<boolean> {
    const now = this.clock.now();
    return ((await this.db.query("kv_expire", this.sql.expire, [this.ns, key, now, now + ttlMs])).rowCount ?? 0) > 0;
  }

  async ttl(key: string): Promise<{ ttlMs: number | null } | null> {
    const now = this.clock.now();
    const r = await this.db.query<{ version: number; expires_at: number | null }>("kv_head", this.sql.head, [this.ns, key, now]);
    const row = r.rows[0];
    if (!row) return null;
    return { ttlMs: row.expires_at === null ? null : row.expires_at - now };
  }

  async persist(key: string): Promise<boolean> {
    return ((await this.db.query("kv_persist", this.sql.persist, [this.ns, key, this.clock.now()])).rowCount ?? 0) > 0;
  }
}
