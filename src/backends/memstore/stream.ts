/**
 * In-memory Stream for one namespace: per stream an append-only array with
 * contiguous offsets (first is 1), so the record at an offset is one index
 * away. Retention (max count on append, max age on append and read) trims
 * from the head. Consumer groups keep a cursor (last delivered offset) and a
 * pending map in delivery order, so expired claims are found at its front.
 */
import type { Attributes, Bytes, StreamRecord, StreamStore } from "../driver.js";
import { park, wakeAll, type NsContext, type Waiter } from "./wait.js";

interface Rec {
  readonly offset: number;
  readonly payload: Uint8Array;
  readonly attributes: Attributes;
  readonly timestampMs: number;
}

interface Pending {
  consumer: string;
  deliveredAt: number;
  deliveryCount: number;
}

interface Group {
  /** Last offset handed out as new. */
  cursor: number;
  /** offset → claim, in (re)delivery order. */
  readonly pending: Map<number, Pending>;
}

class StreamState {
  recs: Rec[] = [];
  /** Index of the oldest retained record in `recs`. */
  head = 0;
  nextOffset = 1;
  readonly groups = new Map<string, Group>();
  readonly waiters = new Set<Waiter>();

  get firstOffset(): number {
    return this.head < this.recs.length ? this.recs[this.head]!.offset : this.nextOffset;
  }

  at(offset: number): Rec | undefined {
    const i = this.head + (offset - this.firstOffset);
    return i >= this.head && i < this.recs.length ? this.recs[i] : undefined;
  }
}

function copyOut(r: Rec, deliveryCount?: number): StreamRecord {
  const out: StreamRecord = { offset: r.offset, payload: Buffer.from(r.payload), attributes: { ...r.attributes }, timestampMs: r.timestampMs };
  if (deliveryCount !== undefined) out.deliveryCount = deliveryCount;
  return out;
}

export class MemStream implements StreamStore {
  private readonly streams = new Map<string, StreamState>();

  constructor(private readonly ns: NsContext) {}

  async append(stream: string, payload: Bytes, attributes: Attributes): Promise<number> {
    const s = this.state(stream);
    const now = this.ns.clock.now();
    const offset = s.nextOffset++;
    s.recs.push({ offset, payload: new Uint8Array(payload), attributes: { ...attributes }, timestampMs: now });
    this.retain(s, now);
    wakeAll(s.waiters);
    return offset;
  }

  async read(stream: string, fromOffset: number, limit: number): Promise<StreamRecord[]> {
    const s = this.streams.get(stream);
    if (!s) return [];
    this.retain(s, this.ns.clock.now());
    const first = s.firstOffset;
    const start = s.head + (Math.max(fromOffset, first) - first);
    const out: StreamRecord[] = [];
    for (let i = start; i < s.recs.length && out.length < limit; i++) out.push(copyOut(s.recs[i]!));
    return out;
  }

  async readGroup(stream: string, group: string, consumer: string, count: number, blockMs: number, signal?: AbortSignal): Promise<StreamRecord[]> {
    const s = this.state(stream);
    let out = this.claim(s, group, consumer, count);
    if (out.length > 0 || blockMs <= 0 || signal?.aborted) return out;
    const epoch = this.ns.epoch;
    const deadline = performance.now() + blockMs;
    for (;;) {
      const remaining = deadline - performance.now();
      if (remaining <= 0) break;
      await park(s.waiters, Math.min(remaining, this.untilClaimable(s, group)), signal, this.ns.clock);
      if (signal?.aborted || this.ns.epoch !== epoch) break;
      out = this.claim(s, group, consumer, count);
      if (out.length > 0) break;
    }
    return out;
  }

  async ackGroup(stream: string, group: string, offsets: number[]): Promise<number> {
    const g = this.streams.get(stream)?.groups.get(group);
    if (!g) return 0;
    let n = 0;
    for (const o of offsets) if (g.pending.delete(o)) n++;
    return n;
  }

  /** Retained record count; tests and introspection. */
  length(stream: string): number {
    const s = this.streams.get(stream);
    return s ? s.recs.length - s.head : 0;
  }

  wakeAll(): void {
    for (const s of this.streams.values()) wakeAll(s.waiters);
  }

  clear(): void {
    this.wakeAll();
    this.streams.clear();
  }

  private state(stream: string): StreamState {
    let s = this.streams.get(stream);
    if (!s) this.streams.set(stream, (s = new StreamState()));
    return s;
  }

  private retain(s: StreamState, now: number): void {
    const { streamMaxCount, streamMaxAgeSeconds } = this.ns.limits;
    let head = s.head;
    if (streamMaxCount > 0 && s.recs.length - head > streamMaxCount) head = s.recs.length - streamMaxCount;
    if (streamMaxAgeSeconds > 0) {
      const cutoff = now - streamMaxAgeSeconds * 1000;
      while (head < s.recs.length && s.recs[head]!.timestampMs < cutoff) head++;
    }
    if (head === s.head) return;
    s.head = head;
    // Compact once the dead prefix dominates: amortised O(1) per record.
    if (head >= 1024 && head * 2 >= s.recs.length) {
      s.recs = s.recs.slice(head);
      s.head = 0;
    }
  }

  private group(s: StreamState, name: string): Group {
    let g = s.groups.get(name);
    if (!g) s.groups.set(name, (g = { cursor: s.firstOffset - 1, pending: new Map() }));
    return g;
  }

  /** Pending records whose claim timed out (reassigned to `consumer`), then new ones; up to `count`. */
  private claim(s: StreamState, groupName: string, consumer: string, count: number): StreamRecord[] {
    const now = this.ns.clock.now();
    this.retain(s, now);
    const g = this.group(s, groupName);
    const claimMs = this.ns.limits.streamClaimTimeoutSeconds * 1000;
    const out: StreamRecord[] = [];
    const reclaimed: [number, Pending][] = [];
    const gone: number[] = [];
    for (const [offset, p] of g.pending) {
      if (out.length >= count || p.deliveredAt + claimMs > now) break;
      const r = s.at(offset);
      if (!r) {
        gone.push(offset); // trimmed by retention: nothing left to redeliver
        continue;
      }
      p.consumer = consumer;
      p.deliveredAt = now;
      p.deliveryCount++;
      reclaimed.push([offset, p]);
      out.push(copyOut(r, p.deliveryCount));
    }
    for (const o of gone) g.pending.delete(o);
    // Move redelivered claims to the back so the map stays in delivery order.
    for (const [o, p] of reclaimed) {
      g.pending.delete(o);
      g.pending.set(o, p);
    }
    let next = Math.max(g.cursor + 1, s.firstOffset);
    for (; out.length < count && next < s.nextOffset; next++) {
      g.pending.set(next, { consumer, deliveredAt: now, deliveryCount: 1 });
      out.push(copyOut(s.at(next)!, 1));
      g.cursor = next;
    }
    return out;
  }

  /** Clock ms until the group's oldest claim times out; Infinity when none. */
  private untilClaimable(s: StreamState, groupName: string): number {
    const g = s.groups.get(groupName);
    if (!g) return Infinity;
    for (const p of g.pending.values()) return p.deliveredAt + this.ns.limits.streamClaimTimeoutSeconds * 1000 - this.ns.clock.now();
    return Infinity;
  }
}
