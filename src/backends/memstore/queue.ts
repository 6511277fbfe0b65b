/**
 * In-memory Queue for one namespace. Each queue keeps every unacked message
 * in one min-heap ordered by due time (then enqueue order): for a waiting or
 * delayed message the time it becomes visible, for a leased one the time its
 * lease ends. Dequeue pops due messages, so expired leases and delays need no
 * timers. A lease is identified by its receipt; ack/nack/extend with any
 * other receipt is stale. A message found due after maxDeliveries deliveries
 * moves to `<queue>.dlq` (an ordinary queue) instead of being delivered.
 */
import { randomUUID } from "node:crypto";
import { errors } from "../../core/errors.js";
import { checkReceipt } from "../receipt.js";

/** `${idPrefix}-${seq base36}.${deliveryCount}.${leaseSeq base36}`, as dequeue issues them. */
const RECEIPT = /^[0-9a-f]{8}-[0-9a-z]+\.\d+\.[0-9a-z]+$/;
import type { Attributes, Bytes, DequeueOptions, QueueDepth, QueueMessage, QueueStore } from "../driver.js";
import { IndexedHeap, type HeapItem } from "./heap.js";
import { park, wakeAll, wakeOne, type NsContext, type Waiter } from "./wait.js";
import { isDeadLetterQueue } from "../common/dlq.js";

interface Msg extends HeapItem {
  readonly id: string;
  readonly payload: Uint8Array;
  readonly attributes: Attributes;
  readonly enqueuedAt: number;
  /** Tie-break for equal due times: enqueue order. */
  readonly seq: number;
  dueAt: number;
  deliveryCount: number;
  /** The current lease's receipt; "" when not leased. */
  receipt: string;
}

class QueueState {
  readonly heap = new IndexedHeap<Msg>((a, b) => a.dueAt < b.dueAt || (a.dueAt === b.dueAt && a.seq < b.seq));
  readonly byId = new Map<string, Msg>();
  readonly waiters = new Set<Waiter>();
  constructor(readonly name: string) {}
}

export const DLQ_SUFFIX = ".dlq";

export class MemQueue implements QueueStore {
  private readonly queues = new Map<string, QueueState>();
  private readonly idPrefix = randomUUID().slice(0, 8);
  private seq = 0;
  private leaseSeq = 0;

  constructor(private readonly ns: NsContext) {}

  async enqueue(queue: string, payload: Bytes, attributes: Attributes, delayMs: number): Promise<string> {
    const q = this.state(queue);
    const seq = ++this.seq;
    const now = this.ns.clock.now();
    const m: Msg = {
      id: `${this.idPrefix}-${seq.toString(36)}`,
      payload: new Uint8Array(payload),
      attributes: { ...attributes },
      enqueuedAt: now,
      seq,
      dueAt: delayMs > 0 ? now + delayMs : now,
      deliveryCount: 0,
      receipt: "",
      heapIdx: -1,
    };
    q.heap.push(m);
    q.byId.set(m.id, m);
    // Also for a delayed message: the woken poller re-arms its timer for the new earliest due time.
    wakeOne(q.waiters);
    return m.id;
  }

  async dequeue(queue: string, opts: DequeueOptions): Promise<QueueMessage[]> {
    let q = this.queues.get(queue);
    let out = q ? this.take(q, opts) : [];
    if (out.length > 0 || opts.waitMs <= 0 || opts.signal?.aborted) {
      if (q && out.length > 0) wakeOne(q.waiters);
      return out;
    }
    q ??= this.state(queue);
    const epoch = this.ns.epoch;
    const deadline = performance.now() + opts.waitMs;
    try {
      for (;;) {
        const remaining = deadline - performance.now();
        if (remaining <= 0) break;
        const top = q.heap.peek();
        const untilDue = top ? top.dueAt - this.ns.clock.now() : Infinity;
        await park(q.waiters, Math.min(remaining, untilDue), opts.signal, this.ns.clock);
        if (opts.signal?.aborted || this.ns.epoch !== epoch) break;
        out = this.take(q, opts);
        if (out.length > 0) break;
      }
    } finally {
      // Pass the baton: leases just taken (or a wake this call consumed without
      // using) change the earliest due time another parked poller must watch.
      if (q.heap.size > 0) wakeOne(q.waiters);
      else if (q.waiters.size === 0 && this.queues.get(queue) === q) this.queues.delete(queue);
    }
    return out;
  }

  async ack(queue: string, receipt: string): Promise<void> {
    const q = this.queues.get(queue);
    const m = this.leased(q, queue, receipt);
    q!.heap.remove(m);
    q!.byId.delete(m.id);
    if (q!.byId.size === 0 && q!.waiters.size === 0) this.queues.delete(queue);
  }

  async nack(queue: string, receipt: string, delayMs: number): Promise<void> {
    const q = this.queues.get(queue);
    const m = this.leased(q, queue, receipt);
    m.receipt = "";
    m.dueAt = this.ns.clock.now() + Math.max(0, delayMs);
    q!.heap.update(m);
    wakeOne(q!.waiters);
  }

  async extendVisibility(queue: string, receipt: string, ms: number): Promise<void> {
    const q = this.queues.get(queue);
    const m = this.leased(q, queue, receipt);
    m.dueAt = this.ns.clock.now() + Math.max(0, ms);
    q!.heap.update(m);
  }

  /** Messages in a queue (waiting, delayed and leased); tests and introspection. */
  depth(queue: string): number {
    return this.queues.get(queue)?.byId.size ?? 0;
  }

  /** Migration drain check (QueueStore.depths): every queue holding a message, by state. */
  async depths(): Promise<QueueDepth[]> {
    const now = this.ns.clock.now();
    const out: QueueDepth[] = [];
    for (const q of this.queues.values()) {
      if (q.byId.size === 0) continue;
      const d: QueueDepth = { queue: q.name, visible: 0, delayed: 0, inflight: 0 };
      for (const m of q.byId.values()) {
        if (m.dueAt <= now) d.visible++;
        else if (m.receipt !== "") d.inflight++;
        else d.delayed++;
      }
      out.push(d);
    }
    return out;
  }

  /** Wakes every parked poller (namespace or instance closing; bump the epoch first). */
  wakeAll(): void {
    for (const q of this.queues.values()) wakeAll(q.waiters);
  }

  clear(): void {
    this.wakeAll();
    this.queues.clear();
  }

  private state(queue: string): QueueState {
    let q = this.queues.get(queue);
    if (!q) this.queues.set(queue, (q = new QueueState(queue)));
    return q;
  }

  /** The message whose current lease is `receipt`, or errors.staleReceipt. */
  private leased(q: QueueState | undefined, queue: string, receipt: string): Msg {
    checkReceipt(RECEIPT, receipt);
    const dot = receipt.indexOf(".");
    const m = q && dot > 0 ? q.byId.get(receipt.slice(0, dot)) : undefined;
    if (!m || m.receipt !== receipt) throw errors.staleReceipt(queue);
    return m;
  }

  private take(q: QueueState, opts: DequeueOptions): QueueMessage[] {
    const now = this.ns.clock.now();
    // A dead-letter queue is terminal (src/backends/common/dlq.ts).
    const maxDeliveries = isDeadLetterQueue(q.name) ? 0 : this.ns.limits.maxDeliveries;
    const out: QueueMessage[] = [];
    // Leased messages are re-inserted after the loop so a zero visibility
    // timeout cannot hand the same message out twice in one call.
    const leased: Msg[] = [];
    while (out.length < opts.maxMessages) {
      const m = q.heap.peek();
      if (!m || m.dueAt > now) break;
      q.heap.remove(m);
      if (maxDeliveries > 0 && m.deliveryCount >= maxDeliveries) {
        this.deadLetter(q, m, now);
        continue;
      }
      m.deliveryCount++;
      m.receipt = `${m.id}.${m.deliveryCount}.${(++this.leaseSeq).toString(36)}`;
      m.dueAt = now + opts.visibilityTimeoutMs;
      leased.push(m);
      out.push({
        messageId: m.id,
        payload: Buffer.from(m.payload),
        attributes: { ...m.attributes },
        receipt: m.receipt,
        deliveryCount: m.deliveryCount,
        enqueuedAtMs: m.enqueuedAt,
      });
    }
    for (const m of leased) q.heap.push(m);
    return out;
  }

  /** Moves a message to `<queue>.dlq`, keeping its id, payload and attributes. */
  private deadLetter(q: QueueState, m: Msg, now: number): void {
    q.byId.delete(m.id);
    m.receipt = "";
    const dlq = this.state(q.name + DLQ_SUFFIX);
    const moved: Msg = {
      id: m.id,
      payload: m.payload,
      attributes: {
        ...m.attributes,
        "prism-dlq-reason": "max-deliveries",
        "prism-original-queue": q.name,
        "prism-delivery-count": String(m.deliveryCount),
        "prism-original-enqueued-at": String(m.enqueuedAt),
      },
      enqueuedAt: now,
      seq: ++this.seq,
      dueAt: now,
      deliveryCount: 0,
      receipt: "",
      heapIdx: -1,
    };
    dlq.heap.push(moved);
    dlq.byId.set(moved.id, moved);
    wakeOne(dlq.waiters);
  }
}
