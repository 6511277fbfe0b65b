/**
 * PubSub and Stream migrations: traffic is copied to `to` (best effort,
 * counted: metrics only) while `from` keeps serving; finish switches the
 * namespace to `to`. Stream offsets and consumer groups are per backend:
 * readers start over on `to` after the switch.
 */
import type { Attributes, Bytes, PubSubStore, StreamStore } from "../backends/driver.js";

/** A plain object whose methods call `o`'s (own and inherited), bound to it. */
function delegate<T extends object>(o: T): T {
  const out: Record<string, unknown> = {};
  for (let p: object | null = o; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const k of Object.getOwnPropertyNames(p)) {
      if (k === "constructor" || k in out) continue;
      const v = (o as Record<string, unknown>)[k];
      if (typeof v === "function") out[k] = (v as (...a: unknown[]) => unknown).bind(o);
    }
  }
  return out as T;
}

export class ShadowCopy {
  readonly stats = { copied: 0, copyErrors: 0 };
  /** Counts a best-effort copy. */
  private copied(p: Promise<unknown>): void {
    p.then(
      () => this.stats.copied++,
      () => this.stats.copyErrors++,
    );
  }
  pubsub(from: PubSubStore, to: PubSubStore): PubSubStore {
    const out = delegate(from);
    // Keyed: `from` runs it; a message that went out (not a replay) is copied with the same key, so `to` knows the key after the switch.
    if (from.publishOnce) {
      out.publishOnce = async (topic, payload, attributes, token) => {
        const once = await from.publishOnce!(topic, payload, attributes, token);
        if (once.replayedHash === undefined) this.copied(to.publishOnce ? to.publishOnce(topic, payload, attributes, token) : to.publish(topic, payload, attributes));
        return once;
      };
    }
    out.publish = async (topic: string, payload: Bytes, attributes: Attributes) => {
      const id = await from.publish(topic, payload, attributes);
      to.publish(topic, payload, attributes).then(
        () => this.stats.copied++,
        () => this.stats.copyErrors++,
      );
      return id;
    };
    return out;
  }
  stream(from: StreamStore, to: StreamStore): StreamStore {
    const out = delegate(from);
    if (from.appendOnce) {
      out.appendOnce = async (stream, payload, attributes, token) => {
        const once = await from.appendOnce!(stream, payload, attributes, token);
        if (once.replayedHash === undefined) this.copied(to.appendOnce ? to.appendOnce(stream, payload, attributes, token) : to.append(stream, payload, attributes));
        return once;
      };
    }
    out.append = async (stream: string, payload: Bytes, attributes: Attributes) => {
      const offset = await from.append(stream, payload, attributes);
      to.append(stream, payload, attributes).then(
        () => this.stats.copied++,
        () => this.stats.copyErrors++,
      );
      return offset;
    };
    return out;
  }
}
