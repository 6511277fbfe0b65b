/**
 * Queue on table queue. A message is visible when visible_at <= now. A
 * dequeue is one statement: it locks up to n visible rows with FOR UPDATE
 * SKIP LOCKED (concurrent consumers never wait on nor share a row), moves the
 * ones already delivered maxDeliveries times to `<queue>.dlq`, and leases the
 * rest with a fresh receipt "<id>.<random>" (ack/nack/extend hit the primary
 * key). An expired lease is simply visible again; its receipt stays valid
 * until the next lease replaces it. Enqueue and nack NOTIFY the wake channel
 * in the same statement, so a long poll anywhere wakes once the row commits.
 */
import { errors } from "../../core/errors.js";
import type { Clock } from "../../core/clock.js";
import type { Attributes, Bytes, DequeueOptions, NamespaceLimits, QueueMessage, QueueStore } from "../driver.js";
import type { PgInstance } from "./instance.js";
import { buf, decodeAttrs, encodeAttrs } from "./sql.js";

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

  constructor(S: string) {
    const Q = `${S}.queue`;
    // $1 ns, $2 queue, $3 payload, $4 attributes, $5 now, $6 visible_at, [$7 channel, $8 wake key]
    const insert = `INSERT INTO ${Q} (ns, queue, payload, attributes, enqueued_at, visible_at)
       VALUES ($1, $2, $3, $4::jsonb, $5::int8, $6::int8) RETURNING id`;
    this.enqueue = insert;
    this.enqueueNotify = `WITH i AS (${insert}) SELECT id, pg_notify($7, $8) FROM i`;
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

/** "<id>.<random>" → id; undefined for anything Prism did not issue (stale by definition). */
function receiptId(receipt: string): number | undefined {
  const dot = receipt.indexOf(".");
  if (dot <= 0) return undefined;
  const id = Number(receipt.slice(0, dot));
  return Number.isSafeInteger(id) && id > 0 ? id : undefined;
}

export function queueWakeKey(ns: string, queue: string): string {
  return `q\n${ns}\n${queue}`;
}

export class PgQueue implements QueueStore {
  private readonly sql: QueueSql;

  constructor(
    private readonly ns: string,
    private readonly db: PgInstance,
    private readonly clock: Clock,
    private readonly limits: NamespaceLimits,
  ) {
    this.sql = db.queueSql;
  }

  async enqueue(queue: string, payload: Bytes, attributes: Attributes, delayMs: number): Promise<string> {
    const now = this.clock.now();
    const values: unknown[] = [this.ns, queue, buf(payload), encodeAttrs(attributes), now, now + delayMs];
    // A delayed message wakes nobody now; polling finds it when it comes due.
    const r =
      delayMs > 0
        ? await this.db.query<{ id: number }>("q_enq", this.sql.enqueue, values)
        : await this.db.query<{ id: number }>("q_enq_n", this.sql.enqueueNotify, [...values, this.db.wakeChannel, queueWakeKey(this.ns, queue)]);
    return String(r.rows[0]!.id);
  }

  async dequeue(queue: string, opts: DequeueOptions): Promise<QueueMessage[]> {
    const first = await this.leaseNow(queue, opts);
    if (first.length || opts.waitMs <= 0) return first;
    return this.db.waiters.poll(queueWakeKey(this.ns, queue), opts.waitMs, opts.signal, () => this.leaseNow(queue, opts));
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
    const id = receiptId(receipt);
    if (id === undefined) throw errors.staleReceipt(queue);
    const r = await this.db.query("q_ack", this.sql.ack, [id, this.ns, queue, receipt]);
    if (!r.rowCount) throw errors.staleReceipt(queue);
  }

  async nack(queue: string, receipt: string, delayMs: number): Promise<void> {
    const id = receiptId(receipt);
    if (id === undefined) throw errors.staleReceipt(queue);
    const values: unknown[] = [id, this.ns, queue, receipt, this.clock.now() + delayMs];
    const r =
      delayMs > 0
        ? await this.db.query("q_nack", this.sql.nack, values)
        : await this.db.query("q_nack_n", this.sql.nackNotify, [...values, this.db.wakeChannel, queueWakeKey(this.ns, queue)]);
    if (!r.rowCount) throw errors.staleReceipt(queue);
  }

  async extendVisibility(queue: string, receipt: string, ms: number): Promise<void> {
    const id = receiptId(receipt);
    if (id === undefined) throw errors.staleReceipt(queue);
    const r = await this.db.query("q_extend", this.sql.extend, [id, this.ns, queue, receipt, this.clock.now() + ms]);
    if (!r.rowCount) throw errors.staleReceipt(queue);
  }
}
