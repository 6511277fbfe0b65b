/**
 * Stream on Kafka: one single-partition topic per (namespace, stream), so a
 * stream has one offset sequence; Prism offset = Kafka offset + 1 (the first
 * record is 1). Append waits for acks from all in-sync replicas.
 *
 * Consumer groups map onto Kafka consumer groups used as offset storage
 * (manual commits; Prism never joins the group): the committed offset is the
 * lowest record not yet acked, so a restart resumes there (records acked
 * above it are delivered again: at-least-once). Which records are pending,
 * to whom and since when lives in this Prism process: a group is consumed
 * through one Prism process at a time (two processes on one group would each
 * deliver the records). A pending record not acked within the namespace's
 * claim timeout is delivered again with deliveryCount + 1.
 *
 * Retention: stream_max_age_seconds becomes the topic's retention.ms when
 * Prism creates it; Kafka has no count-based retention, so
 * stream_max_count is not applied (Prism logs this once per namespace).
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Clock } from "../../core/clock.js";
import type { Attributes, Bytes, NamespaceLimits, StreamRecord, StreamStore } from "../driver.js";
import { bounds, fetchAt } from "./fetch.js";
import type { FetchedMessage, KafkaLink } from "./link.js";
import { groupId, streamTopic } from "./names.js";
import { asBuffer, fromHeaders, toHeaders, valueOf } from "./records.js";

/** Longest single broker-side wait; a blocking read re-checks its signal this often. */
const WAIT_SLICE_MS = 1000;

interface Pending {
  record: StreamRecord;
  deliveredAt: number;
}

/** One Prism consumer group on one stream, in this process. */
interface Group {
  readonly id: string;
  readonly topic: string;
  /** Next Kafka offset never delivered to this group. */
  position: number;
  /** Highest offset committed to Kafka. */
  committed: number;
  readonly pending: Map<number, Pending>;
  /** Serialises deliveries of this group. */
  lock: Promise<unknown>;
}

function toRecord(m: FetchedMessage): StreamRecord {
  return { offset: Number(m.offset) + 1, payload: valueOf(m.value), attributes: fromHeaders(m.headers), timestampMs: Number(m.timestamp) };
}

export class KafkaStream implements StreamStore {
  private readonly groups = new Map<string, Promise<Group>>();
  private readonly configEntries: { name: string; value: string }[];

  constructor(
    private readonly link: KafkaLink,
    private readonly prefix: string,
    private readonly ns: string,
    private readonly limits: NamespaceLimits,
    private readonly clock: Clock,
    private readonly replicationFactor: number,
  ) {
    this.configEntries = limits.streamMaxAgeSeconds ? [{ name: "retention.ms", value: String(limits.streamMaxAgeSeconds * 1000) }] : [];
  }

  async append(stream: string, payload: Bytes, attributes: Attributes): Promise<number> {
    const topic = streamTopic(this.prefix, this.ns, stream);
    await this.link.ready();
    await this.link.ensureTopic(topic, this.replicationFactor, this.configEntries);
    const [meta] = await this.link.producer
      .send({ topic, acks: -1, messages: [{ value: asBuffer(payload), headers: toHeaders(attributes), timestamp: String(this.clock.now()), partition: 0 }] })
      .catch((e) => {
        throw this.link.noteFailure(e);
      });
    return Number(meta!.baseOffset ?? meta!.offset) + 1;
  }

  async read(stream: string, fromOffset: number, limit: number): Promise<StreamRecord[]> {
    const topic = streamTopic(this.prefix, this.ns, stream);
    await this.link.ready();
    if (!(await this.link.topicExists(topic))) return [];
    let offset = Math.max(0, fromOffset - 1);
    const out: StreamRecord[] = [];
    while (out.length < limit) {
      const f = await fetchAt(this.link, topic, offset, 0);
      if (f.outOfRange) {
        const { low } = await bounds(this.link, topic);
        if (offset >= low) break; // past the end
        offset = low; // retention removed the start: the oldest retained records
        continue;
      }
      for (const m of f.messages) {
        if (out.length >= limit) break;
        out.push(toRecord(m));
      }
      if (!f.messages.length) break;
      offset = Number(f.messages[f.messages.length - 1]!.offset) + 1;
      if (f.highWatermark >= 0 && offset >= f.highWatermark) break;
    }
    return out;
  }

  private group(stream: string, group: string): Promise<Group> {
    const topic = streamTopic(this.prefix, this.ns, stream);
    const key = `${topic}\u0000${group}`;
    let g = this.groups.get(key);
    if (!g) {
      g = this.loadGroup(topic, groupId(this.prefix, this.ns, stream, group));
      this.groups.set(key, g);
      g.catch(() => this.groups.delete(key));
    }
    return g;
  }

  /** A group starts at its committed offset, or at the oldest retained record. */
  private async loadGroup(topic: string, id: string): Promise<Group> {
    await this.link.ensureTopic(topic, this.replicationFactor, this.configEntries);
    const committed = await this.link.admin.fetchOffsets({ groupId: id, topics: [topic] }).catch((e) => {
      throw this.link.noteFailure(e);
    });
    const c = Number(committed[0]?.partitions.find((p) => p.partition === 0)?.offset ?? -1);
    const start = c >= 0 ? c : (await bounds(this.link, topic)).low;
    return { id, topic, position: start, committed: start, pending: new Map(), lock: Promise.resolve() };
  }

  async readGroup(stream: string, group: string, _consumer: string, count: number, blockMs: number, signal?: AbortSignal): Promise<StreamRecord[]> {
    await this.link.ready();
    const g = await this.group(stream, group);
    const deadline = Date.now() + blockMs;
    for (;;) {
      const got = await this.locked(g, () => this.take(g, count));
      const left = deadline - Date.now();
      if (got.length || left <= 0 || signal?.aborted) return got;
      // Wait outside the lock (a broker-side long poll), so other consumers of the group are not held up.
      const t0 = Date.now();
      const f = await fetchAt(this.link, g.topic, g.position, Math.min(left, WAIT_SLICE_MS));
      // A fetch that answers at once with nothing (out of range, no leader yet) must not spin.
      if (!f.messages.length && Date.now() - t0 < 50) await sleep(Math.min(100, left));
    }
  }

  private locked<T>(g: Group, fn: () => Promise<T>): Promise<T> {
    const run = g.lock.then(fn, fn);
    g.lock = run.catch(() => {});
    return run;
  }

  /** Expired pending records first (deliveryCount + 1), then new ones from the group's position. */
  private async take(g: Group, count: number): Promise<StreamRecord[]> {
    const now = this.clock.now();
    const claimMs = this.limits.streamClaimTimeoutSeconds * 1000;
    const out: StreamRecord[] = [];
    for (const p of g.pending.values()) {
      if (out.length >= count) return out;
      if (now - p.deliveredAt < claimMs) continue;
      p.deliveredAt = now;
      p.record.deliveryCount = (p.record.deliveryCount ?? 1) + 1;
      out.push({ ...p.record });
    }
    while (out.length < count) {
      const f = await fetchAt(this.link, g.topic, g.position, 0);
      if (f.outOfRange) {
        const { low } = await bounds(this.link, g.topic);
        if (g.position >= low) break;
        g.position = low;
        continue;
      }
      if (!f.messages.length) break;
      for (const m of f.messages) {
        if (out.length >= count) break;
        const rec = toRecord(m);
        rec.deliveryCount = 1;
        g.pending.set(rec.offset, { record: rec, deliveredAt: now });
        g.position = Number(m.offset) + 1;
        out.push({ ...rec });
      }
    }
    return out;
  }

  async ackGroup(stream: string, group: string, offsets: number[]): Promise<number> {
    await this.link.ready();
    const g = await this.group(stream, group);
    let acked = 0;
    for (const o of offsets) if (g.pending.delete(o)) acked++;
    if (acked) await this.locked(g, () => this.commit(g));
    return acked;
  }

  /** Commits the lowest unacked Kafka offset (everything below it is done). */
  private async commit(g: Group): Promise<void> {
    let low = g.position;
    for (const o of g.pending.keys()) low = Math.min(low, o - 1);
    if (low <= g.committed) return;
    await this.link.admin
      .setOffsets({ groupId: g.id, topic: g.topic, partitions: [{ partition: 0, offset: String(low) }] })
      .then(() => {
        g.committed = low;
      })
      .catch(() => {
        // The acks stand in this process; the commit is retried with the next ack.
      });
  }
}
