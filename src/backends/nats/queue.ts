/**
 * Queue on JetStream: one WORK-QUEUE stream per (namespace, queue) with one
 * durable pull consumer. Acked messages leave the stream.
 *
 * Leases. JetStream's ack_wait is per consumer, Prism's visibility timeout is
 * per dequeue, so the lease is kept here, in the process that delivered:
 * a timer per leased message naks it when its visibility timeout ends
 * (visible again at once, delivery count +1), and sends progress (`+WPI`,
 * "working") when the lease outlasts the consumer's ack_wait. ack_wait is the
 * namespace visibility timeout plus a grace period: it only matters when this
 * process dies with leases outstanding (the server then redelivers after it).
 *
 * Receipts are `<stream seq>.<delivery count>.<random>`, checked against the
 * live lease: one that was acked, nacked, expired or redelivered is refused
 * (errors.staleReceipt). Leases live in this process, so Ack / Nack /
 * ExtendVisibility must reach the Prism process that answered the Dequeue;
 * elsewhere a receipt is refused as stale (the message is then redelivered
 * after its lease, never lost).
 *
 * Dead letter: max_deliver is unlimited on the server (JetStream has no
 * dead-letter destination and would stop delivering silently). A message
 * pulled with a delivery count above the namespace's max_deliveries is
 * published to `<queue>.dlq` (awaiting JetStream's ack), then acked on its
 * queue; a crash between the two can leave a copy in both, never in neither.
 */
import { randomBytes } from "node:crypto";
import { nuid } from "@nats-io/transport-node";
import { errors } from "../../core/errors.js";
import { checkReceipt } from "../receipt.js";
import type { Clock } from "../../core/clock.js";
import type { Attributes, Bytes, DequeueOptions, IdempotencyToken, NamespaceLimits, Once, QueueDepth, QueueMessage, QueueStore } from "../driver.js";
import { msgIdOf, storedHash, withHash } from "./once.js";
import { attributesOf, H_ID, H_TIME, messageHeaders } from "./codec.js";
import { traceHeaders } from "../../observability/propagate.js";
import { fail, isNoStream, REQUEST_TIMEOUT_MS, toDriverError, type Conn, type Link } from "./connection.js";
import { dec, type Names } from "./names.js";
import type { Provisioner, StreamSpec } from "./provision.js";
import { ConsumerMissing, pullUpTo, type Delivered } from "./pull.js";
import { isDeadLetterQueue } from "../common/dlq.js";

const DURABLE = "q";
/** Outstanding leases per queue (JetStream max_ack_pending): a dequeue beyond it gets nothing until some are acked. */
const MAX_LEASES_PER_QUEUE = 10_000;
/** ack_wait = visibility timeout + this: Prism's own lease timer always fires first. */
const ACK_WAIT_GRACE_MS = 2000;
/** A dequeue moves at most this many rounds of dead letters before answering. */
const MAX_DLQ_ROUNDS = 5;

interface Lease {
  leases: Map<number, Lease>;
  conn: Conn;
  seq: number;
  receipt: string;
  reply: string;
  /** When the lease ends (Date.now() ms). */
  deadline: number;
  /** When the server's ack_wait would run out without progress. */
  serverExpiry: number;
  ackWaitMs: number;
  timer: NodeJS.Timeout | undefined;
}

/** Per process: live leases per queue stream, stream sequence → lease. */
export class LeaseTable {
  private readonly byStream = new Map<string, Map<number, Lease>>();

  of(stream: string): Map<number, Lease> {
    let m = this.byStream.get(stream);
    if (!m) this.byStream.set(stream, (m = new Map()));
    return m;
  }

  /** Stops every timer (instance close): the server redelivers those messages after ack_wait. */
  clear(): void {
    for (const m of this.byStream.values()) for (const l of m.values()) clearTimeout(l.timer);
    this.byStream.clear();
  }
}

function arm(l: Lease): void {
  clearTimeout(l.timer);
  const now = Date.now();
  const margin = Math.min(1000, l.ackWaitMs / 4);
  const at = Math.min(l.deadline, l.serverExpiry - margin);
  l.timer = setTimeout(onLeaseTimer, Math.max(0, at - now), l);
  l.timer.unref();
}

/** Module level (no closure per lease): ends the lease, or keeps the server from redelivering before it ends. */
function onLeaseTimer(l: Lease): void {
  if (l.leases.get(l.seq) !== l) return;
  const now = Date.now();
  if (now >= l.deadline - 5) {
    l.leases.delete(l.seq);
    // Visible again at once. If this fails the server redelivers after ack_wait anyway.
    l.conn.nc.request(l.reply, "-NAK", { timeout: REQUEST_TIMEOUT_MS }).catch(() => {});
    return;
  }
  l.serverExpiry = now + l.ackWaitMs;
  l.conn.nc.request(l.reply, "+WPI", { timeout: REQUEST_TIMEOUT_MS }).catch(() => {});
  arm(l);
}

function receiptSeq(receipt: string): number {
  const dot = receipt.indexOf(".");
  return dot > 0 ? Number(receipt.slice(0, dot)) : NaN;
}

export class NatsQueue implements QueueStore {
  private readonly ackWaitMs: number;

  constructor(
    private readonly link: Link,
    private readonly names: Names,
    private readonly limits: NamespaceLimits,
    private readonly prov: Provisioner,
    private readonly leases: LeaseTable,
    private readonly clock: Clock,
  ) {
    this.ackWaitMs = limits.visibilityTimeoutSeconds * 1000 + ACK_WAIT_GRACE_MS;
  }

  private spec(queue: string): StreamSpec {
    const n = this.names.queue(queue);
    return { name: n.stream, subject: n.subject, workQueue: true, maxMsgs: 0, maxAgeMs: 0, dupWindowMs: (this.limits.idempotencyWindowSeconds ?? 86400) * 1000 };
  }

  private ensure(c: Conn, s: StreamSpec): Promise<void> {
    return this.prov.ensureConsumer(c, s, { durable: DURABLE, ackWaitMs: this.ackWaitMs, maxAckPending: MAX_LEASES_PER_QUEUE });
  }

  async enqueue(queue: string, payload: Bytes, attributes: Attributes, delayMs: number): Promise<string> {
    if (delayMs > 0) throw errors.internal("nats: delayed enqueue is not supported (queue_delayed is not claimed)");
    const c = await this.link.get();
    const s = this.spec(queue);
    await this.ensure(c, s);
    const id = nuid.next();
    await this.publish(c, s, payload, messageHeaders(id, this.clock.now(), attributes, traceHeaders()));
    return id;
  }

  /**
   * queue_idempotent: the key as Nats-Msg-Id (once.ts). The message carries no
   * Prism-Id, so its id is its stream sequence, which a duplicate's ack names too.
   */
  async enqueueOnce(queue: string, payload: Bytes, attributes: Attributes, delayMs: number, token: IdempotencyToken): Promise<Once<string>> {
    if (delayMs > 0) throw errors.internal("nats: delayed enqueue is not supported (queue_delayed is not claimed)");
    const c = await this.link.get();
    const s = this.spec(queue);
    await this.ensure(c, s);
    const ack = await this.publish(c, s, payload, withHash(messageHeaders(undefined, this.clock.now(), attributes, traceHeaders()), token), msgIdOf(token));
    if (!ack.duplicate) return { result: String(ack.seq) };
    return { result: String(ack.seq), replayedHash: await storedHash(c, s.name, ack.seq, token) };
  }

  /**
   * Migration drain check: the namespace's queue streams (found by subject),
   * each with its stored messages (a work queue keeps a message until its
   * ack) and the consumer's pending acks (leased, by any Prism process).
   * A message nacked with a delay counts as leased or visible, never as gone.
   */
  async depths(): Promise<QueueDepth[]> {
    const c = await this.link.get();
    const base = `${this.names.prefix}.${this.names.ns}.q.`;
    const out: QueueDepth[] = [];
    try {
      for await (const si of c.jsm.streams.list(`${base}>`)) {
        const subject = si.config.subjects?.find((x) => x.startsWith(base));
        const total = si.state.messages;
        if (subject === undefined || total === 0) continue;
        let inflight = 0;
        try {
          inflight = Math.min(total, (await c.jsm.consumers.info(si.config.name, DURABLE)).num_ack_pending);
        } catch (e) {
          if (!(e instanceof Error) || !/consumer not found/i.test(e.message)) throw e;
        }
        out.push({ queue: dec(subject.slice(base.length)), visible: total - inflight, delayed: 0, inflight });
      }
    } catch (e) {
      fail(e);
    }
    return out;
  }

  /** Publishes to a queue stream and waits for JetStream's ack (durable). */
  private async publish(c: Conn, s: StreamSpec, payload: Bytes, headers: ReturnType<typeof messageHeaders>, msgID?: string): Promise<{ seq: number; duplicate: boolean }> {
    const opts = msgID === undefined ? { headers, expect: { streamName: s.name } } : { headers, msgID, expect: { streamName: s.name } };
    try {
      return await c.js.publish(s.subject, payload, opts);
    } catch (e) {
      if (!isNoStream(e)) fail(e);
      this.prov.forget(s.name);
      await this.ensure(c, s);
      return await c.js.publish(s.subject, payload, opts).catch(fail);
    }
  }

  async dequeue(queue: string, opts: DequeueOptions): Promise<QueueMessage[]> {
    const c = await this.link.get();
    const s = this.spec(queue);
    await this.ensure(c, s);
    const deadline = Date.now() + opts.waitMs;
    const out: QueueMessage[] = [];
    for (let round = 0; round < MAX_DLQ_ROUNDS; round++) {
      const want = opts.maxMessages - out.length;
      const got = await this.pull(c, s, want, Math.max(0, deadline - Date.now()), opts.signal);
      let moved = 0;
      for (const d of got) {
        // A dead-letter queue is terminal (src/backends/common/dlq.ts).
        if (d.deliveries > this.limits.maxDeliveries && !isDeadLetterQueue(queue)) {
          await this.deadLetter(c, queue, d);
          moved++;
        } else out.push(this.lease(c, s.name, d, opts.visibilityTimeoutMs));
      }
      // Stop unless dead letters took the place of deliverable messages.
      if (!moved || out.length >= opts.maxMessages || opts.signal?.aborted) break;
      if (!got.length) break;
    }
    return out;
  }

  private async pull(c: Conn, s: StreamSpec, max: number, waitMs: number, signal?: AbortSignal): Promise<Delivered[]> {
    try {
      return await pullUpTo(c.nc, s.name, DURABLE, max, waitMs, signal);
    } catch (e) {
      if (!(e instanceof ConsumerMissing)) throw toDriverError(e);
      this.prov.forget(s.name);
      await this.ensure(c, s);
      return pullUpTo(c.nc, s.name, DURABLE, max, waitMs, signal).catch(fail);
    }
  }

  private lease(c: Conn, stream: string, d: Delivered, visibilityMs: number): QueueMessage {
    const leases = this.leases.of(stream);
    const old = leases.get(d.seq);
    if (old) clearTimeout(old.timer);
    const now = Date.now();
    const l: Lease = {
      leases,
      conn: c,
      seq: d.seq,
      receipt: `${d.seq}.${d.deliveries}.${randomBytes(6).toString("hex")}`,
      reply: d.reply,
      deadline: now + visibilityMs,
      serverExpiry: now + this.ackWaitMs,
      ackWaitMs: this.ackWaitMs,
      timer: undefined,
    };
    leases.set(d.seq, l);
    arm(l);
    const h = d.msg.headers;
    return {
      messageId: h?.get(H_ID) || String(d.seq),
      payload: d.msg.data,
      attributes: attributesOf(h),
      receipt: l.receipt,
      deliveryCount: d.deliveries,
      enqueuedAtMs: Number(h?.get(H_TIME) ?? 0) || d.timestampMs,
    };
  }

  /** Copies the message to `<queue>.dlq` (durably), then removes it from its queue. */
  private async deadLetter(c: Conn, queue: string, d: Delivered): Promise<void> {
    const dlq = this.spec(`${queue}.dlq`);
    await this.ensure(c, dlq);
    const h = d.msg.headers;
    await this.publish(c, dlq, d.msg.data, messageHeaders(h?.get(H_ID) || String(d.seq), Number(h?.get(H_TIME) ?? 0) || d.timestampMs, attributesOf(h)));
    await c.nc.request(d.reply, "+ACK", { timeout: REQUEST_TIMEOUT_MS }).catch(fail);
  }

  /** The live lease for a receipt, or staleReceipt. */
  private take(queue: string, receipt: string): Lease {
    checkReceipt(/^\d+\.\d+\.[0-9a-f]{12}$/, receipt); // `${seq}.${deliveries}.${6 random bytes hex}`
    const seq = receiptSeq(receipt);
    const l = Number.isSafeInteger(seq) ? this.leases.of(this.names.queue(queue).stream).get(seq) : undefined;
    if (!l || l.receipt !== receipt || Date.now() >= l.deadline) throw errors.staleReceipt(queue);
    return l;
  }

  /** Ends a lease with an ack-subject reply (+ACK, -NAK...); on failure the lease stays as it was. */
  private async settle(l: Lease, body: string): Promise<void> {
    clearTimeout(l.timer);
    l.leases.delete(l.seq);
    try {
      await l.conn.nc.request(l.reply, body, { timeout: REQUEST_TIMEOUT_MS });
    } catch (e) {
      if (!l.leases.has(l.seq)) {
        l.leases.set(l.seq, l);
        arm(l);
      }
      throw toDriverError(e);
    }
  }

  async ack(queue: string, receipt: string): Promise<void> {
    await this.settle(this.take(queue, receipt), "+ACK");
  }

  async nack(queue: string, receipt: string, delayMs: number): Promise<void> {
    await this.settle(this.take(queue, receipt), delayMs > 0 ? `-NAK {"delay":${delayMs * 1e6}}` : "-NAK");
  }

  async extendVisibility(queue: string, receipt: string, ms: number): Promise<void> {
    const l = this.take(queue, receipt);
    const now = Date.now();
    try {
      await l.conn.nc.request(l.reply, "+WPI", { timeout: REQUEST_TIMEOUT_MS });
    } catch (e) {
      throw toDriverError(e);
    }
    if (l.leases.get(l.seq) !== l) throw errors.staleReceipt(queue);
    l.deadline = now + ms;
    l.serverExpiry = now + this.ackWaitMs;
    arm(l);
  }
}
