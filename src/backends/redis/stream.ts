/**
 * Stream on Redis Streams. Offsets are the entry ids `${offset}-0`, assigned
 * by a per-stream counter inside the append script (first offset 1), so read
 * and replay are one XRANGE. Count retention is exact MAXLEN on append; age
 * retention trims on append and filters on read (records carry their time).
 * Consumer groups are Redis consumer groups created at offset 0 on first use;
 * a pending record idle longer than the claim timeout is redelivered with
 * XAUTOCLAIM (the claim timeout runs on Redis's clock), XPENDING gives its
 * delivery count. Blocking group reads poll: no connection is ever blocked.
 */
import type { Clock } from "../../core/clock.js";
import type { Attributes, Bytes, IdempotencyToken, NamespaceLimits, Once, StreamRecord, StreamStore } from "../driver.js";
import { onceOf } from "./once.js";
import { asBuffer, decodeAttrs, encodeAttrs } from "./codec.js";
import { fail, type Link } from "./connection.js";
import type { Keys } from "./keys.js";
import type { ScriptCommands } from "./scripts.js";
import { poll } from "./wait.js";

type Scripted = ScriptCommands & import("ioredis").Redis;

function offsetOf(id: Buffer): number {
  return Number(id.toString("latin1", 0, id.indexOf(45 /* - */)));
}

/** fields: [p, payload, a, attributes, t, time] as written by the append script. */
function recordOf(id: Buffer, f: Buffer[]): StreamRecord {
  return { offset: offsetOf(id), payload: f[1]!, attributes: decodeAttrs(f[3]), timestampMs: Number(f[5]!.toString()) };
}

export class RedisStream implements StreamStore {
  constructor(
    private readonly link: Link,
    private readonly keys: Keys,
    private readonly limits: NamespaceLimits,
    private readonly clock: Clock,
  ) {}

  private async r(): Promise<Scripted> {
    return (await this.link.client()) as Scripted;
  }

  private cutoff(): number {
    const age = this.limits.streamMaxAgeSeconds;
    return age > 0 ? this.clock.now() - age * 1000 : 0;
  }

  async append(stream: string, payload: Bytes, attributes: Attributes): Promise<number> {
    const r = await this.r();
    const k = this.keys;
    return r
      .sAppend(k.log(stream), k.seq(stream), asBuffer(payload), encodeAttrs(attributes), this.clock.now(), this.limits.streamMaxCount, this.cutoff())
      .catch(fail);
  }

  /** stream_idempotent: the record and its idempotency record in one script. */
  async appendOnce(stream: string, payload: Bytes, attributes: Attributes, token: IdempotencyToken): Promise<Once<number>> {
    const r = await this.r();
    const k = this.keys;
    const reply = await r
      .sAppendOnce(k.log(stream), k.seq(stream), k.once(token.key), asBuffer(payload), encodeAttrs(attributes), this.clock.now(), this.limits.streamMaxCount, this.cutoff(), token.requestHash, token.windowMs)
      .catch(fail);
    return onceOf(reply, Number);
  }

  async read(stream: string, fromOffset: number, limit: number): Promise<StreamRecord[]> {
    const r = await this.r();
    const rows = (await r.xrangeBuffer(this.keys.log(stream), `${Math.max(1, fromOffset)}-0`, "+", "COUNT", limit).catch(fail)) as unknown as [Buffer, Buffer[]][];
    const cutoff = this.cutoff();
    const out: StreamRecord[] = [];
    for (const [id, f] of rows) {
      const rec = recordOf(id, f);
      if (rec.timestampMs >= cutoff) out.push(rec);
    }
    return out;
  }

  readGroup(stream: string, group: string, consumer: string, count: number, blockMs: number, signal?: AbortSignal): Promise<StreamRecord[]> {
    return poll(() => this.tryReadGroup(stream, group, consumer, count), blockMs, signal);
  }

  private async tryReadGroup(stream: string, group: string, consumer: string, count: number): Promise<StreamRecord[]> {
    const r = await this.r();
    const out = await r.sReadGroupBuffer(this.keys.log(stream), group, consumer, count, this.limits.streamClaimTimeoutSeconds * 1000).catch(fail);
    const recs: StreamRecord[] = [];
    for (let i = 0; i < out.length; i += 3) {
      const rec = recordOf(out[i] as Buffer, out[i + 1] as Buffer[]);
      rec.deliveryCount = out[i + 2] as number;
      recs.push(rec);
    }
    return recs;
  }

  async ackGroup(stream: string, group: string, offsets: number[]): Promise<number> {
    if (offsets.length === 0) return 0;
    const r = await this.r();
    return r.xack(this.keys.log(stream), group, ...offsets.map((o) => `${o}-0`)).catch(fail);
  }
}
