/**
 * KeyValue on Redis: each key is a HASH { v, ver } with a native TTL
 * (PEXPIRE/PTTL/PERSIST). Writes are one Lua script (value, version, TTL, CAS
 * check and index entry together); reads are one HMGET.
 *
 * Scans: Redis SCAN neither orders keys nor promises a stable, duplicate-free
 * walk under concurrent writes, so each namespace keeps a sorted-set index of
 * its keys (score 0, ZRANGEBYLEX: byte order). The cursor is the last key
 * examined, so a page resumes strictly after it whatever was inserted or
 * deleted meanwhile. A key that expired leaves its index entry behind until a
 * scan meets it (and removes it); expired keys are never returned.
 */
import { errors } from "../../core/errors.js";
import type { Bytes, KeyValueStore, KvRecord, ScanItem, ScanPage, SetOptions } from "../driver.js";
import { asBuffer } from "./codec.js";
import { fail, type Link } from "./connection.js";
import { GetBatcher, MAX_BATCH, recordAt } from "./get-batch.js";
import type { Keys } from "./keys.js";
import type { ScriptCommands } from "./scripts.js";
import type { IdempotencyToken, Once } from "../driver.js";
import { onceOf } from "./once.js";

type Scripted = ScriptCommands & import("ioredis").Redis;

const LEX_MIN = "-";
const LEX_MAX = "+";
const EXCL = Buffer.from("(");
const INCL = Buffer.from("[");
const TOP = Buffer.from([0xff]);

export class RedisKeyValue implements KeyValueStore {
  private readonly gets: GetBatcher;

  constructor(
    private readonly link: Link,
    private readonly keys: Keys,
  ) {
    this.gets = new GetBatcher(link);
  }

  /** The client for anything but a single Get; Gets already batched go out first (get-batch.ts). */
  private async r(): Promise<Scripted> {
    this.gets.flush();
    return (await this.link.client()) as Scripted;
  }

  /** The hot path: joins this loop turn's batched read (get-batch.ts). */
  get(key: string): Promise<KvRecord | null> {
    return this.gets.get(this.keys.kv(key));
  }

  async set(key: string, value: Bytes, opts: SetOptions): Promise<number> {
    const r = await this.r();
    const v = await this.setOn(r, key, value, opts.ttlMs, opts.ifAbsent, opts.expectedVersion);
    if (v === -1) throw errors.casConflict(key, "already exists");
    if (v === -2) throw errors.casConflict(key, `version is not ${opts.expectedVersion}`);
    return v;
  }

  private setOn(r: Scripted, key: string, value: Bytes, ttlMs?: number, ifAbsent?: boolean, expected?: number): Promise<number> {
    const k = this.keys;
    return r
      .kvSet(k.kv(key), k.kvIndex, k.kvVersion, asBuffer(value), ttlMs ?? 0, ifAbsent ? "1" : "0", expected === undefined ? "" : expected, key)
      .catch(fail);
  }

  async delete(key: string): Promise<boolean> {
    const r = await this.r();
    return (await r.kvDelete(this.keys.kv(key), this.keys.kvIndex, key).catch(fail)) === 1;
  }

  /** keyvalue_idempotent: the write and its record in one script (a CAS refusal records nothing). */
  async setOnce(key: string, value: Bytes, opts: SetOptions, token: IdempotencyToken): Promise<Once<number>> {
    const r = await this.r();
    const k = this.keys;
    const expected = opts.expectedVersion;
    const reply = await r
      .kvSetOnce(k.kv(key), k.kvIndex, k.kvVersion, k.once(token.key), asBuffer(value), opts.ttlMs ?? 0, opts.ifAbsent ? "1" : "0", expected === undefined ? "" : expected, key, token.requestHash, token.windowMs)
      .catch(fail);
    return onceOf(reply, Number, (code) => {
      throw code === -1 ? errors.casConflict(key, "already exists") : errors.casConflict(key, `version is not ${expected}`);
    });
  }

  async deleteOnce(key: string, token: IdempotencyToken): Promise<Once<boolean>> {
    const r = await this.r();
    const reply = await r.kvDeleteOnce(this.keys.kv(key), this.keys.kvIndex, this.keys.once(token.key), key, token.requestHash, token.windowMs).catch(fail);
    return onceOf(reply, (s) => s === "1");
  }

  async exists(key: string): Promise<boolean> {
    const r = await this.r();
    return (await r.exists(this.keys.kv(key)).catch(fail)) === 1;
  }

  // Batches: one command per key, sent in one write (Link batchWrites).

  async batchGet(keys: string[]): Promise<(KvRecord | null)[]> {
    const r = await this.r();
    const calls: Promise<(Buffer | null)[]>[] = [];
    for (let i = 0; i < keys.length; i += MAX_BATCH) {
      const chunk = keys.slice(i, i + MAX_BATCH).map((k) => this.keys.kv(k));
      calls.push(r.kvGetManyBuffer(chunk.length, ...chunk));
    }
    const out: (KvRecord | null)[] = [];
    for (const rows of await Promise.all(calls).catch(fail)) {
      for (let i = 0; i < rows.length / 2; i++) out.push(recordAt(rows, i));
    }
    return out;
  }

  async batchSet(entries: { key: string; value: Bytes }[], ttlMs: number | undefined): Promise<number[]> {
    const r = await this.r();
    return Promise.all(entries.map((e) => this.setOn(r, e.key, e.value, ttlMs)));
  }

  async batchDelete(keys: string[]): Promise<number> {
    const r = await this.r();
    const n = await Promise.all(keys.map((k) => r.kvDelete(this.keys.kv(k), this.keys.kvIndex, k))).catch(fail);
    return n.reduce((a, b) => a + b, 0);
  }

  async scan(prefix: string, cursor: string, limit: number, keysOnly: boolean): Promise<ScanPage> {
    const r = await this.r();
    const p = Buffer.from(prefix);
    const after = cursor ? Buffer.from(cursor, "base64url") : null;
    const min = after && Buffer.compare(after, p) >= 0 ? Buffer.concat([EXCL, after]) : p.length ? Buffer.concat([INCL, p]) : LEX_MIN;
    // No UTF-8 byte is 0xff, so prefix + 0xff is above every key with the prefix.
    const max = p.length ? Buffer.concat([EXCL, p, TOP]) : LEX_MAX;
    const out = await r.kvScanBuffer(this.keys.kvIndex, min, max, limit, keysOnly ? "1" : "0", this.keys.kvBase).catch(fail);
    const items: ScanItem[] = [];
    for (let i = 2; i < out.length; i += 3) {
      const item: ScanItem = { key: (out[i] as Buffer).toString(), version: Number((out[i + 1] as Buffer).toString()) };
      if (!keysOnly) item.value = out[i + 2] as Buffer;
      items.push(item);
    }
    return { items, nextCursor: out[0] === 1 ? "" : (out[1] as Buffer).toString("base64url") };
  }

  async expire(key: string, ttlMs: number): Promise<boolean> {
    const r = await this.r();
    return (await r.pexpire(this.keys.kv(key), ttlMs).catch(fail)) === 1;
  }

  async ttl(key: string): Promise<{ ttlMs: number | null } | null> {
    const r = await this.r();
    const t = await r.pttl(this.keys.kv(key)).catch(fail);
    if (t === -2) return null;
    return { ttlMs: t === -1 ? null : t };
  }

  async persist(key: string): Promise<boolean> {
    const r = await this.r();
    return (await r.kvPersist(this.keys.kv(key)).catch(fail)) === 1;
  }
}
