/**
 * The `rabbitmq` backend (amqplib): Queue on quorum queues (publisher
 * confirms, dead-letter queue, delays through binary delay tiers, leases
 * kept by Prism) and PubSub over a topic exchange per namespace. See
 * queue.ts, delay.ts and pubsub.ts for the mapping, README.md for limits.
 *
 * One connection per backend instance with four channels: publishing
 * (confirm mode), the work channel holding dequeued deliveries, the
 * subscription channel, and one for declarations (a failed declaration
 * closes its channel, and must not take leases or subscriptions with it).
 */
import type { RabbitOptions } from "./options.js";
import { displayUrl } from "../../core/redact.js";
import type { BackendDriver, BackendHealth, BackendInstance, DriverContext, NamespaceLimits, NamespaceStores } from "../driver.js";
import type { ConfirmChannel } from "amqplib";
import { DelayTiers } from "./delay.js";
import { AmqpLink, type Slot } from "./link.js";
import { PubSubCore, RabbitPubSub } from "./pubsub.js";
import { QueueCore, RabbitQueue } from "./queue.js";

const MiB = 1024 * 1024;

export type { RabbitOptions };

function display(url: string): string {
  return displayUrl(url);
}

class RabbitInstance implements BackendInstance {
  private readonly link: AmqpLink;
  private readonly pub: Slot<ConfirmChannel>;
  private readonly decl: Slot;
  private readonly queues: QueueCore;
  private readonly pubsub: PubSubCore;
  private closed: Promise<void> | undefined;

  constructor(
    private readonly opts: RabbitOptions,
    private readonly ctx: DriverContext,
  ) {
    this.link = new AmqpLink(
      { url: opts.url, display: display(opts.url), connectTimeoutMs: opts.connect_timeout_ms, maxBackoffMs: opts.max_backoff_ms },
      ctx,
    );
    this.pub = this.link.slot<ConfirmChannel>(true);
    this.decl = this.link.slot(false);
    this.queues = new QueueCore(this.link, this.pub, this.decl, new DelayTiers(opts.prefix), ctx.log);
    this.pubsub = new PubSubCore(this.link, this.pub, this.decl);
    this.link.onConnect = () => {
      this.queues.resetDeclarations();
      this.pubsub.resetDeclarations();
    };
  }

  namespace(name: string, limits: NamespaceLimits): NamespaceStores {
    const pubsub = new RabbitPubSub(this.pubsub, this.opts.prefix, name, this.ctx.clock);
    return {
      pubsub,
      queue: new RabbitQueue(this.queues, this.opts.prefix, name, limits, this.ctx.clock),
      close: () => pubsub.closeAll(),
    };
  }

  async health(): Promise<BackendHealth> {
    const t0 = performance.now();
    try {
      await (await this.link.channel(this.decl)).checkExchange("amq.topic");
      return { ok: true, latencyMs: performance.now() - t0, message: "connected" };
    } catch (e) {
      return { ok: false, latencyMs: performance.now() - t0, message: (e as Error).message };
    }
  }

  close(): Promise<void> {
    return (this.closed ??= (async () => {
      this.pubsub.endAll(new Error("rabbitmq backend closed"));
      this.queues.close();
      await this.link.close();
    })());
  }
}

export const driver: BackendDriver<RabbitOptions> = {
  type: "rabbitmq",
  description: "RabbitMQ (amqplib): Queue on quorum queues with confirms, DLQ, delay tiers and Prism-held leases; PubSub over topic exchanges",
  interfaces: ["pubsub_basic", "pubsub_wildcards", "queue_basic", "queue_visibility", "queue_dead_letter", "queue_delayed"],
  properties: {
    // Quorum queues with publisher confirms; topic exchanges for PubSub. 128 MiB is the server's default max_message_size.
    pubsub: { durable: false, delivery: ["at-most-once"], maxValueBytes: 128 * MiB },
    queue: { durable: true, delivery: ["at-least-once"], maxValueBytes: 128 * MiB },
  },
  create: (options, ctx) => new RabbitInstance(options, ctx),
};
