/**
 * Creates JetStream streams and durable consumers on first use, once per
 * process (the promise is cached; a failure is forgotten so the next call
 * retries). A name that exists with another configuration (e.g. the
 * namespace's limits changed) is updated in place.
 */
import { AckPolicy, DeliverPolicy, DiscardPolicy, JetStreamApiCodes, RetentionPolicy, StorageType, type ConsumerConfig, type StreamConfig } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import type { Conn } from "./connection.js";
import { apiCode, toDriverError } from "./connection.js";

/** Error codes meaning "this name exists with a different configuration". */
const STREAM_EXISTS_DIFFERENT = 10058;

export interface StreamSpec {
  name: string;
  subject: string;
  workQueue: boolean;
  /** 0: unlimited. */
  maxMsgs: number;
  /**
   * JetStream's duplicate_window: how long a Nats-Msg-Id is remembered (the
   * *_idempotent interfaces: the namespace's idempotency window, at most the
   * stream's max age, which JetStream requires). Undefined: the server default.
   */
  dupWindowMs?: number;
  /** 0: unlimited. */
  maxAgeMs: number;
}

export interface ConsumerSpec {
  durable: string;
  ackWaitMs: number;
  maxAckPending: number;
}

export class Provisioner {
  private readonly done = new Map<string, Promise<void>>();

  /** Forget what was created (e.g. after a "no such stream"), so the next ensure re-creates it. */
  forget(stream: string): void {
    for (const k of this.done.keys()) if (k.startsWith(`${stream}\0`)) this.done.delete(k);
  }

  ensureStream(c: Conn, s: StreamSpec): Promise<void> {
    // Limits are part of the key: a namespace re-applied with other limits updates the stream.
    const key = `${s.name}\0${s.maxMsgs}\0${s.maxAgeMs}\0${s.dupWindowMs ?? ""}`;
    let p = this.done.get(key);
    if (!p) {
      p = this.createStream(c, s);
      this.done.set(key, p);
      p.catch(() => this.done.delete(key));
    }
    return p;
  }

  ensureConsumer(c: Conn, s: StreamSpec, k: ConsumerSpec): Promise<void> {
    const key = `${s.name}\0${k.durable}\0${k.ackWaitMs}`;
    let p = this.done.get(key);
    if (!p) {
      p = this.ensureStream(c, s).then(() => this.createConsumer(c, s.name, k));
      this.done.set(key, p);
      p.catch(() => this.done.delete(key));
    }
    return p;
  }

  private async createStream(c: Conn, s: StreamSpec): Promise<void> {
    const cfg: Partial<StreamConfig> & { name: string } = {
      name: s.name,
      subjects: [s.subject],
      retention: s.workQueue ? RetentionPolicy.Workqueue : RetentionPolicy.Limits,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      max_msgs: s.maxMsgs > 0 ? s.maxMsgs : -1,
      max_age: s.maxAgeMs > 0 ? nanos(s.maxAgeMs) : 0,
      num_replicas: 1,
    };
    if (s.dupWindowMs !== undefined) cfg.duplicate_window = nanos(s.maxAgeMs > 0 ? Math.min(s.dupWindowMs, s.maxAgeMs) : s.dupWindowMs);
    try {
      await c.jsm.streams.add(cfg);
    } catch (e) {
      if (apiCode(e) !== STREAM_EXISTS_DIFFERENT) throw toDriverError(e);
      const { name, ...rest } = cfg;
      await c.jsm.streams.update(name, rest).catch((e2) => {
        throw toDriverError(e2);
      });
    }
  }

  private async createConsumer(c: Conn, stream: string, k: ConsumerSpec): Promise<void> {
    const cfg: Partial<ConsumerConfig> = {
      durable_name: k.durable,
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(k.ackWaitMs),
      deliver_policy: DeliverPolicy.All,
      // Dead-lettering is Prism's (at dequeue), so the server never silently stops delivering.
      max_deliver: -1,
      max_ack_pending: k.maxAckPending,
    };
    try {
      await c.jsm.consumers.add(stream, cfg as ConsumerConfig);
    } catch (e) {
      if (apiCode(e) === JetStreamApiCodes.StreamNotFound) throw toDriverError(e);
      // Exists with another ack_wait (limits changed): update what may change.
      await c.jsm.consumers
        .update(stream, k.durable, { ack_wait: cfg.ack_wait, max_ack_pending: k.maxAckPending, max_deliver: -1 })
        .catch(() => {
          throw toDriverError(e);
        });
    }
  }
}
