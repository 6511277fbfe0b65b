/**
 * PubSub on core NATS: topic `t` of namespace N is subject `P.N.ps.t`, and
 * Prism's patterns are NATS wildcards already (`*` one token, `>` the rest),
 * so a subscription is one NATS subscription. At-most-once, like core NATS:
 * messages published while a subscriber is disconnected are not replayed.
 */
import { nuid, type Msg, type Subscription as NatsSub } from "@nats-io/transport-node";
import { errors } from "../../core/errors.js";
import type { Clock } from "../../core/clock.js";
import type { Attributes, Bytes, PubSubMessage, PubSubStore, Subscription, SubscriptionSink } from "../driver.js";
import { attributesOf, H_ID, H_TIME, messageHeaders } from "./codec.js";
import { traceHeaders } from "../../observability/propagate.js";
import { fail, toDriverError, type Link } from "./connection.js";
import type { Names } from "./names.js";

class Live implements Subscription {
  sub: NatsSub | undefined;
  constructor(
    readonly owner: NatsPubSub,
    readonly sink: SubscriptionSink,
    private readonly baseLen: number,
  ) {}

  onMsg(err: Error | null, msg: Msg): void {
    if (err) {
      this.owner.drop(this);
      this.sink.onError(errors.unavailable("nats subscription", err));
      return;
    }
    const h = msg.headers;
    const m: PubSubMessage = {
      topic: msg.subject.slice(this.baseLen),
      payload: msg.data,
      attributes: attributesOf(h),
      messageId: h?.get(H_ID) ?? "",
      publishTimeMs: Number(h?.get(H_TIME) ?? 0),
    };
    this.sink.onMessage(m);
  }

  /** The NATS subscription ended without close() (the connection closed for good). */
  ended(): void {
    if (!this.owner.drop(this)) return;
    this.sink.onError(errors.unavailable("nats connection closed"));
  }

  async close(): Promise<void> {
    this.owner.drop(this);
    this.sub?.unsubscribe();
  }
}

export class NatsPubSub implements PubSubStore {
  private readonly live = new Set<Live>();

  constructor(
    private readonly link: Link,
    private readonly names: Names,
    private readonly clock: Clock,
  ) {}

  async publish(topic: string, payload: Bytes, attributes: Attributes): Promise<string> {
    const c = await this.link.get();
    const id = nuid.next();
    try {
      c.nc.publish(this.names.pubsubBase + topic, payload, { headers: messageHeaders(id, this.clock.now(), attributes, traceHeaders()) });
    } catch (e) {
      fail(e);
    }
    return id;
  }

  async subscribe(pattern: string, sink: SubscriptionSink): Promise<Subscription> {
    const c = await this.link.get();
    const base = this.names.pubsubBase;
    const live = new Live(this, sink, base.length);
    try {
      live.sub = c.nc.subscribe(base + pattern, { callback: (err, msg) => live.onMsg(err, msg) });
      this.live.add(live);
      void live.sub.closed.then(() => live.ended());
      // Live server-side once the server answered a PING sent after the SUB.
      await c.nc.flush();
    } catch (e) {
      live.sub?.unsubscribe();
      this.live.delete(live);
      throw toDriverError(e);
    }
    return live;
  }

  /** true when it was live. */
  drop(live: Live): boolean {
    return this.live.delete(live);
  }

  /** Ends every subscription of the namespace (it was replaced or deleted). */
  async closeAll(): Promise<void> {
    const all = [...this.live];
    this.live.clear();
    for (const l of all) {
      l.sub?.unsubscribe();
      l.sink.onError(errors.unavailable("namespace closed"));
    }
  }
}
