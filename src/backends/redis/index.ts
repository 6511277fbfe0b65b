/**
 * The `redis` backend: KeyValue, PubSub, Queue and Stream on one Redis
 * (ioredis; the commands of one event-loop turn share one write). See keys.ts for the key layout, scripts.ts for
 * the atomic state changes, README "Redis" for limits.
 *
 * Connections per backend instance: one write-batching client for all
 * commands and scripts, plus one subscriber connection opened on the first
 * Subscribe. Nothing blocks a connection (long polls poll).
 */
import type { RedisOptions } from "./options.js";
import { displayUrl } from "../../core/redact.js";
import { readFileSync } from "node:fs";
import type { ConnectionOptions } from "node:tls";
import type { BackendDriver, BackendHealth, BackendInstance, DriverContext, NamespaceLimits, NamespaceStores } from "../driver.js";
import { Link } from "./connection.js";
import { Keys } from "./keys.js";
import { RedisKeyValue } from "./keyvalue.js";
import { RedisPubSub, SubscriberHub } from "./pubsub.js";
import { RedisQueue } from "./queue.js";
import { SCRIPTS } from "./scripts.js";
import { RedisStream } from "./stream.js";

const MiB = 1024 * 1024;

export type { RedisOptions };

/** The URL without credentials, for logs. */
function display(url: string): string {
  return displayUrl(url);
}

/** ioredis `tls` from the tls_* options (rediss:// only; read once, at connect). */
function tlsOptions(opts: RedisOptions): { tls?: ConnectionOptions } {
  if (!opts.url.startsWith("rediss://")) return {};
  const tls: ConnectionOptions = {};
  if (opts.tls_ca_file !== undefined) tls.ca = readFileSync(opts.tls_ca_file);
  if (opts.tls_cert_file !== undefined) tls.cert = readFileSync(opts.tls_cert_file);
  if (opts.tls_key_file !== undefined) tls.key = readFileSync(opts.tls_key_file);
  if (opts.tls_servername !== undefined) tls.servername = opts.tls_servername;
  return { tls };
}

class RedisInstance implements BackendInstance {
  private readonly main: Link;
  private readonly tls: { tls?: ConnectionOptions };
  private hub: SubscriberHub | undefined;
  private closed: Promise<void> | undefined;

  constructor(
    private readonly opts: RedisOptions,
    private readonly ctx: DriverContext,
  ) {
    this.tls = tlsOptions(opts);
    this.main = new Link(display(opts.url), opts.url, { db: opts.db, scripts: SCRIPTS, ...this.tls }, ctx, () => void this.checkEviction(), { batchWrites: true });
  }

  /** Queues and streams lose data when Redis evicts keys: say so at start. */
  private async checkEviction(): Promise<void> {
    try {
      const res = (await this.main.redis.config("GET", "maxmemory-policy")) as unknown as string[];
      const policy = res[1];
      if (policy && policy !== "noeviction") {
        this.ctx.log("warn", `${display(this.opts.url)}: maxmemory-policy is "${policy}"; set it to "noeviction", or Redis may evict queue messages, stream records and keys without TTL`);
      }
    } catch (e) {
      this.ctx.log("info", `${display(this.opts.url)}: could not read maxmemory-policy (${(e as Error).message}); make sure it is "noeviction"`);
    }
  }

  private subscriber = (): SubscriberHub => {
    this.hub ??= new SubscriberHub(
      new Link(`${display(this.opts.url)} (subscriber)`, this.opts.url, { db: this.opts.db, autoResubscribe: false, ...this.tls }, this.ctx),
    );
    return this.hub;
  };

  namespace(name: string, limits: NamespaceLimits): NamespaceStores {
    const keys = new Keys(this.opts.key_prefix, name);
    const clock = this.ctx.clock;
    const pubsub = new RedisPubSub(this.main, this.subscriber, keys, clock);
    const queue = new RedisQueue(this.main, keys, limits, clock, this.subscriber);
    return {
      keyvalue: new RedisKeyValue(this.main, keys),
      pubsub,
      queue,
      stream: new RedisStream(this.main, keys, limits, clock),
      close: async () => {
        await pubsub.closeAll();
        await queue.close();
      },
    };
  }

  async health(): Promise<BackendHealth> {
    const t0 = performance.now();
    try {
      await (await this.main.client()).ping();
      return { ok: true, latencyMs: performance.now() - t0, message: "PONG" };
    } catch (e) {
      return { ok: false, latencyMs: performance.now() - t0, message: (e as Error).message };
    }
  }

  close(): Promise<void> {
    return (this.closed ??= Promise.all([this.main.close(), this.hub?.close()]).then(() => {}));
  }
}

export const driver: BackendDriver<RedisOptions> = {
  type: "redis",
  description: "Redis (ioredis): KeyValue with TTL/scan/CAS, PubSub with wildcards, Queue via Lua scripts, Stream on Redis Streams",
  interfaces: [
    "keyvalue_basic",
    "keyvalue_ttl",
    "keyvalue_batch",
    "keyvalue_scan",
    "keyvalue_cas",
    "keyvalue_idempotent",
    "pubsub_basic",
    "pubsub_wildcards",
    "pubsub_idempotent",
    "queue_basic",
    "queue_visibility",
    "queue_dead_letter",
    "queue_delayed",
    "queue_idempotent",
    "stream_basic",
    "stream_replay",
    "stream_consumer_groups",
    "stream_idempotent",
  ],
  properties: {
    // Durability depends on the server's appendonly/save settings, which Prism cannot see: not declared durable.
    // 512 MB is Redis's string ceiling.
    keyvalue: { consistency: "strong", maxValueBytes: 512 * MiB, latencyP99Ms: 2, throughputRps: 110_000, measured: "bench ws-kv-get-redis (README table: 115.8K/s, p99 1.81 ms)" },
    pubsub: { durable: false, ordering: true, delivery: ["at-most-once"], maxValueBytes: 512 * MiB },
    queue: { ordering: true, delivery: ["at-least-once"], consistency: "strong", maxValueBytes: 512 * MiB, latencyP99Ms: 7, throughputRps: 40_000, measured: "bench ws-queue-redis (README table: 40.0K/s, p99 6.42 ms)" },
    stream: { ttl: true, ordering: true, delivery: ["at-least-once"], consistency: "strong", maxValueBytes: 512 * MiB },
  },
  create: (options, ctx) => new RedisInstance(options, ctx),
};
