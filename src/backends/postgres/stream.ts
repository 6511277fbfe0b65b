/**
 * Stream on tables stream (records), stream_meta (the last offset handed
 * out: offsets never repeat, even when retention empties a stream),
 * stream_group (each group's cursor: the last offset it was given) and
 * stream_pending (records given to a consumer and not yet acked).
 *
 * Append is one statement: bumping stream_meta locks the stream's row until
 * commit, so offsets commit in order (a reader never sees 5 before 4) and a
 * group cursor never skips a record. It applies retention and NOTIFYs the
 * wake channel in the same statement. readGroup is one transaction that
 * locks the group's row (consumers of a group take turns), reclaims pending
 * records idle past the claim timeout, then hands out records after the
 * cursor. A new group starts at the oldest retained record.
 */
import type { Clock } from "../../core/clock.js";
import type { Attributes, Bytes, IdempotencyToken, NamespaceLimits, Once, StreamRecord, StreamStore } from "../driver.js";
import { NUM, pgOnce } from "./idempotency.js";
import type { PgInstance } from "./instance.js";
import { buf, decodeAttrs, encodeAttrs } from "./sql.js";

interface RecordRow {
  off: number;
  payload: Buffer;
  attributes: Record<string, string> | null;
  ts: number;
  delivery_count?: number;
}

function toRecord(r: RecordRow): StreamRecord {
  const rec: StreamRecord = { offset: r.off, payload: r.payload, attributes: decodeAttrs(r.attributes), timestampMs: r.ts };
  if (r.delivery_count !== undefined) rec.deliveryCount = r.delivery_count;
  return rec;
}

export class StreamSql {
  /** [no retention, by count, by age, both]. */
  readonly append: string[];
  readonly read: string;
  readonly lockGroup: string;
  readonly reclaim: string;
  readonly fresh: string;
  readonly ack: string;

  constructor(S: string) {
    const T = `${S}.stream`;
    // $1 ns, $2 stream, $3 payload, $4 attributes, $5 now, $6 channel, $7 wake key, [$8 max count], [$8 or $9 age cutoff]
    const append = (byCount: boolean, byAge: boolean) => `WITH o AS (
         INSERT INTO ${S}.stream_meta AS m (ns, stream, last_offset) VALUES ($1, $2, 1)
         ON CONFLICT (ns, stream) DO UPDATE SET last_offset = m.last_offset + 1 RETURNING last_offset
       ), i AS (
         INSERT INTO ${T} (ns, stream, off, payload, attributes, ts)
         SELECT $1, $2, last_offset, $3, $4::jsonb, $5::int8 FROM o RETURNING off
       )${
         byCount
           ? `, dc AS (DELETE FROM ${T} WHERE ns = $1 AND stream = $2 AND off <= (SELECT last_offset FROM o) - $8::int8)`
           : ""
       }${
         // Records are appended in time order: the expired ones are a head of the log.
         byAge
           ? `, da AS (DELETE FROM ${T} WHERE ns = $1 AND stream = $2 AND off < coalesce(
                (SELECT off FROM ${T} WHERE ns = $1 AND stream = $2 AND ts >= $${byCount ? 9 : 8}::int8 ORDER BY off LIMIT 1),
                (SELECT last_offset FROM o)))`
           : ""
       }
       SELECT off, pg_notify($6, $7) FROM i`;
    this.append = [append(false, false), append(true, false), append(false, true), append(true, true)];
    this.read = `SELECT off, payload, attributes, ts FROM ${T} WHERE ns = $1 AND stream = $2 AND off >= $3::int8 ORDER BY off LIMIT $4`;
    // $1 ns, $2 stream, $3 group. Creates the group at 0 and locks its row until commit.
    this.lockGroup = `INSERT INTO ${S}.stream_group AS g (ns, stream, grp, cursor) VALUES ($1, $2, $3, 0)
       ON CONFLICT (ns, stream, grp) DO UPDATE SET cursor = g.cursor RETURNING cursor`;
    // $1 ns, $2 stream, $3 group, $4 idle before, $5 limit, $6 consumer, $7 now
    const P = `${S}.stream_pending`;
    const key = `p.ns = $1 AND p.stream = $2 AND p.grp = $3`;
    const has = `EXISTS (SELECT 1 FROM ${T} s WHERE s.ns = $1 AND s.stream = $2 AND s.off = idle.off)`;
    this.reclaim = `WITH idle AS (
         SELECT off FROM ${P} WHERE ns = $1 AND stream = $2 AND grp = $3 AND delivered_at <= $4::int8
         ORDER BY delivered_at, off LIMIT $5
       ), gone AS (
         DELETE FROM ${P} p USING idle WHERE ${key} AND p.off = idle.off AND NOT ${has}
       ), claimed AS (
         UPDATE ${P} p SET consumer = $6, delivered_at = $7::int8, delivery_count = p.delivery_count + 1
         FROM idle WHERE ${key} AND p.off = idle.off AND ${has}
         RETURNING p.off, p.delivery_count
       )
       SELECT s.off, s.payload, s.attributes, s.ts, c.delivery_count
       FROM claimed c JOIN ${T} s ON s.ns = $1 AND s.stream = $2 AND s.off = c.off ORDER BY s.off`;
    // $1 ns, $2 stream, $3 group, $4 cursor, $5 limit, $6 consumer, $7 now
    this.fresh = `WITH f AS (
         SELECT off, payload, attributes, ts FROM ${T} WHERE ns = $1 AND stream = $2 AND off > $4::int8 ORDER BY off LIMIT $5
       ), p AS (
         INSERT INTO ${P} (ns, stream, grp, off, consumer, delivered_at, delivery_count)
         SELECT $1, $2, $3, off, $6, $7::int8, 1 FROM f
       ), g AS (
         UPDATE ${S}.stream_group SET cursor = (SELECT max(off) FROM f)
         WHERE ns = $1 AND stream = $2 AND grp = $3 AND EXISTS (SELECT 1 FROM f)
       )
       SELECT off, payload, attributes, ts, 1 AS delivery_count FROM f ORDER BY off`;
    this.ack = `DELETE FROM ${P} WHERE ns = $1 AND stream = $2 AND grp = $3 AND off = ANY($4::int8[])`;
  }
}

export function streamWakeKey(ns: string, stream: string): string {
  return `s\n${ns}\n${stream}`;
}

export class PgStream implements StreamStore {
  private readonly sql: StreamSql;
  private readonly appendSql: string;
  private readonly appendName: string;

  constructor(
    private readonly ns: string,
    private readonly db: PgInstance,
    private readonly clock: Clock,
    private readonly limits: NamespaceLimits,
  ) {
    this.sql = db.streamSql;
    const which = (limits.streamMaxCount > 0 ? 1 : 0) + (limits.streamMaxAgeSeconds > 0 ? 2 : 0);
    this.appendSql = this.sql.append[which]!;
    this.appendName = `s_app${which}`;
  }

  async append(stream: string, payload: Bytes, attributes: Attributes): Promise<number> {
    const now = this.clock.now();
    const r = await this.db.query<{ off: number }>(this.appendName, this.appendSql, this.appendValues(stream, payload, attributes, now));
    return r.rows[0]!.off;
  }

  private appendValues(stream: string, payload: Bytes, attributes: Attributes, now: number): unknown[] {
    const values: unknown[] = [this.ns, stream, buf(payload), encodeAttrs(attributes), now, this.db.wakeChannel, streamWakeKey(this.ns, stream)];
    if (this.limits.streamMaxCount > 0) values.push(this.limits.streamMaxCount);
    if (this.limits.streamMaxAgeSeconds > 0) values.push(now - this.limits.streamMaxAgeSeconds * 1000);
    return values;
  }

  /** stream_idempotent: the record and its idempotency record in one transaction. */
  appendOnce(stream: string, payload: Bytes, attributes: Attributes, token: IdempotencyToken): Promise<Once<number>> {
    const now = this.clock.now();
    return pgOnce(this.db, this.ns, token, now, NUM, async (q) => {
      const r = await q<{ off: number }>(this.appendName, this.appendSql, this.appendValues(stream, payload, attributes, now));
      return r.rows[0]!.off;
    });
  }

  async read(stream: string, fromOffset: number, limit: number): Promise<StreamRecord[]> {
    const r = await this.db.query<RecordRow>("s_read", this.sql.read, [this.ns, stream, fromOffset, limit]);
    return r.rows.map(toRecord);
  }

  async readGroup(stream: string, group: string, consumer: string, count: number, blockMs: number, signal?: AbortSignal): Promise<StreamRecord[]> {
    const first = await this.readGroupNow(stream, group, consumer, count);
    if (first.length || blockMs <= 0) return first;
    return this.db.waiters.poll(streamWakeKey(this.ns, stream), blockMs, signal, () => this.readGroupNow(stream, group, consumer, count));
  }

  private readGroupNow(stream: string, group: string, consumer: string, count: number): Promise<StreamRecord[]> {
    const now = this.clock.now();
    const claimMs = this.limits.streamClaimTimeoutSeconds * 1000;
    return this.db.tx(async (c) => {
      const g = await c.query<{ cursor: number }>({ name: "s_lockgrp", text: this.sql.lockGroup, values: [this.ns, stream, group] });
      const cursor = g.rows[0]!.cursor;
      const reclaimed = await c.query<RecordRow>({
        name: "s_reclaim",
        text: this.sql.reclaim,
        values: [this.ns, stream, group, now - claimMs, count, consumer, now],
      });
      const out = reclaimed.rows.map(toRecord);
      if (out.length < count) {
        const fresh = await c.query<RecordRow>({
          name: "s_fresh",
          text: this.sql.fresh,
          values: [this.ns, stream, group, cursor, count - out.length, consumer, now],
        });
        for (const row of fresh.rows) out.push(toRecord(row));
      }
      return out;
    });
  }

  async ackGroup(stream: string, group: string, offsets: number[]): Promise<number> {
    if (!offsets.length) return 0;
    return (await this.db.query("s_ack", this.sql.ack, [this.ns, stream, group, offsets])).rowCount ?? 0;
  }
}
