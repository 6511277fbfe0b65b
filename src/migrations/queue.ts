/**
 * Queue migration, drain then switch: new messages go to `to`; Dequeue takes
 * from `from` first (without waiting) and, while `from` has nothing visible,
 * from `to`. Leases taken on `from` carry a `f~` receipt prefix, so Ack,
 * Nack and ExtendVisibility go back to it; `to`'s receipts are its own, so
 * they stay valid after finish. A lease taken before the migration started
 * (no prefix) is acked on `to`, refused as stale, and redelivered from `from`:
 * at least once, never lost. Finish waits for the `f~` leases taken here.
 */
import type { Attributes, Bytes, DequeueOptions, IdempotencyToken, Once, QueueMessage, QueueStore } from "../backends/driver.js";

const FROM = "f~";

export class DrainingQueueStore implements QueueStore {
  readonly stats = { enqueuedToTo: 0, dequeuedFromFrom: 0, dequeuedFromTo: 0 };
  /** Per queue seen here: when `from` last had something visible (0: empty at the last look). */
  readonly fromLastNonEmpty = new Map<string, number>();
  /** Leases taken on `from` here and not yet acked or nacked (finish waits for them). */
  private readonly fromLeases = new Set<string>();

  constructor(
    private readonly from: QueueStore,
    private readonly to: QueueStore,
  ) {
    // queue_idempotent: new messages go to `to`, so `to` keeps their keys (a key first used before the migration is known to `from` only).
    if (to.enqueueOnce) {
      this.enqueueOnce = async (q, p, a, d, t) => {
        const once = await to.enqueueOnce!(q, p, a, d, t);
        if (once.replayedHash === undefined) this.stats.enqueuedToTo++;
        return once;
      };
    }
    if (from.extendVisibility && to.extendVisibility) {
      this.extendVisibility = (q, r, ms) => {
        const [side, receipt] = this.side(r);
        return side.extendVisibility!(q, receipt, ms);
      };
    }
  }

  enqueueOnce?: (queue: string, payload: Bytes, attributes: Attributes, delayMs: number, token: IdempotencyToken) => Promise<Once<string>>;

  private side(receipt: string): [QueueStore, string] {
    if (receipt.startsWith(FROM)) return [this.from, receipt.slice(FROM.length)];
    return [this.to, receipt];
  }

  async enqueue(queue: string, payload: Bytes, attributes: Attributes, delayMs: number): Promise<string> {
    const id = await this.to.enqueue(queue, payload, attributes, delayMs);
    this.stats.enqueuedToTo++;
    return id;
  }

  async dequeue(queue: string, opts: DequeueOptions): Promise<QueueMessage[]> {
    const old = await this.from.dequeue(queue, { ...opts, waitMs: 0 });
    if (old.length) {
      this.fromLastNonEmpty.set(queue, Date.now());
      this.stats.dequeuedFromFrom += old.length;
      for (const m of old) this.fromLeases.add(m.receipt);
      return old.map((m) => ({ ...m, receipt: FROM + m.receipt }));
    }
    this.fromLastNonEmpty.set(queue, 0);
    const fresh = await this.to.dequeue(queue, opts);
    this.stats.dequeuedFromTo += fresh.length;
    return fresh;
  }

  ack(queue: string, receipt: string): Promise<void> {
    const [side, r] = this.side(receipt);
    return side.ack(queue, r).finally(() => this.fromLeases.delete(r));
  }

  nack(queue: string, receipt: string, delayMs: number): Promise<void> {
    const [side, r] = this.side(receipt);
    return side.nack(queue, r, delayMs).finally(() => this.fromLeases.delete(r));
  }

  extendVisibility?: (queue: string, receipt: string, ms: number) => Promise<void>;

  /**
   * Whether `from` is drained for every queue seen here: looks once more at
   * each (a message found is handed back at once with Nack, which counts as
   * one more delivery attempt). Returns the queues still holding messages.
   */
  async undrained(): Promise<string[]> {
    const left: string[] = [];
    if (this.fromLeases.size) left.push(`(${this.fromLeases.size} leased and not yet acked)`);
    for (const q of this.fromLastNonEmpty.keys()) {
      const m = await this.from.dequeue(q, { maxMessages: 1, waitMs: 0, visibilityTimeoutMs: 1000 });
      if (m.length) {
        left.push(q);
        await this.from.nack(q, m[0]!.receipt, 0).catch(() => {});
      }
    }
    return left;
  }
}
