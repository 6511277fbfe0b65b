/**
 * PubSub on Redis PUBLISH / (P)SUBSCRIBE: at-most-once, like Redis itself.
 * One subscriber connection per backend instance, shared by its namespaces;
 * each Redis channel or pattern is subscribed once and refcounted. Wildcard
 * patterns become globs (`*` and `>` → `*`), which also match across dots, so
 * every delivery is filtered again with the exact token matcher.
 *
 * When the subscriber connection drops, every live subscription ends with
 * UNAVAILABLE (messages published meanwhile are lost, and the caller should
 * know); new subscriptions work again once Redis is back.
 */
import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import { errors } from "../../core/errors.js";
import type { Clock } from "../../core/clock.js";
import type { Attributes, Bytes, IdempotencyToken, Once, PubSubMessage, PubSubStore, Subscription, SubscriptionSink } from "../driver.js";
import type { ScriptCommands } from "./scripts.js";
import { onceOf } from "./once.js";
import { isWildcard, topicMatcher, type TopicMatcher } from "../common/topics.js";
import { decodeEnvelope, encodeEnvelope } from "./codec.js";
import { fail, type Link } from "./connection.js";
import type { Keys } from "./keys.js";

interface Sub {
  sink: SubscriptionSink;
  match: TopicMatcher | null;
}

/** One Redis channel or pattern and the subscriptions sharing it. */
interface Entry {
  /** Channel/pattern prefix to strip to get the topic. */
  base: string;
  subs: Set<Sub>;
  live: Promise<unknown>;
}

/** A listener of a Redis channel's raw messages (not PubSub envelopes): the queue's wake-ups. */
export interface RawListener {
  onMessage(message: Buffer): void;
  /** The subscriber connection was lost: the listener is gone and must listen again. */
  onEnd(): void;
}

/** The shared subscriber connection of one backend instance. */
export class SubscriberHub {
  private readonly channels = new Map<string, Entry>();
  private readonly patterns = new Map<string, Entry>();
  private readonly raw = new Map<string, { listeners: Set<RawListener>; live: Promise<unknown> }>();

  constructor(private readonly link: Link) {
    const r = link.redis;
    r.on("messageBuffer", (channel: Buffer, message: Buffer) => {
      const name = channel.toString();
      const raw = this.raw.get(name);
      if (raw !== undefined) for (const l of raw.listeners) l.onMessage(message);
      else this.deliver(this.channels.get(name), channel, message);
    });
    r.on("pmessageBuffer", (pattern: Buffer, channel: Buffer, message: Buffer) => this.deliver(this.patterns.get(pattern.toString()), channel, message));
    r.on("close", () => this.endAll(errors.unavailable("redis subscriber connection lost")));
  }

  private deliver(e: Entry | undefined, channel: Buffer, message: Buffer): void {
    if (!e) return;
    const env = decodeEnvelope(message);
    if (!env) return;
    const topic = channel.toString("utf8", Buffer.byteLength(e.base));
    const msg: PubSubMessage = { topic, payload: env.payload, attributes: env.attributes, messageId: env.messageId, publishTimeMs: env.publishTimeMs };
    for (const s of e.subs) if (s.match === null || s.match(topic)) s.sink.onMessage(msg);
  }

  async subscribe(base: string, name: string, pattern: boolean, sub: Sub): Promise<void> {
    const map = pattern ? this.patterns : this.channels;
    let e = map.get(name);
    if (!e) {
      const r: Redis = await this.link.client();
      e = map.get(name);
      if (!e) {
        e = { base, subs: new Set(), live: pattern ? r.psubscribe(name) : r.subscribe(name) };
        map.set(name, e);
        const entry = e;
        e.live.catch(() => {
          if (map.get(name) === entry) map.delete(name);
        });
      }
    }
    e.subs.add(sub);
    try {
      await e.live;
    } catch (err) {
      e.subs.delete(sub);
      fail(err);
    }
  }

  async unsubscribe(name: string, pattern: boolean, sub: Sub): Promise<void> {
    const map = pattern ? this.patterns : this.channels;
    const e = map.get(name);
    if (!e || !e.subs.delete(sub) || e.subs.size > 0) return;
    map.delete(name);
    if (!this.link.ready) return;
    await (pattern ? this.link.redis.punsubscribe(name) : this.link.redis.unsubscribe(name)).catch(() => {});
  }

  /** Subscribes `listener` to the raw messages of channel `name` (one SUBSCRIBE per channel, shared). */
  async listen(name: string, listener: RawListener): Promise<void> {
    let e = this.raw.get(name);
    if (!e) {
      const r: Redis = await this.link.client();
      e = this.raw.get(name);
      if (!e) {
        const entry = { listeners: new Set<RawListener>(), live: r.subscribe(name) as Promise<unknown> };
        this.raw.set(name, entry);
        entry.live.catch(() => {
          if (this.raw.get(name) === entry) this.raw.delete(name);
        });
        e = entry;
      }
    }
    e.listeners.add(listener);
    try {
      await e.live;
    } catch (err) {
      e.listeners.delete(listener);
      fail(err);
    }
  }

  async unlisten(name: string, listener: RawListener): Promise<void> {
    const e = this.raw.get(name);
    if (!e || !e.listeners.delete(listener) || e.listeners.size > 0) return;
    this.raw.delete(name);
    if (this.link.ready) await this.link.redis.unsubscribe(name).catch(() => {});
  }

  private endAll(reason: Error): void {
    const listeners: RawListener[] = [];
    for (const e of this.raw.values()) listeners.push(...e.listeners);
    this.raw.clear();
    for (const l of listeners) l.onEnd();
    const subs: Sub[] = [];
    for (const map of [this.channels, this.patterns]) {
      for (const e of map.values()) subs.push(...e.subs);
      map.clear();
    }
    for (const s of subs) s.sink.onError(reason);
  }

  close(): Promise<void> {
    this.endAll(errors.unavailable("redis backend closed"));
    return this.link.close();
  }
}

/** Escapes glob metacharacters in a literal token. */
function globToken(t: string): string {
  return t.replace(/[*?[\]\\]/g, "\\$&");
}

export class RedisPubSub implements PubSubStore {
  private seq = 0;
  /** This namespace's live subscriptions, ended when the namespace closes. */
  private readonly live = new Set<{ name: string; wild: boolean; sub: Sub }>();
  private readonly idPrefix = randomBytes(6).toString("hex");

  constructor(
    private readonly link: Link,
    private readonly hub: () => SubscriberHub,
    private readonly keys: Keys,
    private readonly clock: Clock,
  ) {}

  async publish(topic: string, payload: Bytes, attributes: Attributes): Promise<string> {
    const r = await this.link.client();
    const id = `${this.idPrefix}-${++this.seq}`;
    await r.publish(this.keys.channel(topic), encodeEnvelope(payload, attributes, id, this.clock.now())).catch(fail);
    return id;
  }

  /** pubsub_idempotent: PUBLISH from the script that checks and writes the record. */
  async publishOnce(topic: string, payload: Bytes, attributes: Attributes, token: IdempotencyToken): Promise<Once<string>> {
    const r = (await this.link.client()) as unknown as ScriptCommands;
    const id = `${this.idPrefix}-${++this.seq}`;
    const env = encodeEnvelope(payload, attributes, id, this.clock.now());
    const reply = await r.psPublishOnce(this.keys.channel(topic), this.keys.once(token.key), env, id, token.requestHash, token.windowMs).catch(fail);
    return onceOf(reply, String);
  }

  async subscribe(pattern: string, sink: SubscriptionSink): Promise<Subscription> {
    const wild = isWildcard(pattern);
    const base = this.keys.psBase;
    const name = wild ? base.replace(/[*?[\]\\]/g, "\\$&") + pattern.split(".").map((t) => (t === "*" || t === ">" ? "*" : globToken(t))).join(".") : base + pattern;
    const sub: Sub = { sink, match: wild ? topicMatcher(pattern) : null };
    const hub = this.hub();
    await hub.subscribe(base, name, wild, sub);
    const handle = { name, wild, sub };
    this.live.add(handle);
    return {
      close: () => {
        this.live.delete(handle);
        return hub.unsubscribe(name, wild, sub);
      },
    };
  }

  async closeAll(): Promise<void> {
    if (this.live.size === 0) return;
    const all = [...this.live];
    this.live.clear();
    const hub = this.hub();
    for (const h of all) {
      await hub.unsubscribe(h.name, h.wild, h.sub);
      h.sub.sink.onError(errors.unavailable("namespace closed"));
    }
  }
}
