/**
 * Queue on table prism_queue. A message is visible when visible_at <= now.
 * Leasing sets a fresh receipt, bumps delivery_count and pushes visible_at to
 * the lease end; an expired lease is simply visible again (no sweep needed),
 * and its receipt stays valid until the next lease replaces it. The receipt
 * handed out is "<id>.<random>" so ack/nack/extend hit the primary key.
 */
import { randomBytes } from "node:crypto";
import { errors } from "../../core/errors.js";
import { malformedReceipt } from "../receipt.js";
import type { Clock } from "../../core/clock.js";
import type { Attributes, Bytes, DequeueOptions, IdempotencyToken, NamespaceLimits, Once, QueueDepth, QueueMessage, QueueStore } from "../driver.js";
import { OnceStatements, STR } from "./idempotency.js";
import { decodeAttrs, encodeAttrs, type Db, type Stmt } from "./db.js";
import type { Waiters } from "./waiters.js";

export const DLQ_SUFFIX = ".dlq";

interface Candidate {
  id: number;
  payload: Buffer;
  attributes: string | null;
  enqueued_at: number;
  delivery_count: number;
}

type ReceiptQ = { id: number; ns: string; queue: string; receipt: string };

interface LeaseArgs {
  ns: string;
  queue: string;
  max: number;
  visibilityMs: number;
  maxDeliveries: number;
  now: number;
}

export class QueueStatements {
  readonly insert: Stmt<{ ns: string; queue: string; payload: Bytes; attrs: string | null; now: number; visible: number }, number>;
  readonly ack: Stmt<ReceiptQ>;
  readonly nack: Stmt<ReceiptQ & { visible: number }>;
  readonly extend: Stmt<ReceiptQ & { visible: number }>;
  /** Returns the leased messages and whether any message moved to the dead-letter queue. */
  readonly lease: (a: LeaseArgs) => { messages: QueueMessage[]; deadLettered: boolean };
  /** Per queue of a namespace: its messages by state (QueueStore.depths). */
  readonly depths: Stmt<{ ns: string; now: number }, QueueDepth>;
  private readonly candidates;
  private readonly setLease;
  private readonly toDlq;
  readonly once: OnceStatements;

  constructor(db: Db) {
    this.once = OnceStatements.of(db);
    this.insert = db
      .prepare<{ ns: string; queue: string; payload: Bytes; attrs: string | null; now: number; visible: number }, number>(
        `INSERT INTO prism_queue (ns, queue, payload, attributes, enqueued_at, visible_at)
         VALUES (@ns, @queue, @payload, @attrs, @now, @visible) RETURNING id`,
      )
      .pluck();
    this.depths = db.prepare<{ ns: string; now: number }, QueueDepth>(
      `SELECT queue, sum(visible_at <= @now) AS visible,
         sum(visible_at > @now AND receipt IS NULL) AS delayed, sum(visible_at > @now AND receipt IS NOT NULL) AS inflight
       FROM prism_queue WHERE ns = @ns GROUP BY queue ORDER BY queue`,
    );
    this.candidates = db.prepare<{ ns: string; queue: string; now: number; limit: number }, Candidate>(
      `SELECT id, payload, attributes, enqueued_at, delivery_count FROM prism_queue
       WHERE ns = @ns AND queue = @queue AND visible_at <= @now
       ORDER BY visible_at, id LIMIT @limit`,
    );
    this.setLease = db.prepare<{ id: number; receipt: string; visible: number }>(
      `UPDATE prism_queue SET receipt = @receipt, delivery_count = delivery_count + 1, visible_at = @visible WHERE id = @id`,
    );
    this.toDlq = db.prepare<{ id: number; queue: string; attrs: string; now: number }>(
      `UPDATE prism_queue SET queue = @queue, attributes = @attrs, delivery_count = 0, enqueued_at = @now, visible_at = @now, receipt = NULL
       WHERE id = @id`,
    );
    this.ack = db.prepare<{ id: number; ns: string; queue: string; receipt: string }>(
      `DELETE FROM prism_queue WHERE id = @id AND ns = @ns AND queue = @queue AND receipt = @receipt`,
    );
    this.nack = db.prepare<{ id: number; ns: string; queue: string; receipt: string; visible: number }>(
      `UPDATE prism_queue SET visible_at = @visible, receipt = NULL
       WHERE id = @id AND ns = @ns AND queue = @queue AND receipt = @receipt`,
    );
    this.extend = db.prepare<{ id: number; ns: string; queue: string; receipt: string; visible: number }>(
      `UPDATE prism_queue SET visible_at = @visible WHERE id = @id AND ns = @ns AND queue = @queue AND receipt = @receipt`,
    );

    this.lease = db
      .transaction((a: LeaseArgs) => {
        const messages: QueueMessage[] = [];
        let deadLettered = false;
        // Dead-lettered candidates free their slot, so look again until full or empty.
        // A dead-letter queue does not dead-letter further: it is where messages end.
        const dlq = a.queue.endsWith(DLQ_SUFFIX) ? "" : a.queue + DLQ_SUFFIX;
        for (;;) {
          const want = a.max - messages.length;
          const rows = this.candidates.all({ ns: a.ns, queue: a.queue, now: a.now, limit: want });
          for (const r of rows) {
            if (dlq && r.delivery_count >= a.maxDeliveries) {
              const attrs = decodeAttrs(r.attributes);
              attrs["prism-dlq-reason"] = "max-deliveries";
              attrs["prism-original-queue"] = a.queue;
              attrs["prism-delivery-count"] = String(r.delivery_count);
              attrs["prism-original-enqueued-at"] = String(r.enqueued_at);
              this.toDlq.run({ id: r.id, queue: dlq, attrs: JSON.stringify(attrs), now: a.now });
              deadLettered = true;
              continue;
            }
            const receipt = `${r.id}.${randomBytes(9).toString("base64url")}`;
            this.setLease.run({ id: r.id, receipt, visible: a.now + a.visibilityMs });
            messages.push({
              messageId: String(r.id),
              payload: r.payload,
              attributes: decodeAttrs(r.attributes),
              receipt,
              deliveryCount: r.delivery_count + 1,
              enqueuedAtMs: r.enqueued_at,
            });
          }
          if (messages.length >= a.max || rows.length < want) break;
        }
        return { messages, deadLettered };
      })
      .immediate;
  }
}

/** "<id>.<random>" → id; NaN for anything Prism did not issue (which then matches no row). */
/** "<id>.<12 base64url>" (dequeue) → id; anything else was never issued: malformedReceipt (INVALID_ARGUMENT). */
function receiptId(receipt: string): number {
  const m = /^(\d{1,19})\.[A-Za-z0-9_-]{12}$/.exec(receipt);
  if (!m) throw malformedReceipt();
  return Number(m[1]);
}

export function queueWaitKey(ns: string, queue: string): string {
  return `q\0${ns}\0${queue}`;
}

export class SqliteQueue implements QueueStore {
  constructor(
    private readonly ns: string,
    private readonly s: () => QueueStatements,
    private readonly clock: Clock,
    private readonly limits: NamespaceLimits,
    private readonly waiters: Waiters,
  ) {}

  async enqueue(queue: string, payload: Bytes, attributes: Attributes, delayMs: number): Promise<string> {
    const now = this.clock.now();
    const id = this.s().insert.get({ ns: this.ns, queue, payload, attrs: encodeAttrs(attributes), now, visible: now + delayMs })!;
    this.waiters.notify(queueWaitKey(this.ns, queue));
    return String(id);
  }

  /** queue_idempotent: the message and its idempotency record in one transaction. */
  async enqueueOnce(queue: string, payload: Bytes, attributes: Attributes, delayMs: number, token: IdempotencyToken): Promise<Once<string>> {
    const s = this.s();
    const now = this.clock.now();
    const once = s.once.run(this.ns, token, now, STR, () =>
      String(s.insert.get({ ns: this.ns, queue, payload, attrs: encodeAttrs(attributes), now, visible: now + delayMs })!),
    );
    if (once.replayedHash === undefined) this.waiters.notify(queueWaitKey(this.ns, queue));
    return once;
  }

  async dequeue(queue: string, opts: DequeueOptions): Promise<QueueMessage[]> {
    const first = this.leaseNow(queue, opts);
    if (first.length || opts.waitMs <= 0) return first;
    return this.waiters.poll(queueWaitKey(this.ns, queue), opts.waitMs, opts.signal, () => this.leaseNow(queue, opts));
  }

  private leaseNow(queue: string, opts: DequeueOptions): QueueMessage[] {
    const r = this.s().lease({
      ns: this.ns,
      queue,
      max: opts.maxMessages,
      visibilityMs: opts.visibilityTimeoutMs,
      maxDeliveries: this.limits.maxDeliveries,
      now: this.clock.now(),
    });
    if (r.deadLettered) this.waiters.notify(queueWaitKey(this.ns, queue + DLQ_SUFFIX));
    return r.messages;
  }

  async ack(queue: string, receipt: string): Promise<void> {
    const r = this.s().ack.run({ id: receiptId(receipt), ns: this.ns, queue, receipt });
    if (r.changes === 0) throw errors.staleReceipt(queue);
  }

  async nack(queue: string, receipt: string, delayMs: number): Promise<void> {
    const visible = this.clock.now() + delayMs;
    const r = this.s().nack.run({ id: receiptId(receipt), ns: this.ns, queue, receipt, visible });
    if (r.changes === 0) throw errors.staleReceipt(queue);
    this.waiters.notify(queueWaitKey(this.ns, queue));
  }

  async extendVisibility(queue: string, receipt: string, ms: number): Promise<void> {
    const visible = this.clock.now() + ms;
    const r = this.s().extend.run({ id: receiptId(receipt), ns: this.ns, queue, receipt, visible });
    if (r.changes === 0) throw errors.staleReceipt(queue);
  }

  /** Migration drain check: every queue of the namespace holding a message (a leased one has receipt set and visible_at ahead). */
  async depths(): Promise<QueueDepth[]> {
    return this.s().depths.all({ ns: this.ns, now: this.clock.now() });
  }
}
