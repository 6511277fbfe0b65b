/**
 * Queue on Redis, BullMQ style: every state change is one Lua script
 * (scripts.ts). A message is a HASH; `ready` is a ZSET scored by visible-at
 * (so delays and nacks with delay need no second structure) and `lease` a
 * ZSET scored by lease deadline. Dequeue first returns run-out leases to
 * ready, then leases what is visible, dead-lettering to `<queue>.dlq` what was
 * already delivered max-deliveries times. Times come from the driver's clock
 * (passed as ARGV), so tests can move them.
 */
import { randomBytes } from "node:crypto";
import { errors } from "../../core/errors.js";
import type { Clock } from "../../core/clock.js";
import type { Attributes, Bytes, DequeueOptions, NamespaceLimits, QueueMessage, QueueStore } from "../driver.js";
import { asBuffer, decodeAttrs, encodeAttrs } from "./codec.js";
import { fail, type Link } from "./connection.js";
import type { Keys } from "./keys.js";
import type { ScriptCommands } from "./scripts.js";
import { poll } from "./wait.js";
import { isDeadLetterQueue } from "../common/dlq.js";

const RECEIPT = /^(\d{16})\.\d+\.[0-9a-f]+$/;

export class RedisQueue implements QueueStore {
  constructor(
    private readonly link: Link,
    private readonly keys: Keys,
    private readonly limits: NamespaceLimits,
    private readonly clock: Clock,
  ) {}

  private async r(): Promise<ScriptCommands> {
    return (await this.link.client()) as unknown as ScriptCommands;
  }

  async enqueue(queue: string, payload: Bytes, attributes: Attributes, delayMs: number): Promise<string> {
    const r = await this.r();
    const k = this.keys;
    return r.qEnqueue(k.ready(queue), k.qSeq, k.qMsgBase, asBuffer(payload), encodeAttrs(attributes), this.clock.now(), delayMs).catch(fail);
  }

  dequeue(queue: string, opts: DequeueOptions): Promise<QueueMessage[]> {
    return poll(() => this.tryDequeue(queue, opts), opts.waitMs, opts.signal);
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

  /** The message id inside a receipt Prism issued; anything else is stale. */
  private idOf(queue: string, receipt: string): string {
    const m = RECEIPT.exec(receipt);
    if (!m) throw errors.staleReceipt(queue);
    return m[1]!;
  }

  async ack(queue: string, receipt: string): Promise<void> {
    const id = this.idOf(queue, receipt);
    const r = await this.r();
    const res = await r.qAck(this.keys.lease(queue), this.keys.qMsgBase + id, id, receipt, this.clock.now()).catch(fail);
    if (res < 0) throw errors.staleReceipt(queue);
  }

  async nack(queue: string, receipt: string, delayMs: number): Promise<void> {
    const id = this.idOf(queue, receipt);
    const r = await this.r();
    const k = this.keys;
    const res = await r.qNack(k.lease(queue), k.qMsgBase + id, k.ready(queue), id, receipt, this.clock.now(), delayMs).catch(fail);
    if (res < 0) throw errors.staleReceipt(queue);
  }

  async extendVisibility(queue: string, receipt: string, ms: number): Promise<void> {
    const id = this.idOf(queue, receipt);
    const r = await this.r();
    const res = await r.qExtend(this.keys.lease(queue), this.keys.qMsgBase + id, id, receipt, this.clock.now(), ms).catch(fail);
    if (res < 0) throw errors.staleReceipt(queue);
  }
}
