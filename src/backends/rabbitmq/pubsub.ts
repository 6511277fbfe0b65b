/**
 * PubSub over one topic exchange per namespace (`${prefix}.${ns}.ps`),
 * at-most-once like any broadcast: the routing key is the topic; each
 * subscription is an exclusive, auto-delete, server-named queue bound with
 * the pattern and consumed without acks. Our `*` is AMQP `*`; our `>` is
 * AMQP `#`, which also matches zero words (`orders.#` gets `orders`), so
 * wildcard deliveries are filtered again with the exact token matcher.
 *
 * All subscriptions of a backend instance share one channel; when it (or
 * the connection) goes, every live subscription ends with UNAVAILABLE and
 * new ones work again once RabbitMQ is back.
 */
import { randomBytes } from "node:crypto";
import type { Channel, ConfirmChannel, ConsumeMessage } from "amqplib";
import { errors } from "../../core/errors.js";
import type { Clock } from "../../core/clock.js";
import type { Attributes, Bytes, PubSubStore, Subscription, SubscriptionSink } from "../driver.js";
import { isWildcard, topicMatcher, type TopicMatcher } from "../common/topics.js";
import { decodeAttrs, encodeAttrs, headerNumber } from "./codec.js";
import { fail, publishConfirmed, type AmqpLink, type Slot } from "./link.js";
import { pubsubExchange } from "./names.js";
import { putTraceHeaders } from "../../observability/propagate.js";

interface Sub {
  sink: SubscriptionSink;
  match: TopicMatcher | null;
  consumerTag: string;
  ch: Channel | null;
}

/** The subscription channel of one backend instance and the exchanges declared on this connection. */
export class PubSubCore {
  readonly subs: Slot;
  readonly live = new Set<Sub>();
  private readonly exchanges = new Map<string, Promise<unknown>>();

  constructor(
    readonly link: AmqpLink,
    readonly pub: Slot<ConfirmChannel>,
    private readonly decl: Slot,
  ) {
    this.subs = link.slot(false, () => this.endAll(errors.unavailable("rabbitmq subscription channel lost")));
  }

  ensureExchange(name: string): Promise<unknown> {
    let p = this.exchanges.get(name);
    if (!p) {
      p = (async () => (await this.link.channel(this.decl)).assertExchange(name, "topic", { durable: true }))();
      this.exchanges.set(name, p);
      p.catch(() => this.exchanges.delete(name));
    }
    return p.catch(fail);
  }

  resetDeclarations(): void {
    this.exchanges.clear();
  }

  endAll(reason: Error): void {
    const all = [...this.live];
    this.live.clear();
    for (const s of all) s.sink.onError(reason);
  }
}

/** AMQP binding key for a Prism pattern. */
export function bindingKey(pattern: string): string {
  return pattern
    .split(".")
    .map((t) => (t === ">" ? "#" : t))
    .join(".");
}

export class RabbitPubSub implements PubSubStore {
  private seq = 0;
  private readonly idPrefix = randomBytes(6).toString("hex");
  private readonly exchange: string;
  private readonly mine = new Set<Sub>();

  constructor(
    private readonly core: PubSubCore,
    prefix: string,
    ns: string,
    private readonly clock: Clock,
  ) {
    this.exchange = pubsubExchange(prefix, ns);
  }

  async publish(topic: string, payload: Bytes, attributes: Attributes): Promise<string> {
    await this.core.ensureExchange(this.exchange);
    const ch = await this.core.link.channel(this.core.pub);
    const id = `${this.idPrefix}-${++this.seq}`;
    const headers: Record<string, unknown> = { "prism-t": this.clock.now() };
    const a = encodeAttrs(attributes);
    if (a) headers["prism-a"] = a;
    putTraceHeaders(headers);
    const content = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
    await publishConfirmed(ch, this.exchange, topic, content, { messageId: id, headers });
    return id;
  }

  async subscribe(pattern: string, sink: SubscriptionSink): Promise<Subscription> {
    await this.core.ensureExchange(this.exchange);
    const ch = await this.core.link.channel(this.core.subs);
    const sub: Sub = { sink, match: isWildcard(pattern) ? topicMatcher(pattern) : null, consumerTag: "", ch };
    const onMessage = (m: ConsumeMessage | null) => {
      if (!m) {
        // Cancelled by the broker (queue deleted, node down).
        if (this.core.live.delete(sub)) sink.onError(errors.unavailable("rabbitmq cancelled the subscription"));
        return;
      }
      const topic = m.fields.routingKey;
      if (sub.match && !sub.match(topic)) return;
      const h = m.properties.headers ?? {};
      sink.onMessage({
        topic,
        payload: m.content,
        attributes: decodeAttrs(h["prism-a"]),
        messageId: String(m.properties.messageId ?? ""),
        publishTimeMs: headerNumber(h["prism-t"]),
      });
    };
    try {
      const q = await ch.assertQueue("", { exclusive: true, autoDelete: true, durable: false });
      await ch.bindQueue(q.queue, this.exchange, bindingKey(pattern));
      sub.consumerTag = (await ch.consume(q.queue, onMessage, { noAck: true, exclusive: true })).consumerTag;
    } catch (e) {
      fail(e);
    }
    this.core.live.add(sub);
    this.mine.add(sub);
    return { close: async () => void (await this.unsubscribe(sub)) };
  }

  /** Returns whether the subscription was still live. */
  private async unsubscribe(sub: Sub): Promise<boolean> {
    this.mine.delete(sub);
    if (!this.core.live.delete(sub)) return false;
    // The queue is exclusive + auto-delete: cancelling the consumer deletes it.
    if (sub.ch && this.core.subs.ch === sub.ch) await sub.ch.cancel(sub.consumerTag).catch(() => {});
    return true;
  }

  async closeAll(): Promise<void> {
    for (const s of [...this.mine]) {
      if (await this.unsubscribe(s)) s.sink.onError(errors.unavailable("namespace closed"));
    }
  }
}
