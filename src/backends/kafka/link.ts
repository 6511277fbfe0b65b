/**
 * One Kafka client per backend instance: a producer (acks=all), an admin
 * client, and a fetch-only cluster handle for reading at exact offsets.
 *
 * kafkajs's public consumer reads only through group membership (a group
 * join costs seconds and moves offsets by itself); Prism needs "records from
 * offset N" for Stream.Read, its own per-record pending lists for consumer
 * groups, and live tails for PubSub. So reads use kafkajs's cluster object
 * (the one its own consumer fetches through, created by the client's factory
 * with the same brokers, TLS, SASL and retry settings) and Fetch requests to
 * the partition leader. That factory is private kafkajs API, pinned by the
 * exact kafkajs version in package.json; fetch.ts is the only user.
 *
 * Fail fast: while the brokers are unreachable, calls fail with UNAVAILABLE
 * (the first after a short, bounded retry, the next ones at once until the
 * backoff passes); the next call after it tries again, so Prism recovers
 * without a restart.
 */
import { Kafka, logLevel, type Admin, type Producer } from "kafkajs";
import { errors, PrismError } from "../../core/errors.js";
import type { DriverContext } from "../driver.js";

/** kafkajs's internal Cluster, as far as fetch.ts uses it. */
export interface Cluster {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  refreshMetadata(): Promise<void>;
  addTargetTopic(topic: string): Promise<void>;
  findLeaderForPartitions(topic: string, partitions: number[]): Record<string, number[]>;
  findBroker(q: { nodeId: string }): Promise<Broker>;
}

export interface FetchedMessage {
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  timestamp: string;
  headers?: Record<string, Buffer | Buffer[] | undefined>;
  isControlRecord?: boolean;
}

export interface Broker {
  fetch(req: {
    maxWaitTime: number;
    minBytes: number;
    maxBytes: number;
    isolationLevel: number;
    topics: { topic: string; partitions: { partition: number; fetchOffset: string; maxBytes: number }[] }[];
  }): Promise<{ responses: { topicName: string; partitions: { partition: number; highWatermark: string; messages: FetchedMessage[] }[] }[] }>;
}

/** Errors that say "this request is wrong", not "Kafka is away". */
const HARD = new Set(["TOPIC_AUTHORIZATION_FAILED", "GROUP_AUTHORIZATION_FAILED", "INVALID_TOPIC_EXCEPTION", "MESSAGE_TOO_LARGE", "RECORD_LIST_TOO_LARGE", "INVALID_REQUEST", "UNSUPPORTED_VERSION", "POLICY_VIOLATION", "INVALID_REPLICATION_FACTOR", "INVALID_CONFIG"]);

export function toDriverError(e: unknown): PrismError {
  if (e instanceof PrismError) return e;
  const err = e as Error & { type?: string; originalError?: Error & { type?: string } };
  const type = err?.type ?? err?.originalError?.type;
  if (type && HARD.has(type)) return errors.internal(`kafka: ${err.message}`);
  return errors.unavailable("kafka", err);
}

export function fail(e: unknown): never {
  throw toDriverError(e);
}

export interface LinkOptions {
  brokers: string[];
  clientId: string;
  connectionTimeoutMs: number;
  requestTimeoutMs: number;
  retries: number;
  ssl: boolean;
  sasl?: { mechanism: "plain" | "scram-sha-256" | "scram-sha-512"; username: string; password: string };
}

const MAX_BACKOFF_MS = 5000;

export class KafkaLink {
  readonly kafka: Kafka;
  readonly producer: Producer;
  readonly admin: Admin;
  private clusterHandle: Cluster | null = null;
  private readonly topics = new Map<string, Promise<void>>();
  private readonly targeted = new Set<string>();
  private connecting: Promise<void> | null = null;
  private up = false;
  private downUntil = 0;
  private backoff = 0;
  private lastError: PrismError | null = null;
  private closed = false;

  constructor(
    private readonly opts: LinkOptions,
    private readonly ctx: DriverContext,
  ) {
    this.kafka = new Kafka({
      clientId: opts.clientId,
      brokers: opts.brokers,
      connectionTimeout: opts.connectionTimeoutMs,
      requestTimeout: opts.requestTimeoutMs,
      ssl: opts.ssl,
      sasl: opts.sasl as never,
      retry: { retries: opts.retries, initialRetryTime: 100, maxRetryTime: 1000 },
      logLevel: logLevel.NOTHING,
    });
    this.producer = this.kafka.producer({ allowAutoTopicCreation: false, idempotent: false, maxInFlightRequests: undefined });
    this.admin = this.kafka.admin();
    this.producer.on(this.producer.events.DISCONNECT, () => (this.up = false));
    this.admin.on(this.admin.events.DISCONNECT, () => (this.up = false));
  }

  /** The fetch handle (valid after ready()). */
  get cluster(): Cluster {
    return (this.clusterHandle ??= createCluster(this.kafka));
  }

  /** Connected, or UNAVAILABLE (promptly: see the header). */
  ready(): void | Promise<void> {
    if (this.up) return;
    if (this.closed) throw errors.unavailable("kafka backend closed");
    if (this.connecting) return this.connecting;
    if (Date.now() < this.downUntil && this.lastError) throw this.lastError;
    this.connecting = this.connect().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private async connect(): Promise<void> {
    try {
      await Promise.all([this.producer.connect(), this.admin.connect(), this.cluster.connect()]);
      // Metadata of the topics read so far, for the fresh connection.
      if (this.targeted.size) await this.cluster.refreshMetadata();
      if (this.closed) return;
      if (this.lastError) this.ctx.log("info", `kafka ${this.opts.brokers.join(",")}: connected again`);
      this.up = true;
      this.lastError = null;
      this.backoff = 0;
    } catch (e) {
      const err = errors.unavailable(`kafka ${this.opts.brokers.join(",")}`, e);
      if (err.message !== this.lastError?.message) this.ctx.log("warn", err.message);
      this.lastError = err;
      this.backoff = Math.min(this.backoff ? this.backoff * 2 : 250, MAX_BACKOFF_MS);
      this.downUntil = Date.now() + this.backoff;
      // Disconnect what did connect, so the next attempt starts clean.
      await Promise.allSettled([this.producer.disconnect(), this.admin.disconnect(), this.clusterHandle?.disconnect()]);
      throw err;
    }
  }

  /** After a request failed for connection reasons: the next call reconnects. */
  noteFailure(e: unknown): PrismError {
    const err = toDriverError(e);
    if (err.reason === "PRISM_ERR_BACKEND_UNAVAILABLE") this.up = false;
    return err;
  }

  get connected(): boolean {
    return this.up;
  }

  /** Creates the topic (one partition: one offset sequence) unless it exists. */
  ensureTopic(topic: string, replicationFactor: number, configEntries: { name: string; value: string }[]): Promise<void> {
    let p = this.topics.get(topic);
    if (!p) {
      p = this.admin
        .createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor, configEntries }], waitForLeaders: true })
        .then(() => this.target(topic));
      this.topics.set(topic, p);
      p.catch(() => this.topics.delete(topic));
    }
    return p.catch((e) => {
      throw this.noteFailure(e);
    });
  }

  /** Whether the topic exists (positive answers are cached; a topic is never deleted by Prism). */
  async topicExists(topic: string): Promise<boolean> {
    if (this.targeted.has(topic)) return true;
    const all = await this.admin.listTopics().catch((e) => {
      throw this.noteFailure(e);
    });
    if (!all.includes(topic)) return false;
    await this.target(topic);
    return true;
  }

  /** Adds the topic to the fetch handle's metadata. */
  private async target(topic: string): Promise<void> {
    if (this.targeted.has(topic)) return;
    await this.cluster.addTargetTopic(topic);
    this.targeted.add(topic);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.up = false;
    if (this.connecting) await this.connecting.catch(() => {});
    await Promise.allSettled([this.producer.disconnect(), this.admin.disconnect(), this.clusterHandle?.disconnect()]);
  }
}

/** The client's private cluster factory (see the header). */
function createCluster(kafka: Kafka): Cluster {
  const sym = Object.getOwnPropertySymbols(kafka).find((s) => s.description === "private:Kafka:createCluster");
  const factory = sym ? (kafka as unknown as Record<symbol, unknown>)[sym] : undefined;
  if (typeof factory !== "function") throw new Error("kafkajs: this version does not expose its cluster factory; pin kafkajs 2.2.x");
  return factory({ allowAutoTopicCreation: false, metadataMaxAge: 300_000, maxInFlightRequests: null, isolationLevel: 1 }) as Cluster;
}
