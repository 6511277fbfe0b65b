/**
 * PubSub over LISTEN/NOTIFY: one channel per namespace (a hash of schema and
 * namespace, so names that prefix each other never share one), carried by
 * the instance's listen connection. A message travels as the base64 of its
 * protobuf PubSubMessage (topic, id, time, attributes, payload bytes): one
 * encode on publish, one decode per process on receipt, then every local
 * subscription whose pattern matches gets it.
 *
 * Limits, by PostgreSQL: a NOTIFY payload is under 8000 bytes. A message whose
 * encoding is larger is refused with INVALID_ARGUMENT naming `payload` and the
 * limit (about 5,900 bytes of payload with a short topic and no attributes),
 * never truncated or dropped. Delivery is at most once: a subscriber whose
 * listen connection drops gets UNAVAILABLE and must subscribe again.
 */
import { createHash, randomUUID } from "node:crypto";
import { prism } from "../../gen/prism.js";
import { errors } from "../../core/errors.js";
import type { Clock } from "../../core/clock.js";
import type { Attributes, Bytes, IdempotencyToken, Once, PubSubStore, Subscription, SubscriptionSink } from "../driver.js";
import { pgOnce, STR } from "./idempotency.js";
import { topicMatcher, type TopicMatcher } from "../common/topics.js";
import type { PgInstance } from "./instance.js";

/** NOTIFY refuses payloads of 8000 bytes or more. */
export const MAX_NOTIFY_BYTES = 7999;

/** A valid unquoted identifier (63 bytes max) unique to schema + namespace. */
export function pubsubChannel(schema: string, ns: string): string {
  return `prism_p_${createHash("sha256").update(`${schema}\0${ns}`).digest("hex").slice(0, 40)}`;
}

class Sub implements Subscription {
  ready = false;
  constructor(
    readonly match: TopicMatcher,
    readonly sink: SubscriptionSink,
    private readonly owner: PgPubSub,
  ) {}
  async close(): Promise<void> {
    this.owner.remove(this);
  }
}

export class PgPubSub implements PubSubStore {
  private readonly subs = new Set<Sub>();
  private live: Promise<void> | undefined;
  private seq = 0;
  private readonly idPrefix = randomUUID().slice(0, 8);
  private readonly onNotify = (payload: string): void => this.dispatch(payload);
  private readonly onLost = (err: Error): void => {
    this.live = undefined;
    const all = [...this.subs];
    this.subs.clear();
    // Not-yet-ready subscriptions learn it from their subscribe() rejecting.
    for (const s of all) if (s.ready) s.sink.onError(err);
  };

  constructor(
    private readonly db: PgInstance,
    private readonly clock: Clock,
    readonly channel: string,
  ) {}

  async publish(topic: string, payload: Bytes, attributes: Attributes): Promise<string> {
    const { messageId, text } = this.encode(topic, payload, attributes);
    await this.db.query("ps_pub", "SELECT pg_notify($1, $2)", [this.channel, text]);
    return messageId;
  }

  /** pubsub_idempotent: NOTIFY inside the record's transaction, so it is sent at commit, once. */
  publishOnce(topic: string, payload: Bytes, attributes: Attributes, token: IdempotencyToken): Promise<Once<string>> {
    const { messageId, text } = this.encode(topic, payload, attributes);
    return pgOnce(this.db, this.channel, token, this.clock.now(), STR, async (q) => {
      await q("ps_pub", "SELECT pg_notify($1, $2)", [this.channel, text]);
      return messageId;
    });
  }

  private encode(topic: string, payload: Bytes, attributes: Attributes): { messageId: string; text: string } {
    const messageId = `${this.idPrefix}-${++this.seq}`;
    const bytes = prism.v1.PubSubMessage.encode({ topic, payload, attributes, messageId, publishTimeMs: this.clock.now() }).finish();
    const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
    if (text.length > MAX_NOTIFY_BYTES) {
      throw errors.invalidArgument(
        "payload",
        `the postgres backend carries a message in one NOTIFY of at most ${MAX_NOTIFY_BYTES} bytes; this one (payload ${payload.length} bytes, ` +
          `with topic and attributes, base64-encoded) needs ${text.length} bytes: keep payload + topic + attributes under about ${Math.floor((MAX_NOTIFY_BYTES * 3) / 4) - 16} bytes`,
      );
    }
    return { messageId, text };
  }

  async subscribe(pattern: string, sink: SubscriptionSink): Promise<Subscription> {
    const sub = new Sub(topicMatcher(pattern), sink, this);
    this.subs.add(sub);
    try {
      if (!this.live) {
        const live = this.db.listener.listen(this.channel, this.onNotify, this.onLost);
        this.live = live;
        live.catch(() => {
          if (this.live === live) this.live = undefined;
        });
      }
      await this.live;
    } catch (e) {
      this.remove(sub);
      throw e;
    }
    if (!this.subs.has(sub)) throw errors.unavailable(`pubsub channel ${this.channel}: notification connection lost`);
    sub.ready = true;
    return sub;
  }

  remove(sub: Sub): void {
    if (!this.subs.delete(sub) || this.subs.size) return;
    this.live = undefined;
    this.db.listener.unlisten(this.channel, this.onNotify);
  }

  private dispatch(text: string): void {
    let m: prism.v1.PubSubMessage;
    try {
      m = prism.v1.PubSubMessage.decode(Buffer.from(text, "base64"));
    } catch {
      return; // not ours (someone else NOTIFYing on the channel)
    }
    const msg = { topic: m.topic, payload: m.payload, attributes: m.attributes, messageId: m.messageId, publishTimeMs: Number(m.publishTimeMs) };
    for (const s of this.subs) if (s.ready && s.match(msg.topic)) s.sink.onMessage(msg);
  }

  /** Ends every subscription (namespace deleted or backend closed). */
  closeAll(err: Error): void {
    const all = [...this.subs];
    for (const s of all) {
      this.remove(s);
      if (s.ready) s.sink.onError(err);
    }
  }
}
