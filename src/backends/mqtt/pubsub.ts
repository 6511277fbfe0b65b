/**
 * PubSub on MQTT 5 (mqtt.js), QoS 1 both ways.
 *
 * - Payloads travel as the raw MQTT payload; attributes, message id and
 *   publish time travel as MQTT 5 user properties (`a:<key>` for attributes,
 *   `prism-id`, `prism-t`).
 * - One client connection per backend instance. Each distinct MQTT filter is
 *   subscribed once (refcounted across Prism subscriptions) with its own
 *   subscription identifier: the broker tags every message with the
 *   identifiers of the filters it matched, so overlapping filters
 *   (`orders/+` and `orders/#`) deliver once to each of their subscribers.
 * - MQTT `#` also matches the parent level (`orders/#` gets `orders`), so
 *   wildcard deliveries are filtered again with the exact token matcher.
 * - When the connection drops, every live subscription ends with
 *   UNAVAILABLE (the session is not resumed: messages published meanwhile
 *   are lost, and the caller should know). Publishing fails fast with
 *   UNAVAILABLE while disconnected instead of queueing offline.
 */
import { randomBytes } from "node:crypto";
import type { IPublishPacket, MqttClient } from "mqtt";
import { errors } from "../../core/errors.js";
import type { Clock } from "../../core/clock.js";
import type { Attributes, Bytes, PubSubMessage, PubSubStore, Subscription, SubscriptionSink } from "../driver.js";
import { isWildcard, topicMatcher, type TopicMatcher } from "../common/topics.js";
import { fromMqttTopic, namespaceBase, toMqttFilter, toMqttTopic } from "./topics.js";
import { putTraceHeaders } from "../../observability/propagate.js";

interface Sub {
  sink: SubscriptionSink;
  match: TopicMatcher | null;
}

interface Entry {
  filter: string;
  base: string;
  id: number;
  subs: Set<Sub>;
  live: Promise<void>;
}

/** Max MQTT subscription identifier (a variable byte integer). */
const MAX_SUB_ID = 268_435_455;

export class MqttHub {
  private readonly byFilter = new Map<string, Entry>();
  private readonly byId = new Map<number, Entry>();
  private nextId = 0;

  constructor(
    private readonly client: MqttClient,
    private readonly ensureConnected: () => void | Promise<void>,
  ) {
    client.on("message", (topic, payload, packet) => this.deliver(topic, payload, packet));
    client.on("close", () => this.endAll(errors.unavailable("mqtt connection lost")));
  }

  private deliver(mqttTopic: string, payload: Buffer, packet: IPublishPacket): void {
    const props = packet.properties;
    const ids = props?.subscriptionIdentifier;
    let msg: PubSubMessage | undefined;
    const each = (e: Entry | undefined) => {
      if (!e) return;
      const topic = fromMqttTopic(e.base, mqttTopic);
      if (topic === null) return;
      msg ??= toMessage(topic, payload, props?.userProperties);
      for (const s of e.subs) if (s.match === null || s.match(topic)) s.sink.onMessage(msg);
    };
    if (ids === undefined) for (const e of this.byFilter.values()) each(e);
    else if (typeof ids === "number") each(this.byId.get(ids));
    else for (const id of ids) each(this.byId.get(id));
  }

  async subscribe(base: string, filter: string, sub: Sub): Promise<void> {
    await this.ensureConnected();
    let e = this.byFilter.get(filter);
    if (!e) {
      this.nextId = (this.nextId % MAX_SUB_ID) + 1;
      const id = this.nextId;
      const live = new Promise<void>((resolve, reject) => {
        this.client.subscribe(filter, { qos: 1, properties: { subscriptionIdentifier: id } }, (err, granted) => {
          if (err) reject(errors.unavailable("mqtt subscribe", err));
          else if (granted?.some((g) => g.qos === 128)) reject(errors.internal(`mqtt: the broker refused the subscription to ${filter}`));
          else resolve();
        });
      });
      e = { filter, base, id, subs: new Set(), live };
      this.byFilter.set(filter, e);
      this.byId.set(id, e);
      const entry = e;
      live.catch(() => this.forget(entry));
    }
    e.subs.add(sub);
    try {
      await e.live;
    } catch (err) {
      e.subs.delete(sub);
      throw err;
    }
  }

  private forget(e: Entry): void {
    if (this.byFilter.get(e.filter) === e) this.byFilter.delete(e.filter);
    this.byId.delete(e.id);
  }

  /** Returns whether the subscription was live. */
  async unsubscribe(filter: string, sub: Sub): Promise<boolean> {
    const e = this.byFilter.get(filter);
    if (!e || !e.subs.delete(sub)) return false;
    if (e.subs.size > 0) return true;
    this.forget(e);
    if (this.client.connected) {
      await new Promise<void>((resolve) => this.client.unsubscribe(filter, () => resolve()));
    }
    return true;
  }

  endAll(reason: Error): void {
    const subs: Sub[] = [];
    for (const e of this.byFilter.values()) subs.push(...e.subs);
    this.byFilter.clear();
    this.byId.clear();
    for (const s of subs) s.sink.onError(reason);
  }
}

function toMessage(topic: string, payload: Buffer, user: Record<string, string | string[]> | undefined): PubSubMessage {
  const attributes: Attributes = {};
  let messageId = "";
  let publishTimeMs = 0;
  if (user) {
    for (const k in user) {
      const raw = user[k]!;
      const v = Array.isArray(raw) ? raw[raw.length - 1]! : raw;
      if (k.startsWith("a:")) attributes[k.slice(2)] = v;
      else if (k === "prism-id") messageId = v;
      else if (k === "prism-t") publishTimeMs = Number(v) || 0;
    }
  }
  return { topic, payload, attributes, messageId, publishTimeMs };
}

export class MqttPubSub implements PubSubStore {
  private seq = 0;
  private readonly idPrefix = randomBytes(6).toString("hex");
  private readonly base: string;
  private readonly mine = new Map<Sub, string>();

  constructor(
    private readonly client: MqttClient,
    private readonly hub: MqttHub,
    private readonly ensureConnected: () => void | Promise<void>,
    prefix: string,
    ns: string,
    private readonly clock: Clock,
  ) {
    this.base = namespaceBase(prefix, ns);
  }

  async publish(topic: string, payload: Bytes, attributes: Attributes): Promise<string> {
    await this.ensureConnected();
    const id = `${this.idPrefix}-${++this.seq}`;
    const userProperties: Record<string, string> = { "prism-id": id, "prism-t": String(this.clock.now()) };
    for (const k in attributes) userProperties[`a:${k}`] = attributes[k]!;
    putTraceHeaders(userProperties);
    const buf = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
    await new Promise<void>((resolve, reject) => {
      this.client.publish(toMqttTopic(this.base, topic), buf, { qos: 1, properties: { userProperties } }, (err) =>
        err ? reject(errors.unavailable("mqtt publish", err)) : resolve(),
      );
    });
    return id;
  }

  async subscribe(pattern: string, sink: SubscriptionSink): Promise<Subscription> {
    const filter = toMqttFilter(this.base, pattern);
    const sub: Sub = { sink, match: isWildcard(pattern) ? topicMatcher(pattern) : null };
    await this.hub.subscribe(this.base, filter, sub);
    this.mine.set(sub, filter);
    return {
      close: async () => {
        this.mine.delete(sub);
        await this.hub.unsubscribe(filter, sub);
      },
    };
  }

  async closeAll(): Promise<void> {
    const all = [...this.mine];
    this.mine.clear();
    for (const [sub, filter] of all) {
      if (await this.hub.unsubscribe(filter, sub)) sub.sink.onError(errors.unavailable("namespace closed"));
    }
  }
}
