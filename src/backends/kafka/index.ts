/**
 * The `kafka` backend (kafkajs): PubSub (with wildcards, matched in Prism)
 * and Stream (offsets, replay, consumer groups). See link.ts for the client
 * and why reads use Fetch requests, pubsub.ts and stream.ts for the mapping,
 * README.md for limits.
 */
import type { KafkaOptions } from "./options.js";
import type { BackendDriver, BackendHealth, BackendInstance, DriverContext, NamespaceLimits, NamespaceStores } from "../driver.js";
import { KafkaLink } from "./link.js";
import { KafkaPubSub } from "./pubsub.js";
import { KafkaStream } from "./stream.js";

export type { KafkaOptions };

class KafkaInstance implements BackendInstance {
  private readonly link: KafkaLink;
  private readonly pubsubs = new Set<KafkaPubSub>();
  private closed: Promise<void> | undefined;
  private warnedCount = new Set<string>();

  constructor(
    private readonly opts: KafkaOptions,
    private readonly ctx: DriverContext,
  ) {
    this.link = new KafkaLink(
      {
        brokers: opts.brokers,
        clientId: opts.client_id,
        connectionTimeoutMs: opts.connect_timeout_ms,
        requestTimeoutMs: opts.request_timeout_ms,
        retries: opts.retries,
        ssl: opts.ssl,
        sasl: opts.sasl,
      },
      ctx,
    );
    // Connect in the background; failures are logged and answered with UNAVAILABLE.
    Promise.resolve()
      .then(() => this.link.ready())
      .catch(() => {});
  }

  namespace(name: string, limits: NamespaceLimits): NamespaceStores {
    if (limits.streamMaxCount && !this.warnedCount.has(name)) {
      this.warnedCount.add(name);
      this.ctx.log("warn", `namespace "${name}": Kafka has no count-based retention; stream_max_count is not applied (use stream_max_age_seconds)`);
    }
    const pubsub = new KafkaPubSub(this.link, this.opts.prefix, name, this.ctx.clock, this.opts.replication_factor);
    this.pubsubs.add(pubsub);
    return {
      pubsub,
      stream: new KafkaStream(this.link, this.opts.prefix, name, limits, this.ctx.clock, this.opts.replication_factor),
      close: async () => {
        this.pubsubs.delete(pubsub);
        await pubsub.closeAll();
      },
    };
  }

  async health(): Promise<BackendHealth> {
    const t0 = performance.now();
    try {
      await this.link.ready();
      await this.link.admin.describeCluster();
      return { ok: true, latencyMs: performance.now() - t0, message: "connected" };
    } catch (e) {
      return { ok: false, latencyMs: performance.now() - t0, message: (e as Error).message };
    }
  }

  close(): Promise<void> {
    return (this.closed ??= (async () => {
      for (const p of this.pubsubs) await p.closeAll();
      this.pubsubs.clear();
      await this.link.close();
    })());
  }
}

export const driver: BackendDriver<KafkaOptions> = {
  type: "kafka",
  description: "Apache Kafka (kafkajs): PubSub with wildcards on one topic per namespace; Stream with offsets, replay and consumer groups",
  interfaces: ["pubsub_basic", "pubsub_wildcards", "stream_basic", "stream_replay", "stream_consumer_groups"],
  unverified:
    "no Kafka broker runs on the build machine: these claims pass only when the suites run against a real cluster (PRISM_TEST_KAFKA_BROKERS=host:9092 node scripts/run-tests.mjs acceptance/kafka unit/kafka)",
  properties: {
    // Replicated log; 1 MB is the broker's default message.max.bytes.
    pubsub: { durable: true, ordering: true, delivery: ["at-least-once"], maxValueBytes: 1_000_000 },
    stream: { durable: true, ttl: true, ordering: true, delivery: ["at-least-once"], maxValueBytes: 1_000_000 },
  },
  create: (options, ctx) => new KafkaInstance(options, ctx),
};
