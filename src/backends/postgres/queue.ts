/**
 * Queue on table queue. A message is visible when visible_at <= now. A
 * dequeue is one statement: it locks up to n visible rows with FOR UPDATE
 * SKIP LOCKED (concurrent consumers never wait on nor share a row), moves the
 * ones already delivered maxDeliveries times to `<queue>.dlq`, and leases the
 * rest with a fresh receipt "<id>.<random>" (ack/nack/extend hit the primary
 * key). An expired lease is simply visible again; its receipt stays valid
 * until the next lease replaces it. Enqueue and nack NOTIFY the wake channel
 * in the same statement, so a long poll anywhere wakes once the row commits.
 *
 * Enqueues and acks of one queue issued in the same event-loop turn go out as
 * one statement (common/turn-batch.ts): one multi-row INSERT with one NOTIFY
 * saying how many rows arrived (waiters.ts wakes only as many long polls as
 * can take them), one DELETE for all receipts. PostgreSQL serializes the
 * commits of transactions that NOTIFY, and every statement is a commit: per
 * message, they cost more than the rows themselves.
 */
import { errors } from "../../core/errors.js";
import { malformedReceipt } from "../receipt.js";
import type { Clock } from "../../core/clock.js";
import type { Attributes, Bytes, DequeueOptions, IdempotencyToken, NamespaceLimits, Once, QueueDepth, QueueMessage, QueueStore } from "../driver.js";
import { pgOnce, STR } from "./idempotency.js";
import type { PgInstance } from "./instance.js";
import { buf, decodeAttrs, encodeAttrs } from "./sql.js";
import { TurnBatcher } from "../common/turn-batch.js";

export const DLQ_SUFFIX = ".dlq";

export class QueueSql {
  readonly enqueue: string;
  readonly enqueueNotify: string;
  readonly dequeue: string;
  readonly ack: string;
  readonly nack: string;
  readonly nackNotify: string;
  readonly extend: string;
  readonly notify = "SELECT pg_notify($1, $2)";
  readonly enqueueMany: string;
  readonly enqueueManyNotify: string;
  readonly ackMany: string;
  readonly depths: string;

  constructor(S: string) {
    const Q = `${S}.queue`;
    // $1 ns, $2 queue, $3 payload, $4 attributes, $5 now, $6 visible_at, [$7 channel, $8 wake key]
    const insert = `INSERT INTO ${Q} (ns, queue, payload, attributes, enqueued_at, visible_at)
       VALUES ($1, $2, $3, $4::jsonb, $5::int8, $6::int8) RETURNING id`;
    this.enqueue = insert;
    this.enqueueNotify = `WITH i AS (${insert}) SELECT id, pg_notify($7, $8) FROM i`;
    // $1 ns, $2 queue, $3 payloads, $4 attributes, $5 enqueued_at, $6 visible_at (arrays, aligned), [$7 channel, $8 wake payload]
    // Ids are drawn in v (materialized once), so each answer row names its item (o) exactly.
    const many = `WITH v AS MATERIALIZED (
         SELECT nextval('${S}.queue_id_seq') AS id, u.o, u.p, u.a, u.e, u.v
         FROM unnest($3::bytea[], $4::jsonb[], $5::int8[], $6::int8[]) WITH ORDINALITY AS u(p, a, e, v, o)
       ), i AS (
         INSERT INTO ${Q} (id, ns, queue, payload, attributes, enqueued_at, visible_at) SELECT id, $1, $2, p, a, e, v FROM v
       )`;
    this.enqueueMany = `${many} SELECT id, o FROM v`;
    this.enqueueManyNotify = `${many} SELECT v.id, v.o FROM v, (SELECT pg_notify($7, $8)) n`;
    // $1 ns, $2 queue, $3 ids, $4 receipts (aligned)
    this.ackMany = `DELETE FROM ${Q} q USING unnest($3::int8[], $4::text[]) AS u(id, r)
       WHERE q.id = u.id AND q.receipt = u.r AND q.ns = $1 AND q.queue = $2 RETURNING q.receipt`;
    // $1 ns, $2 queue, $3 now, $4 limit, $5 lease end, $6 dead-letter queue (NULL: none), $7 max deliveries
    const dying = `$6::text IS NOT NULL AND q.delivery_count >= $7::int4`;
    this.dequeue = `WITH c AS (
         SELECT id, visible_at FROM ${Q} WHERE ns = $1 AND queue = $2 AND visible_at <= $3::int8
         ORDER BY visible_at, id LIMIT $4 FOR UPDATE SKIP LOCKED
       ), dead AS (
         UPDATE ${Q} q SET queue = $6, delivery_count = 0, enqueued_at = $3::int8, visible_at = $3::int8, receipt = NULL,
           attributes = coalesce(q.attributes, '{}'::jsonb) || jsonb_build_object(
             'prism-dlq-reason', 'max-deliveries', 'prism-original-queue', $2::text,
             'prism-delivery-count', q.delivery_count::text, 'prism-original-enqueued-at', q.enqueued_at::text)
         FROM c WHERE q.id = c.id AND ${dying}
         RETURNING q.id
       ), leased AS (
         UPDATE ${Q} q SET receipt = q.id::text || '.' || replace(gen_random_uuid()::text, '-', ''),
           delivery_count = q.delivery_count + 1, visible_at = $5::int8
         FROM c WHERE q.id = c.id AND NOT (${dying})
         RETURNING q.id, c.visible_at AS ord, q.payload, q.attributes, q.enqueued_at, q.delivery_count, q.receipt
       )
       SELECT id, ord, payload, attributes, enqueued_at, delivery_count, receipt FROM leased
       UNION ALL SELECT id, NULL, NULL, NULL, NULL, NULL, NULL FROM dead`;
    // $1 id, $2 ns, $3 queue, $4 receipt, [$5 visible_at, [$6 channel, $7 wake key]]
    const mine = `id = $1 AND ns = $2 AND queue = $3 AND receipt = $4`;
    this.ack = `DELETE FROM ${Q} WHERE ${mine}`;
    this.nack = `UPDATE ${Q} SET visible_at = $5::int8, receipt = NULL WHERE ${mine}`;
    this.nackNotify = `WITH u AS (${this.nack} RETURNING id) SELECT id, pg_notify($6, $7) FROM u`;
    this.extend = `UPDATE ${Q} SET visible_at = $5::int8 WHERE ${mine}`;
    // $1 ns, $2 now. A leased row has a receipt and visible_at at its lease end; an expired lease is visible again.
    this.depths = `SELECT queue, count(*) FILTER (WHERE visible_at <= $2::int8)::int4 AS visible,
         count(*) FILTER (WHERE visible_at > $2::int8 AND receipt IS NULL)::int4 AS delayed,
         count(*) FILTER (WHERE visible_at > $2::int8 AND receipt IS NOT NULL)::int4 AS inflight
       FROM ${Q} WHERE ns = $1 GROUP BY queue ORDER BY queue`;
  }
}

interface LeaseRow {
  id: number;
  ord: number | null;
  payload: Buffer | null;
  attributes: Record<string, string> | null;
  enqueued_at: number | null;
  delivery_count: number | null;
  receipt: string | null;
}

/** "<id>.<32 hex>" (dequeue's SQL) → id; anything else was never issued: malformedReceipt (INVALID_ARGUMENT). */
function receiptId(receipt: string): number {
  const m = /^(\d{1,19})\.[0-9a-f]{32}$/.exec(receipt);
  const id = m ? Number(m[1]) : NaN;
  if (!Number.isSafeInteger(id) || id <= 0) throw malformedReceipt();
  return id;
}

export function queueWakeKey(ns: string, queue: string): string {
  return `q\n${ns}\n${queue}`;
}

/** Rows per batched statement; a fuller turn sends another one. */
const MAX_BATCH = 500;
/**
 * Payload bytes per batched INSERT (its bytea[] parameter travels hex-encoded,
 * as one string); a larger payload goes alone, in binary, as before batching.
 */
const MAX_BATCH_BYTES = 1 << 20;
const ALONE_BYTES = 64 * 1024;

interface EnqueueItem {
  payload: Buffer;
  attributes: string | null;
  now: number;
  visibleAt: number;
}

interface AckItem {
  id: number;
  receipt: string;
}

export class PgQueue implements QueueStore {
  private readonly sql: QueueSql;
  /** Keyed by "<0|1 delayed><queue>": delayed messages wake nobody, so they batch apart. */
  private readonly enqueues = new TurnBatcher<EnqueueItem, string>((key, items) => this.enqueueBatch(key, items), MAX_BATCH, MAX_BATCH_BYTES);
  private readonly acks = new TurnBatcher<AckItem, void>((queue, items) => this.ackBatch(queue, items), MAX_BATCH);
  /** Dequeue attempts of one turn, keyed by "<visibility ms>\n<queue>": one lease statement for all, messages handed out in order. */
  private readonly dequeues = new TurnBatcher<number, QueueMessage[]>((key, wants) => this.dequeueBatch(key, wants), 64);

  constructor(
    private readonly ns: string,
    private readonly db: PgInstance,
    private readonly clock: Clock,
    private readonly limits: NamespaceLimits,
  ) {
    this.sql = db.queueSql;
  }

  enqueue(queue: string, payload: Bytes, attributes: Attributes, delayMs: number): Promise<string> {
    const now = this.clock.now();
    const item: EnqueueItem = { payload: buf(payload), attributes: encodeAttrs(attributes), now, visibleAt: now + delayMs };
    const key = (delayMs > 0 ? "1" : "0") + queue;
    if (item.payload.length > ALONE_BYTES) return this.enqueueBatch(key, [item]).then((ids) => ids[0]!);
    return this.enqueues.add(key, item, item.payload.length);
  }

  private async enqueueBatch(key: string, items: EnqueueItem[]): Promise<string[]> {
    const queue = key.slice(1);
    // A delayed message wakes nobody now; polling finds it when it comes due.
    const wake = key[0] === "0";
    if (items.length === 1) {
      const it = items[0]!;
      const values: unknown[] = [this.ns, queue, it.payload, it.attributes, it.now, it.visibleAt];
      const r = wake
        ? await this.db.query<{ id: number }>("q_enq_n", this.sql.enqueueNotify, [...values, this.db.wakeChannel, `${queueWakeKey(this.ns, queue)}\t1`])
        : await this.db.query<{ id: number }>("q_enq", this.sql.enqueue, values);
      return [String(r.rows[0]!.id)];
    }
    const values: unknown[] = [this.ns, queue, items.map((i) => i.payload), items.map((i) => i.attributes), items.map((i) => i.now), items.map((i) => i.visibleAt)];
    const r = wake
      ? await this.db.query<{ id: string; o: string }>("q_enq_bn", this.sql.enqueueManyNotify, [
          ...values,
          this.db.wakeChannel,
          `${queueWakeKey(this.ns, queue)}\t${items.length}`,
        ])
      : await this.db.query<{ id: string; o: string }>("q_enq_b", this.sql.enqueueMany, values);
    const ids = new Array<string>(items.length);
    for (const row of r.rows) ids[Number(row.o) - 1] = String(row.id);
    return ids;
  }

  /** queue_idempotent: the message and its idempotency record in one transaction (the wake NOTIFY goes out at commit). */
  enqueueOnce(queue: string, payload: Bytes, attributes: Attributes, delayMs: number, token: IdempotencyToken): Promise<Once<string>> {
    const now = this.clock.now();
    const values: unknown[] = [this.ns, queue, buf(payload), encodeAttrs(attributes), now, now + delayMs];
    return pgOnce(this.db, this.ns, token, now, STR, async (q) => {
      const r =
        delayMs > 0
          ? await q<{ id: number }>("q_enq", this.sql.enqueue, values)
          : await q<{ id: number }>("q_enq_n", this.sql.enqueueNotify, [...values, this.db.wakeChannel, `${queueWakeKey(this.ns, queue)}\t1`]);
      return String(r.rows[0]!.id);
    });
  }

  async dequeue(queue: string, opts: DequeueOptions): Promise<QueueMessage[]> {
    const key = `${opts.visibilityTimeoutMs}\n${queue}`;
    const attempt = () => this.dequeues.add(key, opts.maxMessages);
    const first = await attempt();
    if (first.length || opts.waitMs <= 0) return first;
    return this.db.waiters.poll(queueWakeKey(this.ns, queue), opts.waitMs, opts.signal, attempt, opts.maxMessages);
  }

  /** Leases for every attempt of the batch at once; the oldest messages go to the earliest attempt, up to its max. */
  private async dequeueBatch(key: string, wants: number[]): Promise<QueueMessage[][]> {
    const nl = key.indexOf("\n");
    const visibilityTimeoutMs = Number(key.slice(0, nl));
    const queue = key.slice(nl + 1);
    let total = 0;
    for (const w of wants) total += w;
    const got = await this.leaseNow(queue, { maxMessages: total, visibilityTimeoutMs, waitMs: 0 });
    if (wants.length === 1) return [got];
    let at = 0;
    return wants.map((w) => got.slice(at, (at += w)));
  }

  private async leaseNow(queue: string, opts: DequeueOptions): Promise<QueueMessage[]> {
    const dlq = queue.endsWith(DLQ_SUFFIX) ? null : queue + DLQ_SUFFIX;
    const out: QueueMessage[] = [];
    let deadLettered = false;
    // Dead-lettered candidates free their slots: look again (bounded) until full or empty.
    for (let round = 0; round < 10 && out.length < opts.maxMessages; round++) {
      const now = this.clock.now();
      const want = opts.maxMessages - out.length;
      const r = await this.db.query<LeaseRow>("q_deq", this.sql.dequeue, [
        this.ns,
        queue,
        now,
        want,
        now + opts.visibilityTimeoutMs,
        dlq,
        this.limits.maxDeliveries,
      ]);
      const leased = r.rows.filter((row) => row.receipt !== null);
      leased.sort((a, b) => a.ord! - b.ord! || a.id - b.id);
      for (const row of leased) {
        out.push({
          messageId: String(row.id),
          payload: row.payload!,
          attributes: decodeAttrs(row.attributes),
          receipt: row.receipt!,
          deliveryCount: row.delivery_count!,
          enqueuedAtMs: row.enqueued_at!,
        });
      }
      const dead = r.rows.length - leased.length;
      if (dead > 0) deadLettered = true;
      if (dead === 0 || r.rows.length < want) break;
    }
    if (deadLettered && dlq) {
      await this.db.query("q_notify", this.sql.notify, [this.db.wakeChannel, queueWakeKey(this.ns, dlq)]).catch(() => {});
    }
    return out;
  }

  async ack(queue: string, receipt: string): Promise<void> {
    return this.acks.add(queue, { id: receiptId(receipt), receipt });
  }

  private async ackBatch(queue: string, items: AckItem[]): Promise<(void | Error)[]> {
    if (items.length === 1) {
      const r = await this.db.query("q_ack", this.sql.ack, [items[0]!.id, this.ns, queue, items[0]!.receipt]);
      return [r.rowCount ? undefined : errors.staleReceipt(queue)];
    }
    const r = await this.db.query<{ receipt: string }>("q_ack_b", this.sql.ackMany, [this.ns, queue, items.map((i) => i.id), items.map((i) => i.receipt)]);
    // A receipt acked twice in one batch: the first call succeeds, the second is stale (as when they run one after the other).
    const deleted = new Set(r.rows.map((row) => row.receipt));
    return items.map((i) => (deleted.delete(i.receipt) ? undefined : errors.staleReceipt(queue)));
  }

  async nack(queue: string, receipt: string, delayMs: number): Promise<void> {
    const id = receiptId(receipt);
    const values: unknown[] = [id, this.ns, queue, receipt, this.clock.now() + delayMs];
    const r =
      delayMs > 0
        ? await this.db.query("q_nack", this.sql.nack, values)
        : await this.db.query("q_nack_n", this.sql.nackNotify, [...values, this.db.wakeChannel, queueWakeKey(this.ns, queue)]);
    if (!r.rowCount) throw errors.staleReceipt(queue);
  }

  async extendVisibility(queue: string, receipt: string, ms: number): Promise<void> {
    const id = receiptId(receipt);
    const r = await this.db.query("q_extend", this.sql.extend, [id, this.ns, queue, receipt, this.clock.now() + ms]);
    if (!r.rowCount) throw errors.staleReceipt(queue);
  }

  /** Migration drain check: every queue of the namespace holding a row, by state (every process's leases included). */
  async depths(): Promise<QueueDepth[]> {
    const r = await this.db.query<QueueDepth>("q_depths", this.sql.depths, [this.ns, this.clock.now()]);
    return r.rows;
  }
}
