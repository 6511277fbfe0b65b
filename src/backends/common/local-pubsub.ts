/**
 * In-process fan-out for the embedded backends (memstore, sqlite): publish
 * delivers synchronously to every live subscription whose pattern matches.
 * Exact-topic subscriptions are found by map lookup; wildcard ones are tested
 * one by one (few per namespace in practice).
 */
import { randomUUID } from "node:crypto";
import type { Clock } from "../../core/clock.js";
import type { Attributes, Bytes, PubSubStore, Subscription, SubscriptionSink } from "../driver.js";
import { isWildcard, topicMatcher, type TopicMatcher } from "./topics.js";

interface Sub {
  sink: SubscriptionSink;
  match: TopicMatcher;
}

export class LocalPubSub implements PubSubStore {
  private readonly exact = new Map<string, Set<Sub>>();
  private readonly wild = new Set<Sub>();
  private seq = 0;
  private readonly idPrefix = randomUUID().slice(0, 8);

  constructor(private readonly clock: Clock) {}

  async publish(topic: string, payload: Bytes, attributes: Attributes): Promise<string> {
    return this.publishNow(topic, payload, attributes);
  }

  /** publish, synchronously: delivered to every live subscriber before it returns (SQLite publishes inside a transaction). */
  publishNow(topic: string, payload: Bytes, attributes: Attributes): string {
    const messageId = `${this.idPrefix}-${++this.seq}`;
    const msg = {
      topic,
      // Subscribers may hold the message after this call returns: give them their own copy.
      payload: Buffer.from(payload),
      attributes,
      messageId,
      publishTimeMs: this.clock.now(),
    };
    const subs = this.exact.get(topic);
    if (subs) for (const s of subs) s.sink.onMessage(msg);
    for (const s of this.wild) if (s.match(topic)) s.sink.onMessage(msg);
    return messageId;
  }

  async subscribe(pattern: string, sink: SubscriptionSink): Promise<Subscription> {
    const sub: Sub = { sink, match: topicMatcher(pattern) };
    if (isWildcard(pattern)) this.wild.add(sub);
    else {
      let set = this.exact.get(pattern);
      if (!set) this.exact.set(pattern, (set = new Set()));
      set.add(sub);
    }
    return {
      close: async () => {
        if (!this.wild.delete(sub)) {
          const set = this.exact.get(pattern);
          set?.delete(sub);
          if (set?.size === 0) this.exact.delete(pattern);
        }
      },
    };
  }

  /** Ends every subscription (namespace deleted or backend closed). */
  closeAll(reason: Error): void {
    const all = [...this.wild, ...[...this.exact.values()].flatMap((s) => [...s])];
    this.wild.clear();
    this.exact.clear();
    for (const s of all) s.sink.onError(reason);
  }
}
