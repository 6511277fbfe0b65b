/**
 * Queue on Redis, BullMQ style: every state change is one Lua script
 * (scripts.ts). A message is a HASH; `ready` is a ZSET scored by visible-at
 * (so delays and nacks with delay need no second structure) and `lease` a
 * ZSET scored by lease deadline. Dequeue first returns run-out leases to
 * ready, then leases what is visible, dead-lettering to `<queue>.dlq` what was
 * already delivered max-deliveries times. Times come from the driver's clock
 * (passed as ARGV), so tests can move them.
 *
 * Enqueues and acks of one queue issued in the same event-loop turn go out as
 * one script call (qEnqueueMany / qAckMany, common/turn-batch.ts): one
 * command's work in ioredis and Redis instead of one per message.
 *
 * A waiting Dequeue polls (25 ms backing off to 200 ms); an Enqueue or Nack
 * of this process wakes as many waiting Dequeues of its queue as can take
 * its messages right away (common/local-wake.ts). Other Prism instances (and
 * the other workers of `--workers N`) on the same Redis hear of it too: the
 * Enqueue / Nack is followed by a PUBLISH on the namespace's `q:wake` channel
 * (`<instance>\t<queue>\t<count>`, on the same connection, so Redis runs it
 * after the script), to which an instance subscribes once one of its Dequeues
 * waits. Polling stays the backstop (a wake-up lost with the subscriber
 * connection, or sent before the subscription was live).
 */
import { randomBytes } from "node:crypto";
import { errors } from "../../core/errors.js";
import { malformedReceipt } from "../receipt.js";
import type { Clock } from "../../core/clock.js";
import type { Attributes, Bytes, DequeueOptions, IdempotencyToken, NamespaceLimits, Once, QueueDepth, QueueMessage, QueueStore } from "../driver.js";
import { onceOf } from "./once.js";
import { asBuffer, decodeAttrs, encodeAttrs } from "./codec.js";
import { fail, type Link } from "./connection.js";
import type { Keys } from "./keys.js";
import type { ScriptCommands } from "./scripts.js";
import { LocalWake } from "../common/local-wake.js";
import { isDeadLetterQueue } from "../common/dlq.js";
import { TurnBatcher } from "../common/turn-batch.js";
import type { RawListener, SubscriberHub } from "./pubsub.js";

const RECEIPT = /^(\d{16})\.\d+\.[0-9a-f]+$/;
function noop(): void {}

/** Messages (receipts) per script call; a fuller turn sends another one. */
const MAX_BATCH = 256;
/** Payload bytes per batched enqueue script call; a larger payload goes alone. */
const MAX_BATCH_BYTES = 1 << 20;
const ALONE_BYTES = 64 * 1024;

interface EnqueueItem {
  payload: Buffer;
  attributes: string | Buffer;
  now: number;
  delayMs: number;
}

export class RedisQueue implements QueueStore {
  private readonly enqueues = new TurnBatcher<EnqueueItem, string>((queue, items) => this.enqueueBatch(queue, items), MAX_BATCH, MAX_BATCH_BYTES);
  private readonly acks = new TurnBatcher<{ id: string; receipt: string }, void>((queue, items) => this.ackBatch(queue, items), MAX_BATCH);
  private readonly wake = new LocalWake();
  /** Dequeue attempts of one turn, keyed by "<visibility ms>\n<queue>": one script call for all, messages handed out in order. */
  private readonly dequeues = new TurnBatcher<number, QueueMessage[]>((key, wants) => this.dequeueBatch(key, wants), 64);
  /** Tells this instance's own wake-ups from other instances'. */
  private readonly instance = randomBytes(6).toString("hex");
  /** Set while subscribed (or subscribing) to the namespace's wake channel. */
  private listening: Promise<void> | undefined;
  private closed = false;
  /** Wake-ups heard from other instances (tests read it). */
  remoteWakeups = 0;
  private readonly listener: RawListener = {
    onMessage: (m) => this.heard(m),
    onEnd: () => {
      this.listening = undefined;
    },
  };

  constructor(
    private readonly link: Link,
    private readonly keys: Keys,
    private readonly limits: NamespaceLimits,
    private readonly clock: Clock,
    private readonly hub?: () => SubscriberHub,
  ) {}

  /**
   * Tells other instances that `n` messages of `queue` are visible now (fire and forget: polling is
   * the backstop). One PUBLISH per batch, also when nobody listens: no measurable cost in the
   * queue benchmarks, while skipping it until someone listens would leave a late listener unheard.
   */
  private announce(r: ScriptCommands, queue: string, n: number): void {
    if (this.hub === undefined) return;
    (r as unknown as { publish(ch: string, m: string): Promise<number> }).publish(this.keys.qWake, `${this.instance}\t${queue}\t${n}`).catch(noop);
  }

  /** A wake-up from the channel: another instance's, for this namespace's queue. */
  private heard(m: Buffer): void {
    const s = m.toString();
    const a = s.indexOf("\t");
    const b = s.indexOf("\t", a + 1);
    if (a < 0 || b < 0 || s.slice(0, a) === this.instance) return;
    this.remoteWakeups++;
    this.wake.notify(s.slice(a + 1, b), Number(s.slice(b + 1)) || Infinity);
  }

  /** Subscribes to the wake channel (once; again after the subscriber connection was lost). */
  private listen(): void {
    if (this.hub === undefined || this.listening !== undefined || this.closed) return;
    const p = this.hub().listen(this.keys.qWake, this.listener);
    this.listening = p;
    p.catch(() => {
      if (this.listening === p) this.listening = undefined;
    });
  }

  /** The namespace closes: stop listening. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.listening === undefined || this.hub === undefined) return;
    this.listening = undefined;
    await this.hub().unlisten(this.keys.qWake, this.listener);
  }

  private async r(): Promise<ScriptCommands> {
    return (await this.link.client()) as unknown as ScriptCommands;
  }

  enqueue(queue: string, payload: Bytes, attributes: Attributes, delayMs: number): Promise<string> {
    const item: EnqueueItem = { payload: asBuffer(payload), attributes: encodeAttrs(attributes), now: this.clock.now(), delayMs };
    if (item.payload.length > ALONE_BYTES) return this.enqueueBatch(queue, [item]).then((ids) => ids[0]!);
    return this.enqueues.add(queue, item, item.payload.length);
  }

  private async enqueueBatch(queue: string, items: EnqueueItem[]): Promise<string[]> {
    const r = await this.r();
    const k = this.keys;
    if (items.length === 1) {
      const it = items[0]!;
      const reply = r.qEnqueue(k.ready(queue), k.qSeq, k.qMsgBase, it.payload, it.attributes, it.now, it.delayMs);
      if (it.delayMs <= 0) this.announce(r, queue, 1);
      const id = await reply.catch(fail);
      if (it.delayMs <= 0) this.wake.notify(queue, 1);
      return [id];
    }
    const args: (string | Buffer | number)[] = [k.ready(queue), k.qSeq, k.qMsgBase];
    let due = 0;
    for (const it of items) {
      args.push(it.payload, it.attributes, it.now, it.delayMs);
      if (it.delayMs <= 0) due++;
    }
    const reply = r.qEnqueueMany(...args);
    if (due > 0) this.announce(r, queue, due);
    const ids = await reply.catch(fail);
    if (due > 0) this.wake.notify(queue, due);
    return ids;
  }

  /** queue_idempotent: the message and its record in one script. */
  async enqueueOnce(queue: string, payload: Bytes, attributes: Attributes, delayMs: number, token: IdempotencyToken): Promise<Once<string>> {
    const r = await this.r();
    const k = this.keys;
    const reply = await r
      .qEnqueueOnce(k.ready(queue), k.qSeq, k.once(token.key), k.qMsgBase, asBuffer(payload), encodeAttrs(attributes), this.clock.now(), delayMs, token.requestHash, token.windowMs)
      .catch(fail);
    return onceOf(reply, String);
  }

  async dequeue(queue: string, opts: DequeueOptions): Promise<QueueMessage[]> {
    const key = `${opts.visibilityTimeoutMs}\n${queue}`;
    let since = this.wake.generation();
    let out = await this.dequeues.add(key, opts.maxMessages);
    if (out.length || opts.waitMs <= 0) return out;
    const end = Date.now() + opts.waitMs;
    this.listen();
    let delay = 25;
    for (;;) {
      const left = end - Date.now();
      if (left <= 0) return out;
      if (!(await this.wake.sleep(queue, Math.min(delay, left), opts.maxMessages, since, opts.signal))) return [];
      since = this.wake.generation();
      out = await this.dequeues.add(key, opts.maxMessages);
      if (out.length) return out;
      delay = Math.min(delay * 2, 200);
    }
  }

  /** Leases for every attempt of the batch at once; the oldest messages go to the earliest attempt, up to its max. */
  private async dequeueBatch(key: string, wants: number[]): Promise<QueueMessage[][]> {
    const nl = key.indexOf("\n");
    let total = 0;
    for (const w of wants) total += w;
    const got = await this.tryDequeue(key.slice(nl + 1), { maxMessages: total, visibilityTimeoutMs: Number(key.slice(0, nl)), waitMs: 0 });
    if (wants.length === 1) return [got];
    let at = 0;
    return wants.map((w) => got.slice(at, (at += w)));
  }

  private async tryDequeue(queue: string, opts: DequeueOptions): Promise<QueueMessage[]> {
    const r = await this.r();
    const k = this.keys;
    const out = await r
      .qDequeueBuffer(
        k.ready(queue),
        k.lease(queue),
        k.ready(`${queue}.dlq`),
        k.qMsgBase,
        this.clock.now(),
        opts.maxMessages,
        opts.visibilityTimeoutMs,
        // A dead-letter queue is terminal (src/backends/common/dlq.ts): no delivery limit.
        isDeadLetterQueue(queue) ? 0x7fffffff : this.limits.maxDeliveries,
        randomBytes(6).toString("hex"),
      )
      .catch(fail);
    const msgs: QueueMessage[] = [];
    for (let i = 0; i < out.length; i += 6) {
      msgs.push({
        messageId: (out[i] as Buffer).toString(),
        payload: out[i + 1] as Buffer,
        attributes: decodeAttrs(out[i + 2] as Buffer),
        deliveryCount: out[i + 3] as number,
        receipt: (out[i + 4] as Buffer).toString(),
        enqueuedAtMs: Number((out[i + 5] as Buffer).toString()),
      });
    }
    return msgs;
  }

  /** The message id inside a receipt Prism issued; anything else is malformed (INVALID_ARGUMENT). */
  private idOf(_queue: string, receipt: string): string {
    const m = RECEIPT.exec(receipt);
    if (!m) throw malformedReceipt();
    return m[1]!;
  }

  async ack(queue: string, receipt: string): Promise<void> {
    return this.acks.add(queue, { id: this.idOf(queue, receipt), receipt });
  }

  private async ackBatch(queue: string, items: { id: string; receipt: string }[]): Promise<(void | Error)[]> {
    const r = await this.r();
    const now = this.clock.now();
    if (items.length === 1) {
      const { id, receipt } = items[0]!;
      const res = await r.qAck(this.keys.lease(queue), this.keys.qMsgBase + id, id, receipt, now).catch(fail);
      return [res < 0 ? errors.staleReceipt(queue) : undefined];
    }
    const args: (string | number)[] = [this.keys.lease(queue), this.keys.qMsgBase, now];
    for (const it of items) args.push(it.id, it.receipt);
    const res = await r.qAckMany(...args).catch(fail);
    return res.map((x) => (x < 0 ? errors.staleReceipt(queue) : undefined));
  }

  async nack(queue: string, receipt: string, delayMs: number): Promise<void> {
    const id = this.idOf(queue, receipt);
    const r = await this.r();
    const k = this.keys;
    const reply = r.qNack(k.lease(queue), k.qMsgBase + id, k.ready(queue), id, receipt, this.clock.now(), delayMs);
    if (delayMs <= 0) this.announce(r, queue, 1);
    const res = await reply.catch(fail);
    if (res < 0) throw errors.staleReceipt(queue);
    if (delayMs <= 0) this.wake.notify(queue, 1);
  }

  async extendVisibility(queue: string, receipt: string, ms: number): Promise<void> {
    const id = this.idOf(queue, receipt);
    const r = await this.r();
    const res = await r.qExtend(this.keys.lease(queue), this.keys.qMsgBase + id, id, receipt, this.clock.now(), ms).catch(fail);
    if (res < 0) throw errors.staleReceipt(queue);
  }

  /**
   * Migration drain check: the queues are found with SCAN (their `ready` and
   * `lease` ZSETs; Redis drops a ZSET once empty), then counted. An Admin
   * call, not a hot path: SCAN walks the whole keyspace of the database once.
   */
  async depths(): Promise<QueueDepth[]> {
    const r = await this.link.current();
    const readyAt = this.keys.ready("").length;
    const leaseAt = this.keys.lease("").length;
    // `q:ready:<queue>` and `q:lease:<queue>` in one walk; the namespace's prefix taken literally.
    const pattern = `${this.keys.base.replace(/[*?[\]\\]/g, "\\$&")}q:[rl]ea[ds][ye]:*`;
    const names = new Set<string>();
    let cursor = "0";
    try {
      do {
        const [next, found] = await r.scan(cursor, "MATCH", pattern, "COUNT", 1000);
        cursor = next;
        for (const k of found) {
          if (k.startsWith(this.keys.ready(""))) names.add(k.slice(readyAt));
          else if (k.startsWith(this.keys.lease(""))) names.add(k.slice(leaseAt));
        }
      } while (cursor !== "0");
      const now = this.clock.now();
      const out: QueueDepth[] = [];
      for (const q of [...names].sort()) {
        const [ready, due, leased, expired] = await Promise.all([
          r.zcard(this.keys.ready(q)),
          r.zcount(this.keys.ready(q), "-inf", now),
          r.zcard(this.keys.lease(q)),
          // A run-out lease goes back to `ready` at the next dequeue: visible already.
          r.zcount(this.keys.lease(q), "-inf", now),
        ]);
        const d: QueueDepth = { queue: q, visible: due + expired, delayed: ready - due, inflight: leased - expired };
        if (ready + leased > 0) out.push(d);
      }
      return out;
    } catch (e) {
      return fail(e);
    }
  }
}
