/**
 * Multicast Registry (PRD POC 4): members register an identity with metadata
 * and a TTL in the `registry` slot (a KeyValue store that scans); Multicast
 * selects members by a metadata filter (src/patterns/multicast/filter.ts) and
 * publishes the payload to each selected member's topic on the `messaging`
 * slot (PubSub), which the member receives through Subscribe(identity).
 *
 * With `options.delivery: queue` the `messaging` slot is a queue instead:
 * each member has its own queue `member.<identity>`, so what is multicast
 * while a member is offline waits for it (durable delivery), and Subscribe
 * long-polls that queue, acknowledging each message once it has been handed
 * to the member's connection (a lease that is never acknowledged — the
 * member went away — makes the message visible again after the visibility
 * timeout: at-least-once).
 *
 * A member is stored under `m/<identity>` as JSON {metadata, expiresAtMs}.
 * Expiry is checked on every read (so an expired member never appears in
 * Enumerate nor receives a Multicast, whatever the backend's expiry
 * granularity), and the key also gets the TTL when the registry backend
 * claims keyvalue_ttl, so the backend reclaims it.
 */
import type { Bytes, KeyValueStore, PubSubStore, QueueStore, Subscription, SubscriptionSink, Attributes } from "../backends/driver.js";
import type { Clock } from "../core/clock.js";
import { errors } from "../core/errors.js";
import type { InterfaceName } from "../core/interfaces.js";
import { FilterError, parseFilter, type Filter, type Metadata } from "./multicast/filter.js";
import type { ComposeContext, PatternDef, PatternRuntime } from "./registry.js";

const PREFIX = "m/";
const IDENTITY = /^[A-Za-z0-9_:@-][A-Za-z0-9_.:@-]{0,255}$/;
/** Raw registry items read per scan call while enumerating or multicasting. */
const SCAN_PAGE = 500;
/** Publishes in flight per Multicast. */
const FANOUT = 256;

export interface Member {
  identity: string;
  metadata: Record<string, string>;
  /** 0: no expiry. */
  expiresAtMs: number;
}

export interface MulticastResult {
  total: number;
  delivered: number;
  failed: number;
  failedIdentities: string[];
}

/** The topic (or, with delivery: queue, the queue) a member receives on. */
export const memberTopic = (identity: string) => `member.${identity}`;

/** How multicasts reach members: the messaging slot's primitive. */
export interface Delivery {
  send(identity: string, payload: Bytes, attributes: Attributes): Promise<unknown>;
  subscribe(identity: string, sink: SubscriptionSink): Promise<Subscription>;
}

/** delivery: pubsub (default): live members only, at most once. */
export function pubsubDelivery(pubsub: PubSubStore): Delivery {
  return {
    send: (identity, payload, attributes) => pubsub.publish(memberTopic(identity), payload, attributes),
    subscribe: (identity, sink) => pubsub.subscribe(memberTopic(identity), sink),
  };
}

/** Long poll and lease used by a queue-backed member subscription. */
const QUEUE_POLL = { maxMessages: 64, visibilityTimeoutMs: 30_000, waitMs: 20_000 };

/** delivery: queue: a queue per member; messages wait while it is offline. */
export function queueDelivery(queue: QueueStore, log: (level: "warn", msg: string) => void): Delivery {
  return {
    send: (identity, payload, attributes) => queue.enqueue(memberTopic(identity), payload, attributes, 0),
    async subscribe(identity, sink) {
      const name = memberTopic(identity);
      const stop = new AbortController();
      let closed = false;
      const loop = async () => {
        while (!closed) {
          let batch;
          try {
            batch = await queue.dequeue(name, { ...QUEUE_POLL, signal: stop.signal });
          } catch (e) {
            if (!closed) sink.onError(e as Error);
            return;
          }
          for (const m of batch) {
            if (closed) {
              // Not handed over: visible again now rather than after the lease.
              await queue.nack(name, m.receipt, 0).catch(() => {});
              continue;
            }
            sink.onMessage({ topic: name, payload: m.payload, attributes: m.attributes, messageId: m.messageId, publishTimeMs: m.enqueuedAtMs });
            await queue.ack(name, m.receipt).catch((e: Error) => log("warn", `multicast-registry: ack on ${name} failed (the message will be delivered again): ${e.message}`));
          }
        }
      };
      const running = loop();
      return {
        async close() {
          closed = true;
          stop.abort();
          await running;
        },
      };
    },
  };
}

function requireIdentity(identity: string): void {
  if (!IDENTITY.test(identity)) throw errors.invalidArgument("identity", "must be 1-256 of A-Z a-z 0-9 _ . : @ - (not starting with .)");
}

export function compileFilter(src: string): Filter {
  try {
    return parseFilter(src);
  } catch (e) {
    if (e instanceof FilterError) throw errors.invalidArgument("filter", e.message);
    throw e;
  }
}

export class MulticastRegistry {
  readonly counters = { registered: 0, unregistered: 0, multicasts: 0, delivered: 0, failed: 0 };

  constructor(
    private readonly kv: KeyValueStore,
    private readonly delivery: Delivery,
    private readonly ttl: boolean,
    private readonly clock: Clock,
  ) {}

  private decode(identity: string, value: Bytes): Member | null {
    try {
      const m = JSON.parse(Buffer.from(value).toString("utf8")) as { metadata?: Record<string, string>; expiresAtMs?: number };
      const expiresAtMs = m.expiresAtMs ?? 0;
      if (expiresAtMs !== 0 && expiresAtMs <= this.clock.now()) return null;
      return { identity, metadata: m.metadata ?? {}, expiresAtMs };
    } catch {
      return null;
    }
  }

  /** Registers or refreshes (metadata replaced, TTL restarted). Returns whether the member is new. */
  async register(identity: string, metadata: Record<string, string>, ttlSeconds: number): Promise<{ created: boolean; expiresAtMs: number }> {
    requireIdentity(identity);
    const key = PREFIX + identity;
    const before = await this.kv.get(key);
    const expiresAtMs = ttlSeconds > 0 ? this.clock.now() + ttlSeconds * 1000 : 0;
    const value = Buffer.from(JSON.stringify({ metadata, expiresAtMs }), "utf8");
    await this.kv.set(key, value, { ttlMs: this.ttl && ttlSeconds > 0 ? ttlSeconds * 1000 : undefined });
    this.counters.registered++;
    return { created: !before || !this.decode(identity, before.value), expiresAtMs };
  }

  async unregister(identity: string): Promise<boolean> {
    requireIdentity(identity);
    const key = PREFIX + identity;
    const before = await this.kv.get(key);
    const removed = await this.kv.delete(key);
    if (removed) this.counters.unregistered++;
    return removed && !!before && this.decode(identity, before.value) !== null;
  }

  async isMember(identity: string): Promise<boolean> {
    const rec = await this.kv.get(PREFIX + identity);
    return !!rec && this.decode(identity, rec.value) !== null;
  }

  /** One page of live members matching `filter`: up to `limit`, and the cursor to continue from ("" at the end). */
  async enumerate(filter: Filter, cursor: string, limit: number): Promise<{ members: Member[]; nextCursor: string }> {
    const members: Member[] = [];
    let c = cursor;
    do {
      const page = await this.kv.scan!(PREFIX, c, Math.min(SCAN_PAGE, Math.max(limit - members.length, 1)), false);
      for (const item of page.items) {
        const m = this.decode(item.key.slice(PREFIX.length), item.value ?? new Uint8Array(0));
        if (m && filter(m.metadata as Metadata)) members.push(m);
      }
      c = page.nextCursor;
    } while (c !== "" && members.length < limit);
    return { members, nextCursor: c };
  }

  /** Publishes `payload` to every live member matching `filter`. */
  async multicast(filter: Filter, payload: Bytes, attributes: Attributes): Promise<MulticastResult> {
    this.counters.multicasts++;
    const res: MulticastResult = { total: 0, delivered: 0, failed: 0, failedIdentities: [] };
    let cursor = "";
    do {
      const page = await this.enumerate(filter, cursor, SCAN_PAGE);
      cursor = page.nextCursor;
      res.total += page.members.length;
      for (let i = 0; i < page.members.length; i += FANOUT) {
        const batch = page.members.slice(i, i + FANOUT);
        const outcomes = await Promise.allSettled(batch.map((m) => this.delivery.send(m.identity, payload, attributes)));
        outcomes.forEach((o, j) => {
          if (o.status === "fulfilled") res.delivered++;
          else {
            res.failed++;
            if (res.failedIdentities.length < 1000) res.failedIdentities.push(batch[j]!.identity);
          }
        });
      }
    } while (cursor !== "");
    this.counters.delivered += res.delivered;
    this.counters.failed += res.failed;
    return res;
  }

  /** What is multicast to a registered member. */
  async subscribe(identity: string, sink: SubscriptionSink): Promise<Subscription> {
    requireIdentity(identity);
    if (!(await this.isMember(identity))) throw errors.notRegistered(identity);
    return this.delivery.subscribe(identity, sink);
  }
}

function compose(ctx: ComposeContext): PatternRuntime {
  const registry = ctx.slots.get("registry")!;
  const messaging = ctx.slots.get("messaging")!;
  const delivery = ctx.options.delivery === "queue" ? queueDelivery(messaging.stores.queue!, ctx.log) : pubsubDelivery(messaging.stores.pubsub!);
  const service = new MulticastRegistry(registry.stores.keyvalue!, delivery, registry.interfaces.has("keyvalue_ttl"), ctx.clock);
  return { stores: {}, interfaces: claims(), counters: service.counters, service };
}

function claims(): InterfaceName[] {
  return [];
}

export const multicastRegistry: PatternDef = {
  name: "multicast-registry",
  description: "members register an identity with metadata and a TTL; Multicast sends a payload to every live member whose metadata matches a filter",
  serves: ["multicast_registry"],
  slots: [
    {
      name: "registry",
      description: "holds the members (identity → metadata, expiry)",
      primitive: "keyvalue",
      requires: ["keyvalue_basic", "keyvalue_scan"],
      optional: ["keyvalue_ttl"],
      recommended: ["redis", "postgres", "nats", "sqlite", "memstore"],
    },
    {
      name: "messaging",
      description: "delivers multicasts: one topic per member, member.<identity>",
      primitive: "pubsub",
      requires: ["pubsub_basic"],
      optional: [],
      recommended: ["nats", "redis", "mqtt", "memstore"],
      forOptions: (options) =>
        options.delivery === "queue"
          ? {
              description: "delivers multicasts durably: one queue per member, member.<identity> (options.delivery: queue)",
              primitive: "queue",
              requires: ["queue_basic"],
              optional: [],
              recommended: ["redis", "postgres", "rabbitmq", "nats", "sqlite", "memstore"],
            }
          : {},
    },
  ],
  compose,
  claims,
};
