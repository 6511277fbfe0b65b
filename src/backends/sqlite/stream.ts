/**
 * Stream on tables prism_stream (records), prism_stream_meta (the last offset
 * handed out, so offsets never repeat even when retention empties a stream),
 * prism_stream_group (each group's cursor: the last offset it was given) and
 * prism_stream_pending (records given to a consumer and not yet acked).
 * A new group starts at the oldest retained record.
 */
import type { Clock } from "../../core/clock.js";
import type { Attributes, Bytes, IdempotencyToken, NamespaceLimits, Once, StreamRecord, StreamStore } from "../driver.js";
import { NUM, OnceStatements } from "./idempotency.js";
import { decodeAttrs, encodeAttrs, type Db, type Stmt } from "./db.js";
import type { Waiters } from "./waiters.js";

interface RecordRow {
  offset: number;
  payload: Buffer;
  attributes: string | null;
  ts: number;
}

interface AppendArgs {
  ns: string;
  stream: string;
  payload: Bytes;
  attrs: string | null;
  now: number;
  maxCount: number;
  maxAgeMs: number;
}

interface ReadGroupArgs {
  ns: string;
  stream: string;
  grp: string;
  consumer: string;
  count: number;
  now: number;
  claimMs: number;
}

function toRecord(r: RecordRow, deliveryCount?: number): StreamRecord {
  const rec: StreamRecord = { offset: r.offset, payload: r.payload, attributes: decodeAttrs(r.attributes), timestampMs: r.ts };
  if (deliveryCount !== undefined) rec.deliveryCount = deliveryCount;
  return rec;
}

export class StreamStatements {
  readonly read: Stmt<{ ns: string; stream: string; from: number; limit: number }, RecordRow>;
  readonly append: (a: AppendArgs) => number;
  readonly readGroup: (a: ReadGroupArgs) => StreamRecord[];
  readonly ackGroup: (ns: string, stream: string, grp: string, offsets: number[]) => number;
  readonly once: OnceStatements;

  constructor(db: Db) {
    this.once = OnceStatements.of(db);
    const nextOffset = db
      .prepare<{ ns: string; stream: string }, number>(
        `INSERT INTO prism_stream_meta (ns, stream, last_offset) VALUES (@ns, @stream, 1)
         ON CONFLICT (ns, stream) DO UPDATE SET last_offset = last_offset + 1 RETURNING last_offset`,
      )
      .pluck();
    const insert = db.prepare<{ ns: string; stream: string; offset: number; payload: Bytes; attrs: string | null; now: number }>(
      `INSERT INTO prism_stream (ns, stream, "offset", payload, attributes, ts) VALUES (@ns, @stream, @offset, @payload, @attrs, @now)`,
    );
    const trimCount = db.prepare<{ ns: string; stream: string; below: number }>(
      `DELETE FROM prism_stream WHERE ns = @ns AND stream = @stream AND "offset" < @below`,
    );
    // Records are appended in time order, so the expired ones are a head of the
    // log: cut below the first record young enough (cost = records removed).
    const trimAge = db.prepare<{ ns: string; stream: string; cutoff: number }>(
      `DELETE FROM prism_stream WHERE ns = @ns AND stream = @stream AND "offset" <
         (SELECT "offset" FROM prism_stream WHERE ns = @ns AND stream = @stream AND ts >= @cutoff ORDER BY "offset" LIMIT 1)`,
    );
    this.read = db.prepare<{ ns: string; stream: string; from: number; limit: number }, RecordRow>(
      `SELECT "offset", payload, attributes, ts FROM prism_stream
       WHERE ns = @ns AND stream = @stream AND "offset" >= @from ORDER BY "offset" LIMIT @limit`,
    );
    const one = db.prepare<{ ns: string; stream: string; offset: number }, RecordRow>(
      `SELECT "offset", payload, attributes, ts FROM prism_stream WHERE ns = @ns AND stream = @stream AND "offset" = @offset`,
    );
    const after = db.prepare<{ ns: string; stream: string; from: number; limit: number }, RecordRow>(
      `SELECT "offset", payload, attributes, ts FROM prism_stream
       WHERE ns = @ns AND stream = @stream AND "offset" > @from ORDER BY "offset" LIMIT @limit`,
    );
    const cursor = db
      .prepare<{ ns: string; stream: string; grp: string }, number>(
        `SELECT cursor FROM prism_stream_group WHERE ns = @ns AND stream = @stream AND grp = @grp`,
      )
      .pluck();
    const setCursor = db.prepare<{ ns: string; stream: string; grp: string; cursor: number }>(
      `INSERT INTO prism_stream_group (ns, stream, grp, cursor) VALUES (@ns, @stream, @grp, @cursor)
       ON CONFLICT (ns, stream, grp) DO UPDATE SET cursor = excluded.cursor`,
    );
    const idle = db.prepare<{ ns: string; stream: string; grp: string; before: number; limit: number }, { offset: number; delivery_count: number }>(
      `SELECT "offset", delivery_count FROM prism_stream_pending
       WHERE ns = @ns AND stream = @stream AND grp = @grp AND delivered_at <= @before
       ORDER BY delivered_at, "offset" LIMIT @limit`,
    );
    const claim = db.prepare<{ ns: string; stream: string; grp: string; offset: number; consumer: string; now: number }>(
      `UPDATE prism_stream_pending SET consumer = @consumer, delivered_at = @now, delivery_count = delivery_count + 1
       WHERE ns = @ns AND stream = @stream AND grp = @grp AND "offset" = @offset`,
    );
    const addPending = db.prepare<{ ns: string; stream: string; grp: string; offset: number; consumer: string; now: number }>(
      `INSERT INTO prism_stream_pending (ns, stream, grp, "offset", consumer, delivered_at, delivery_count)
       VALUES (@ns, @stream, @grp, @offset, @consumer, @now, 1)`,
    );
    const dropPending = db.prepare<{ ns: string; stream: string; grp: string; offset: number }>(
      `DELETE FROM prism_stream_pending WHERE ns = @ns AND stream = @stream AND grp = @grp AND "offset" = @offset`,
    );

    this.append = db
      .transaction((a: AppendArgs): number => {
        const offset = nextOffset.get({ ns: a.ns, stream: a.stream })!;
        insert.run({ ns: a.ns, stream: a.stream, offset, payload: a.payload, attrs: a.attrs, now: a.now });
        if (a.maxCount > 0 && offset > a.maxCount) trimCount.run({ ns: a.ns, stream: a.stream, below: offset - a.maxCount + 1 });
        if (a.maxAgeMs > 0) trimAge.run({ ns: a.ns, stream: a.stream, cutoff: a.now - a.maxAgeMs });
        return offset;
      })
      .immediate;

    this.readGroup = db
      .transaction((a: ReadGroupArgs): StreamRecord[] => {
        const key = { ns: a.ns, stream: a.stream, grp: a.grp };
        const out: StreamRecord[] = [];
        // Pending records whose consumer went quiet (longest-idle first): reassign them first.
        for (const p of idle.all({ ...key, before: a.now - a.claimMs, limit: a.count })) {
          const rec = one.get({ ns: a.ns, stream: a.stream, offset: p.offset });
          if (!rec) {
            // Retention removed the record: nothing left to deliver.
            dropPending.run({ ...key, offset: p.offset });
            continue;
          }
          claim.run({ ...key, offset: p.offset, consumer: a.consumer, now: a.now });
          out.push(toRecord(rec, p.delivery_count + 1));
        }
        if (out.length < a.count) {
          const from = cursor.get(key) ?? 0;
          const fresh = after.all({ ns: a.ns, stream: a.stream, from, limit: a.count - out.length });
          for (const r of fresh) {
            addPending.run({ ...key, offset: r.offset, consumer: a.consumer, now: a.now });
            out.push(toRecord(r, 1));
          }
          if (fresh.length) setCursor.run({ ...key, cursor: fresh[fresh.length - 1]!.offset });
        }
        return out;
      })
      .immediate;

    this.ackGroup = db
      .transaction((ns: string, stream: string, grp: string, offsets: number[]): number => {
        let n = 0;
        for (const offset of offsets) n += dropPending.run({ ns, stream, grp, offset }).changes;
        return n;
      })
      .immediate;
  }
}

export function streamWaitKey(ns: string, stream: string): string {
  return `s\0${ns}\0${stream}`;
}

export class SqliteStream implements StreamStore {
  constructor(
    private readonly ns: string,
    private readonly s: () => StreamStatements,
    private readonly clock: Clock,
    private readonly limits: NamespaceLimits,
    private readonly waiters: Waiters,
  ) {}

  async append(stream: string, payload: Bytes, attributes: Attributes): Promise<number> {
    const offset = this.s().append({
      ns: this.ns,
      stream,
      payload,
      attrs: encodeAttrs(attributes),
      now: this.clock.now(),
      maxCount: this.limits.streamMaxCount,
      maxAgeMs: this.limits.streamMaxAgeSeconds * 1000,
    });
    this.waiters.notify(streamWaitKey(this.ns, stream));
    return offset;
  }

  /** stream_idempotent: the record and its idempotency record in one transaction. */
  async appendOnce(stream: string, payload: Bytes, attributes: Attributes, token: IdempotencyToken): Promise<Once<number>> {
    const s = this.s();
    const now = this.clock.now();
    const once = s.once.run(this.ns, token, now, NUM, () =>
      s.append({
        ns: this.ns,
        stream,
        payload,
        attrs: encodeAttrs(attributes),
        now,
        maxCount: this.limits.streamMaxCount,
        maxAgeMs: this.limits.streamMaxAgeSeconds * 1000,
      }),
    );
    if (once.replayedHash === undefined) this.waiters.notify(streamWaitKey(this.ns, stream));
    return once;
  }

  async read(stream: string, fromOffset: number, limit: number): Promise<StreamRecord[]> {
    return this.s()
      .read.all({ ns: this.ns, stream, from: fromOffset, limit })
      .map((r) => toRecord(r));
  }

  async readGroup(stream: string, group: string, consumer: string, count: number, blockMs: number, signal?: AbortSignal): Promise<StreamRecord[]> {
    const first = this.readGroupNow(stream, group, consumer, count);
    if (first.length || blockMs <= 0) return first;
    return this.waiters.poll(streamWaitKey(this.ns, stream), blockMs, signal, () => this.readGroupNow(stream, group, consumer, count));
  }

  private readGroupNow(stream: string, grp: string, consumer: string, count: number): StreamRecord[] {
    return this.s().readGroup({
      ns: this.ns,
      stream,
      grp,
      consumer,
      count,
      now: this.clock.now(),
      claimMs: this.limits.streamClaimTimeoutSeconds * 1000,
    });
  }

  async ackGroup(stream: string, group: string, offsets: number[]): Promise<number> {
    return this.s().ackGroup(this.ns, stream, group, offsets);
  }
}
