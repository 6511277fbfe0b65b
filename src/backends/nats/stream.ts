/**
 * Stream on JetStream: one stream per (namespace, stream) with the
 * namespace's retention (max_msgs / max_age); the offset is the JetStream
 * sequence (first is 1).
 *
 * read(): a short-lived ephemeral consumer starting at the offset (ack none,
 * memory storage, auto-removed when idle) and one no_wait pull, so a read
 * never blocks for records that do not exist.
 *
 * Consumer groups: one durable pull consumer per group (explicit ack,
 * ack_wait = the namespace's stream claim timeout, from the first record), so
 * redelivery after the claim timeout, delivery counts and "each record to one
 * consumer of the group" are the server's. AckGroup acks by stream sequence:
 * records this process delivered are acked through their ack subject and
 * counted; any other offset is acked through a reconstructed ack subject
 * (JetStream keys acks by stream sequence), which takes effect if the record
 * is pending in the group (delivered by another Prism process) but is not
 * counted, since JetStream cannot say whether it was pending.
 */
import { AckPolicy, DeliverPolicy, JetStreamApiCodes, type ConsumerConfig } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import type { Attributes, Bytes, IdempotencyToken, NamespaceLimits, Once, StreamRecord, StreamStore } from "../driver.js";
import { msgIdOf, storedHash, withHash } from "./once.js";
import { attributesOf, messageHeaders } from "./codec.js";
import { traceHeaders } from "../../observability/propagate.js";
import { apiCode, fail, isNoStream, REQUEST_TIMEOUT_MS, toDriverError, type Conn, type Link } from "./connection.js";
import type { Names } from "./names.js";
import type { Provisioner, StreamSpec } from "./provision.js";
import { ackSubjectFor, ConsumerMissing, pull, pullUpTo, type Delivered } from "./pull.js";

const ACK = "+ACK";
/** Delivered-but-unacked records remembered per group (oldest forgotten first; forgotten ones are still acked by reconstructed subject). */
const MAX_TRACKED_PER_GROUP = 100_000;
/** Idle ephemeral read consumers are removed by the server after this long (they are also deleted after each read). */
const READ_CONSUMER_IDLE_MS = 30_000;

/** Per process: delivered records per group, stream sequence → ack subject. */
export class GroupTracker {
  private readonly groups = new Map<string, Map<number, string>>();

  of(stream: string, durable: string): Map<number, string> {
    const key = `${stream}\0${durable}`;
    let m = this.groups.get(key);
    if (!m) this.groups.set(key, (m = new Map()));
    return m;
  }

  track(m: Map<number, string>, seq: number, reply: string): void {
    m.delete(seq); // re-insert: newest last
    m.set(seq, reply);
    if (m.size > MAX_TRACKED_PER_GROUP) m.delete(m.keys().next().value!);
  }
}

function record(d: Delivered, group: boolean): StreamRecord {
  const r: StreamRecord = { offset: d.seq, payload: d.msg.data, attributes: attributesOf(d.msg.headers), timestampMs: d.timestampMs };
  if (group) r.deliveryCount = d.deliveries;
  return r;
}

export class NatsStream implements StreamStore {
  constructor(
    private readonly link: Link,
    private readonly names: Names,
    private readonly limits: NamespaceLimits,
    private readonly prov: Provisioner,
    private readonly groups: GroupTracker,
  ) {}

  private spec(stream: string): StreamSpec {
    const n = this.names.stream(stream);
    return {
      name: n.stream,
      subject: n.subject,
      workQueue: false,
      maxMsgs: this.limits.streamMaxCount,
      maxAgeMs: this.limits.streamMaxAgeSeconds * 1000,
      dupWindowMs: (this.limits.idempotencyWindowSeconds ?? 86400) * 1000,
    };
  }

  async append(stream: string, payload: Bytes, attributes: Attributes): Promise<number> {
    const c = await this.link.get();
    const s = this.spec(stream);
    await this.prov.ensureStream(c, s);
    const opts = { headers: messageHeaders(undefined, undefined, attributes, traceHeaders()), expect: { streamName: s.name } };
    try {
      return (await c.js.publish(s.subject, payload, opts)).seq;
    } catch (e) {
      if (!isNoStream(e)) fail(e);
      // No stream answered (deleted behind our back): create it again, once.
      this.prov.forget(s.name);
      await this.prov.ensureStream(c, s);
      return (await c.js.publish(s.subject, payload, opts).catch(fail)).seq;
    }
  }

  /** stream_idempotent: the key as Nats-Msg-Id (once.ts); a duplicate answers the first record's offset. */
  async appendOnce(stream: string, payload: Bytes, attributes: Attributes, token: IdempotencyToken): Promise<Once<number>> {
    const c = await this.link.get();
    const s = this.spec(stream);
    await this.prov.ensureStream(c, s);
    const opts = { headers: withHash(messageHeaders(undefined, undefined, attributes, traceHeaders()), token), msgID: msgIdOf(token), expect: { streamName: s.name } };
    let ack;
    try {
      ack = await c.js.publish(s.subject, payload, opts);
    } catch (e) {
      if (!isNoStream(e)) fail(e);
      this.prov.forget(s.name);
      await this.prov.ensureStream(c, s);
      ack = await c.js.publish(s.subject, payload, opts).catch(fail);
    }
    if (!ack.duplicate) return { result: ack.seq };
    return { result: ack.seq, replayedHash: await storedHash(c, s.name, ack.seq, token) };
  }

  async read(stream: string, fromOffset: number, limit: number): Promise<StreamRecord[]> {
    const c = await this.link.get();
    const name = this.names.stream(stream).stream;
    const cfg: Partial<ConsumerConfig> = {
      ack_policy: AckPolicy.None,
      deliver_policy: fromOffset > 1 ? DeliverPolicy.StartSequence : DeliverPolicy.All,
      mem_storage: true,
      num_replicas: 1,
      inactive_threshold: nanos(READ_CONSUMER_IDLE_MS),
    };
    if (fromOffset > 1) cfg.opt_start_seq = fromOffset;
    let consumer: string;
    try {
      consumer = (await c.jsm.consumers.add(name, cfg as ConsumerConfig)).name;
    } catch (e) {
      if (apiCode(e) === JetStreamApiCodes.StreamNotFound) return [];
      throw toDriverError(e);
    }
    try {
      const got = await pull(c.nc, name, consumer, limit, 0);
      return got.map((d) => record(d, false));
    } catch (e) {
      if (e instanceof ConsumerMissing) return [];
      throw toDriverError(e);
    } finally {
      c.jsm.consumers.delete(name, consumer).catch(() => {});
    }
  }

  private async groupConsumer(c: Conn, stream: string, group: string): Promise<{ s: StreamSpec; durable: string }> {
    const s = this.spec(stream);
    const durable = this.names.group(group);
    await this.prov.ensureConsumer(c, s, { durable, ackWaitMs: this.limits.streamClaimTimeoutSeconds * 1000, maxAckPending: -1 });
    return { s, durable };
  }

  async readGroup(stream: string, group: string, _consumer: string, count: number, blockMs: number, signal?: AbortSignal): Promise<StreamRecord[]> {
    const c = await this.link.get();
    let { s, durable } = await this.groupConsumer(c, stream, group);
    let got: Delivered[];
    try {
      got = await pullUpTo(c.nc, s.name, durable, count, blockMs, signal);
    } catch (e) {
      if (!(e instanceof ConsumerMissing)) throw toDriverError(e);
      this.prov.forget(s.name);
      ({ s, durable } = await this.groupConsumer(c, stream, group));
      got = await pullUpTo(c.nc, s.name, durable, count, blockMs, signal).catch(fail);
    }
    const tracked = this.groups.of(s.name, durable);
    for (const d of got) this.groups.track(tracked, d.seq, d.reply);
    return got.map((d) => record(d, true));
  }

  async ackGroup(stream: string, group: string, offsets: number[]): Promise<number> {
    if (!offsets.length) return 0;
    const c = await this.link.get();
    const name = this.names.stream(stream).stream;
    const durable = this.names.group(group);
    const tracked = this.groups.of(name, durable);
    const unique = [...new Set(offsets)].filter((o) => Number.isSafeInteger(o) && o > 0);
    const mine = unique.filter((o) => tracked.has(o));
    const others = unique.filter((o) => !tracked.has(o));
    // Acks are requests: the server answers once it processed the ack, so a later read sees it.
    const results = await Promise.allSettled([
      ...mine.map((o) => c.nc.request(tracked.get(o)!, ACK, { timeout: REQUEST_TIMEOUT_MS })),
      ...others.map((o) => c.nc.request(ackSubjectFor(name, durable, o), ACK, { timeout: REQUEST_TIMEOUT_MS })),
    ]);
    let acked = 0;
    for (const [i, o] of mine.entries()) {
      if (results[i]!.status === "fulfilled") {
        tracked.delete(o);
        acked++;
      }
    }
    const failed = results.find((r, i) => r.status === "rejected" && i < mine.length) as PromiseRejectedResult | undefined;
    if (failed) throw toDriverError(failed.reason);
    return acked;
  }
}
