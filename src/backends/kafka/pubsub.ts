/**
 * PubSub on Kafka: one single-partition topic per namespace
 * (`${prefix}.${ns}.ps`); the Prism topic is the record key, attributes are
 * headers, the message id is the record's offset. Publishing waits for acks
 * from all in-sync replicas.
 *
 * Subscribing needs no consumer group: each namespace with live
 * subscriptions has one tail in this process, a loop of long-poll Fetch
 * requests (at most 1 s each) from the partition leader. A subscription
 * starts at the high watermark read before subscribe() resolves, so every
 * publish that starts after that is delivered. The tail filters by pattern
 * in process (exact, `*`, `>`), so wildcards cost nothing extra on the broker.
 *
 * When fetching fails (brokers away), the tail ends every subscription of
 * the namespace with UNAVAILABLE. Kafka keeps the records, but a new
 * subscription starts from live messages, like every Prism subscription.
 */
import type { Clock } from "../../core/clock.js";
import { errors } from "../../core/errors.js";
import type { Attributes, Bytes, PubSubMessage, PubSubStore, Subscription, SubscriptionSink } from "../driver.js";
import { isWildcard, topicMatcher, type TopicMatcher } from "../common/topics.js";
import { bounds, fetchAt } from "./fetch.js";
import type { KafkaLink } from "./link.js";
import { pubsubTopic } from "./names.js";
import { asBuffer, fromHeaders, toHeaders, valueOf } from "./records.js";

const POLL_MS = 1000;

interface Sub {
  sink: SubscriptionSink;
  match: TopicMatcher | null;
  pattern: string;
  /** First Kafka offset this subscription receives. */
  from: number;
}

export class KafkaPubSub implements PubSubStore {
  private readonly topic: string;
  private readonly subs = new Set<Sub>();
  private position = -1;
  private running = false;
  private closed = false;

  constructor(
    private readonly link: KafkaLink,
    prefix: string,
    ns: string,
    private readonly clock: Clock,
    private readonly replicationFactor: number,
  ) {
    this.topic = pubsubTopic(prefix, ns);
  }

  async publish(topic: string, payload: Bytes, attributes: Attributes): Promise<string> {
    await this.link.ready();
    await this.link.ensureTopic(this.topic, this.replicationFactor, []);
    const [meta] = await this.link.producer
      .send({ topic: this.topic, acks: -1, messages: [{ key: topic, value: asBuffer(payload), headers: toHeaders(attributes), timestamp: String(this.clock.now()), partition: 0 }] })
      .catch((e) => {
        throw this.link.noteFailure(e);
      });
    return String(meta!.baseOffset ?? meta!.offset);
  }

  async subscribe(pattern: string, sink: SubscriptionSink): Promise<Subscription> {
    await this.link.ready();
    await this.link.ensureTopic(this.topic, this.replicationFactor, []);
    const { high } = await bounds(this.link, this.topic);
    const sub: Sub = { sink, match: isWildcard(pattern) ? topicMatcher(pattern) : null, pattern, from: high };
    this.subs.add(sub);
    if (!this.running) {
      // A running tail is at or before `high` (it only moves past records it read), so it needs no reset.
      this.position = high;
      this.running = true;
      void this.tail();
    }
    return {
      close: async () => {
        this.subs.delete(sub);
      },
    };
  }

  private async tail(): Promise<void> {
    try {
      while (this.subs.size && !this.closed) {
        const f = await fetchAt(this.link, this.topic, this.position, POLL_MS);
        if (f.outOfRange) {
          this.position = (await bounds(this.link, this.topic)).high;
          continue;
        }
        for (const m of f.messages) {
          const offset = Number(m.offset);
          this.position = offset + 1;
          const topic = m.key?.toString() ?? "";
          let msg: PubSubMessage | undefined;
          for (const s of this.subs) {
            if (offset < s.from) continue;
            if (s.match ? !s.match(topic) : s.pattern !== topic) continue;
            msg ??= { topic, payload: valueOf(m.value), attributes: fromHeaders(m.headers), messageId: String(offset), publishTimeMs: Number(m.timestamp) };
            s.sink.onMessage(msg);
          }
        }
      }
    } catch (e) {
      this.endAll(errors.unavailable("kafka subscription lost", e));
    } finally {
      this.running = false;
    }
  }

  endAll(reason: Error): void {
    const all = [...this.subs];
    this.subs.clear();
    for (const s of all) s.sink.onError(reason);
  }

  async closeAll(): Promise<void> {
    this.closed = true;
    this.endAll(errors.unavailable("namespace closed"));
  }
}
