/**
 * Queue on RabbitMQ quorum queues.
 *
 * - One quorum queue per (namespace, queue), `${prefix}.${ns}.${queue}`,
 *   always declared with its dead-letter target: the default exchange routing
 *   to `<queue>.dlq` (declared first), at-least-once dead-lettering, and
 *   x-delivery-limit = max_deliveries - 1 (a quorum queue dead-letters a
 *   message returned more than `limit` times, i.e. after limit + 1
 *   deliveries). A `.dlq` queue has no limit and no DLQ of its own.
 * - Enqueue resolves after the publisher confirm.
 * - Dequeue is basic.get (up to max_messages) on one work channel that keeps
 *   the deliveries unacked; a receipt names (channel epoch, delivery tag).
 *   Ack/Nack are basic.ack / basic.nack(requeue). Prism only sends them for a
 *   delivery it still holds: an unknown tag would make RabbitMQ close the
 *   channel and requeue every other lease on it.
 * - Visibility timeouts are leases kept IN THIS PRISM PROCESS: a timer per
 *   lease nacks (requeue) when it runs out; ExtendVisibility re-arms it. If
 *   the process or its connection dies, RabbitMQ requeues the deliveries at
 *   once (earlier than their lease, never later). RabbitMQ's own
 *   consumer_timeout (default 30 min) closes a channel holding a delivery
 *   longer than that: raise it above the longest visibility timeout you use.
 * - deliveryCount = x-delivery-count (set by quorum queues) + 1, plus the
 *   deliveries before a delayed nack (carried in `prism-dc`, since a delayed
 *   nack re-publishes the message through the delay tiers).
 * - Dead-lettering: when the last allowed delivery is nacked or its lease
 *   runs out, Prism moves the message to the DLQ itself (publish confirmed,
 *   then ack), so it is there when the Nack returns; quorum dead-lettering is
 *   asynchronous. A dequeue that finds a message past max_deliveries (after
 *   delayed nacks, or a limit changed) moves it too. The queue's own
 *   x-delivery-limit + DLX is the backstop when Prism dies holding a lease.
 * - Long polls: local enqueues wake waiters at once; otherwise the queue is
 *   polled every 200 ms until wait_seconds passes.
 */
import { randomBytes } from "node:crypto";
import type { Channel, ConfirmChannel, GetMessage } from "amqplib";
import { errors } from "../../core/errors.js";
import { checkReceipt } from "../receipt.js";

/** `${receiptPrefix}.${channel epoch}.${delivery tag}`, as lease() issues them. */
const RECEIPT = /^[0-9a-f]{8}\.\d+\.\d+$/;
import type { Clock } from "../../core/clock.js";
import type { Attributes, Bytes, DequeueOptions, NamespaceLimits, QueueMessage, QueueStore } from "../driver.js";
import { decodeAttrs, encodeAttrs, headerNumber } from "./codec.js";
import type { DelayTiers } from "./delay.js";
import { fail, publishConfirmed, toDriverError, type AmqpLink, type Slot } from "./link.js";
import { isDlq, queueName } from "./names.js";
import { putTraceHeaders } from "../../observability/propagate.js";

const POLL_MS = 200;
/** Headers that describe one delivery, not the message: dropped when Prism re-publishes. */
const DELIVERY_HEADERS = ["x-delivery-count", "prism-dc", "x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason", "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason"];

interface Lease {
  readonly receipt: string;
  readonly qname: string;
  readonly ch: Channel;
  readonly msg: GetMessage;
  readonly deliveryCount: number;
  /** This was the last delivery allowed: giving it back moves it to the DLQ. */
  readonly last: boolean;
  timer: NodeJS.Timeout | undefined;
  readonly core: QueueCore;
}

function expireLease(lease: Lease): void {
  lease.core.expire(lease);
}

/** Shared by every namespace of one backend instance: the work channel, its leases, declarations, wake-ups. */
export class QueueCore {
  private readonly leases = new Map<string, Lease>();
  private readonly declared = new Map<string, Promise<void>>();
  private readonly delayBound = new Map<string, Promise<unknown>>();
  private delayTopology: Promise<void> | undefined;
  private readonly waiters = new Map<string, Set<() => void>>();
  private readonly receiptPrefix = randomBytes(4).toString("hex");
  readonly work: Slot;

  constructor(
    readonly link: AmqpLink,
    readonly pub: Slot<ConfirmChannel>,
    private readonly decl: Slot,
    readonly tiers: DelayTiers,
    private readonly log: (level: "warn", msg: string) => void,
  ) {
    this.work = link.slot(false, () => this.dropLeases());
  }

  /** The broker requeues a closed channel's deliveries by itself: forget their leases. */
  private dropLeases(): void {
    for (const l of this.leases.values()) clearTimeout(l.timer);
    this.leases.clear();
  }

  /** After a reconnect: declare again (cheap, idempotent) rather than trust a cache from before. */
  resetDeclarations(): void {
    this.declared.clear();
    this.delayBound.clear();
    this.delayTopology = undefined;
  }

  // ---------------------------------------------------------------- declarations

  ensureQueue(qname: string, dlq: boolean, maxDeliveries: number): Promise<void> {
    let p = this.declared.get(qname);
    if (!p) {
      p = this.declare(qname, dlq, maxDeliveries);
      this.declared.set(qname, p);
      p.catch(() => this.declared.delete(qname));
    }
    return p;
  }

  private async declare(qname: string, dlq: boolean, maxDeliveries: number): Promise<void> {
    const args: Record<string, unknown> = { "x-queue-type": "quorum" };
    if (!dlq) {
      const target = `${qname}.dlq`;
      await this.ensureQueue(target, true, maxDeliveries);
      Object.assign(args, {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": target,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
        "x-delivery-limit": Math.max(0, maxDeliveries - 1),
      });
    }
    const ch = await this.link.channel(this.decl);
    try {
      await ch.assertQueue(qname, { durable: true, arguments: args });
    } catch (e) {
      // 406: the queue exists with other arguments (e.g. max_deliveries changed). Use it as it is.
      if ((e as { code?: number }).code !== 406) fail(e);
      this.log("warn", `queue ${qname} exists with other arguments (${(e as Error).message}); using it unchanged. Delete it to apply the new max_deliveries to RabbitMQ's own delivery limit (Prism still enforces it on dequeue).`);
      await (await this.link.channel(this.decl)).checkQueue(qname).catch(fail);
    }
  }

  private ensureDelay(qname: string): Promise<unknown> {
    this.delayTopology ??= (async () => this.tiers.declare(await this.link.channel(this.decl)))();
    let p = this.delayBound.get(qname);
    if (!p) {
      p = this.delayTopology.then(async () => this.tiers.bindDestination(await this.link.channel(this.decl), qname));
      this.delayBound.set(qname, p);
      p.catch(() => {
        this.delayBound.delete(qname);
        this.delayTopology = undefined;
      });
    }
    return p.catch(fail);
  }

  // ---------------------------------------------------------------- operations

  async publish(qname: string, content: Buffer, headers: Record<string, unknown>, messageId: string, delayMs: number): Promise<void> {
    if (delayMs > 0) await this.ensureDelay(qname);
    const ch = await this.link.channel(this.pub);
    const opts = { persistent: true, messageId, headers };
    if (delayMs > 0) await publishConfirmed(ch, this.tiers.top, this.tiers.routingKey(delayMs, qname), content, opts);
    else {
      await publishConfirmed(ch, "", qname, content, opts);
      this.wake(qname);
    }
  }

  /** One basic.get; null when the queue is empty. */
  async get(qname: string): Promise<{ ch: Channel; msg: GetMessage } | null> {
    const ch = await this.link.channel(this.work);
    const msg = await ch.get(qname, { noAck: false }).catch(fail);
    return msg ? { ch, msg } : null;
  }

  /** Re-publishes a delivery to another queue (or delayed to its own), confirmed, then acks the delivery. */
  async move(ch: Channel, msg: GetMessage, target: string, delayMs: number, deliveriesSoFar: number): Promise<void> {
    const headers: Record<string, unknown> = { ...(msg.properties.headers ?? {}) };
    for (const h of DELIVERY_HEADERS) delete headers[h];
    if (deliveriesSoFar > 0) headers["prism-dc"] = deliveriesSoFar;
    await this.publish(target, msg.content, headers, msg.properties.messageId, delayMs);
    ch.ack(msg);
  }

  lease(qname: string, ch: Channel, msg: GetMessage, deliveryCount: number, last: boolean, ms: number): Lease {
    const receipt = `${this.receiptPrefix}.${this.work.epoch}.${msg.fields.deliveryTag}`;
    const lease: Lease = { receipt, qname, ch, msg, deliveryCount, last, timer: undefined, core: this };
    this.arm(lease, ms);
    this.leases.set(receipt, lease);
    return lease;
  }

  private arm(lease: Lease, ms: number): void {
    clearTimeout(lease.timer);
    lease.timer = setTimeout(expireLease, ms, lease);
    lease.timer.unref();
  }

  expire(lease: Lease): void {
    if (this.leases.get(lease.receipt) !== lease) return;
    this.leases.delete(lease.receipt);
    if (this.work.ch === lease.ch) this.giveBack(lease).catch(() => {});
  }

  /**
   * Ends a lease without ack: visible again at once, or, after the last
   * allowed delivery, onto the DLQ. Prism moves it itself (publish confirmed,
   * then ack) rather than leave it to the quorum queue's delivery limit,
   * whose dead-lettering happens later, asynchronously: a Dequeue on the DLQ
   * right after the Nack must find the message.
   */
  async giveBack(lease: Lease): Promise<void> {
    if (!lease.last) {
      lease.ch.nack(lease.msg, false, true);
      this.wake(lease.qname);
      return;
    }
    try {
      await this.move(lease.ch, lease.msg, `${lease.qname}.dlq`, 0, 0);
    } catch (e) {
      // Not on the DLQ: hand it back; the quorum queue's delivery limit dead-letters it.
      if (this.work.ch === lease.ch) lease.ch.nack(lease.msg, false, true);
      throw toDriverError(e);
    }
  }

  /** Takes the lease out of the table (it is over whatever happens next); stale receipts are refused. */
  take(queue: string, qname: string, receipt: string): Lease {
    checkReceipt(RECEIPT, receipt);
    const lease = this.leases.get(receipt);
    if (!lease || lease.qname !== qname || this.work.ch !== lease.ch) throw errors.staleReceipt(queue);
    this.leases.delete(receipt);
    clearTimeout(lease.timer);
    return lease;
  }

  extend(queue: string, qname: string, receipt: string, ms: number): void {
    checkReceipt(RECEIPT, receipt);
    const lease = this.leases.get(receipt);
    if (!lease || lease.qname !== qname || this.work.ch !== lease.ch) throw errors.staleReceipt(queue);
    this.arm(lease, ms);
  }

  // ---------------------------------------------------------------- long-poll wake-ups

  wake(qname: string): void {
    const set = this.waiters.get(qname);
    if (!set) return;
    this.waiters.delete(qname);
    for (const w of set) w();
  }

  /** Resolves after ms, on a wake-up for qname, or when the signal aborts. */
  wait(qname: string, ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      let set = this.waiters.get(qname);
      if (!set) this.waiters.set(qname, (set = new Set()));
      const done = () => {
        clearTimeout(t);
        signal?.removeEventListener("abort", done);
        this.waiters.get(qname)?.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      signal?.addEventListener("abort", done, { once: true });
      set.add(done);
    });
  }

  close(): void {
    this.dropLeases();
    for (const set of this.waiters.values()) for (const w of set) w();
    this.waiters.clear();
  }
}

export class RabbitQueue implements QueueStore {
  private seq = 0;
  private readonly idPrefix = randomBytes(6).toString("hex");

  constructor(
    private readonly core: QueueCore,
    private readonly prefix: string,
    private readonly ns: string,
    private readonly limits: NamespaceLimits,
    private readonly clock: Clock,
  ) {}

  private async ready(queue: string): Promise<string> {
    const qname = queueName(this.prefix, this.ns, queue);
    await this.core.ensureQueue(qname, isDlq(queue), this.limits.maxDeliveries);
    return qname;
  }

  async enqueue(queue: string, payload: Bytes, attributes: Attributes, delayMs: number): Promise<string> {
    const qname = await this.ready(queue);
    const id = `${this.idPrefix}-${++this.seq}`;
    const headers: Record<string, unknown> = { "prism-t": this.clock.now() };
    const a = encodeAttrs(attributes);
    if (a) headers["prism-a"] = a;
    putTraceHeaders(headers);
    const content = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
    await this.core.publish(qname, content, headers, id, delayMs);
    return id;
  }

  async dequeue(queue: string, opts: DequeueOptions): Promise<QueueMessage[]> {
    const qname = await this.ready(queue);
    const dlq = isDlq(queue);
    const out: QueueMessage[] = [];
    const deadline = Date.now() + opts.waitMs;
    for (;;) {
      while (out.length < opts.maxMessages) {
        const got = await this.core.get(qname);
        if (!got) break;
        const { ch, msg } = got;
        const h = msg.properties.headers ?? {};
        const count = headerNumber(h["x-delivery-count"]) + headerNumber(h["prism-dc"]) + 1;
        if (!dlq && count > this.limits.maxDeliveries) {
          await this.core.move(ch, msg, `${qname}.dlq`, 0, 0).catch((e) => {
            ch.nack(msg, false, true);
            throw toDriverError(e);
          });
          continue;
        }
        const lease = this.core.lease(qname, ch, msg, count, !dlq && count >= this.limits.maxDeliveries, opts.visibilityTimeoutMs);
        out.push({
          messageId: String(msg.properties.messageId ?? ""),
          payload: msg.content,
          attributes: decodeAttrs(h["prism-a"]),
          receipt: lease.receipt,
          deliveryCount: count,
          enqueuedAtMs: headerNumber(h["prism-t"]),
        });
      }
      const left = deadline - Date.now();
      if (out.length || left <= 0 || opts.signal?.aborted) return out;
      await this.core.wait(qname, Math.min(left, POLL_MS), opts.signal);
      if (opts.signal?.aborted) return out;
    }
  }

  async ack(queue: string, receipt: string): Promise<void> {
    const lease = this.core.take(queue, queueName(this.prefix, this.ns, queue), receipt);
    lease.ch.ack(lease.msg);
  }

  async nack(queue: string, receipt: string, delayMs: number): Promise<void> {
    const qname = queueName(this.prefix, this.ns, queue);
    const lease = this.core.take(queue, qname, receipt);
    if (delayMs <= 0 || lease.last) return this.core.giveBack(lease);
    try {
      await this.core.move(lease.ch, lease.msg, qname, delayMs, lease.deliveryCount);
    } catch (e) {
      // Not re-published: give the delivery back now rather than lose it.
      if (this.core.work.ch === lease.ch) lease.ch.nack(lease.msg, false, true);
      throw toDriverError(e);
    }
  }

  async extendVisibility(queue: string, receipt: string, ms: number): Promise<void> {
    this.core.extend(queue, queueName(this.prefix, this.ns, queue), receipt, ms);
  }
}
