/**
 * Queue migration, drain then switch: new messages go to `to`; Dequeue takes
 * from `from` first (without waiting) and, while `from` has nothing visible,
 * from `to`. Leases taken on `from` carry a `f~` receipt prefix, so Ack,
 * Nack and ExtendVisibility go back to it; `to`'s receipts are its own, so
 * they stay valid after finish. A lease taken before the migration started
 * (no prefix) is acked on `to`, refused as stale, and redelivered from `from`:
 * at least once, never lost.
 *
 * Finish is refused while `from` holds any message, visible, delayed or
 * leased, as `from`'s backend counts them (QueueStore.depths: every queue of
 * the namespace, whichever Prism process enqueued or leased it), so a lease
 * another instance took on `from` and that later runs out or is nacked is
 * still delivered (from `from`, by a process still draining) before the
 * switch. A `from` whose driver cannot count is refused: nothing could
 * tell that it is empty.
 */
import type { Attributes, Bytes, DequeueOptions, IdempotencyToken, Once, QueueDepth, QueueMessage, QueueStore } from "../backends/driver.js";
import { errors } from "../core/errors.js";

const FROM = "f~";

export class DrainingQueueStore implements QueueStore {
  readonly stats = { enqueuedToTo: 0, dequeuedFromFrom: 0, dequeuedFromTo: 0 };

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
      this.stats.dequeuedFromFrom += old.length;
      return old.map((m) => ({ ...m, receipt: FROM + m.receipt }));
    }
    const fresh = await this.to.dequeue(queue, opts);
    this.stats.dequeuedFromTo += fresh.length;
    return fresh;
  }

  ack(queue: string, receipt: string): Promise<void> {
    const [side, r] = this.side(receipt);
    return side.ack(queue, r);
  }

  nack(queue: string, receipt: string, delayMs: number): Promise<void> {
    const [side, r] = this.side(receipt);
    return side.nack(queue, r, delayMs);
  }

  extendVisibility?: (queue: string, receipt: string, ms: number) => Promise<void>;

  /**
   * What `from` still holds, per queue of the namespace (visible, delayed and
   * leased messages, dead-letter queues included), as its backend counts them;
   * [] once drained. Looks only, takes no lease. Throws FAILED_PRECONDITION
   * when `from`'s driver cannot count (QueueStore.depths).
   */
  async undrained(fromName: string): Promise<QueueDepth[]> {
    if (!this.from.depths) {
      throw errors.configConflict(`cannot verify that "${fromName}" is drained: its queue driver cannot count the messages it holds (visible and leased, across every Prism instance), so finishing could strand a message; drain it with a driver that can (memstore, sqlite, redis, postgres, nats)`);
    }
    return (await this.from.depths()).filter((d) => d.visible + d.delayed + d.inflight > 0).sort((a, b) => (a.queue < b.queue ? -1 : a.queue > b.queue ? 1 : 0));
  }

  /** FAILED_PRECONDITION naming each queue of `from` that still holds messages, and how many; resolves once `from` is drained. */
  async assertDrained(fromName: string): Promise<void> {
    const left = await this.undrained(fromName);
    if (!left.length) return;
    const total = left.reduce((n, d) => n + d.visible + d.delayed + d.inflight, 0);
    const each = left.map((d) => `"${d.queue}": ${d.visible + d.delayed + d.inflight} (${d.visible} visible, ${d.delayed} delayed, ${d.inflight} leased and not acked yet)`);
    throw errors.configConflict(`"${fromName}" still holds ${total} message${total === 1 ? "" : "s"} in queue${left.length === 1 ? "" : "s"} ${each.join(", ")}; finish once they are consumed and acked`);
  }
}
