/**
 * The `kafka` backend (kafkajs): PubSub (with wildcards, matched in Prism)
 * and Stream (offsets, replay, consumer groups). See link.ts for the client
 * and why reads use Fetch requests, pubsub.ts and stream.ts for the mapping,
 * README.md for limits.
 */
import { z } from "zod";
import type { BackendDriver, BackendHealth, BackendInstance, DriverContext, NamespaceLimits, NamespaceStores } from "../driver.js";
import { KafkaLink } from "./link.js";
import { KafkaPubSub } from "./pubsub.js";
import { KafkaStream } from "./stream.js";

const broker = z.string().regex(/^[A-Za-z0-9.\-_[\]:]+:\d{1,5}$/, 'must be "host:port"');

const optionsSchema = z
  .object({
    brokers: z.union([broker.transform((b) => [b]), z.array(broker).min(1)]).default(["127.0.0.1:9092"]),
    client_id: z.string().min(1).max(255).default("prism"),
    /** First part of every topic and group name; lets several Prism deployments share one cluster. */
    prefix: z
      .string()
      .regex(/^[A-Za-z0-9-]{1,64}$/, "must be 1-64 of A-Z a-z 0-9 -")
      .default("prism"),
    /** -1: the broker's default.replication.factor. */
    replication_factor: z.number().int().min(-1).max(32).default(-1),
    connect_timeout_ms: z.number().int().positive().max(60_000).default(3000),
    request_timeout_ms: z.number().int().positive().max(120_000).default(30_000),
    /** Retries of one request before it fails with UNAVAILABLE. */
    retries: z.number().int().min(0).max(10).default(2),
    ssl: z.boolean().default(false),
    sasl: z
      .object({
        mechanism: z.enum(["plain", "scram-sha-256", "scram-sha-512"]),
        username: z.string(),
        password: z.string(),
      })
      .strict()
      .optional(),
  })
  .strict();

export type KafkaOptions = z.output<typeof optionsSchema>;

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
  optionsSchema: optionsSchema as unknown as z.ZodType<KafkaOptions>,
  create: (options, ctx) => new KafkaInstance(options, ctx),
};
