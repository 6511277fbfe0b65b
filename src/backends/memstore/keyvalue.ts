/**
 * In-memory KeyValue for one namespace: a Map for O(1) reads and writes, a
 * chunked sorted index for Scan, and a min-heap of expiry times that one
 * periodic sweep per instance drains (no timer per key). Expired keys are
 * invisible to every read as soon as the clock passes their expiry, swept or not.
 *
 * Versions start at 1 for a new key and rise by 1 on every write. A key that is
 * deleted (or expires) and is written again restarts at 1, as etcd's per-key
 * version does: CAS is safe within one life of a key, not across a delete.
 */
import type { Clock } from "../../core/clock.js";
import { errors } from "../../core/errors.js";
import type { Bytes, KeyValueStore, KvRecord, ScanItem, ScanPage, SetOptions } from "../driver.js";
import { IndexedHeap, type HeapItem } from "./heap.js";
import { SortedKeys, compareUtf8 } from "./sorted-keys.js";

interface Entry extends HeapItem {
  readonly key: string;
  value: Uint8Array;
  version: number;
  /** Epoch ms; 0: no TTL. */
  expiresAt: number;
}

export interface KvStats {
  keys: number;
  indexed: number;
  expiring: number;
}

export class MemKeyValue implements KeyValueStore {
  private readonly map = new Map<string, Entry>();
  private readonly index = new SortedKeys();
  private readonly expiry = new IndexedHeap<Entry>((a, b) => a.expiresAt < b.expiresAt);

  constructor(private readonly clock: Clock) {}

  async get(key: string): Promise<KvRecord | null> {
    return this.read(key);
  }

  async set(key: string, value: Bytes, opts: SetOptions): Promise<number> {
    return this.write(key, value, opts.ttlMs, opts);
  }

  async delete(key: string): Promise<boolean> {
    return this.remove(key);
  }

  async exists(key: string): Promise<boolean> {
    return this.live(key) !== undefined;
  }

  async batchGet(keys: string[]): Promise<(KvRecord | null)[]> {
    return keys.map((k) => this.read(k));
  }

  async batchSet(entries: { key: string; value: Bytes }[], ttlMs: number | undefined): Promise<number[]> {
    return entries.map((e) => this.write(e.key, e.value, ttlMs, undefined));
  }

  async batchDelete(keys: string[]): Promise<number> {
    let n = 0;
    for (const k of keys) if (this.remove(k)) n++;
    return n;
  }

  /** The cursor is the last key returned; the next page starts strictly after it. */
  async scan(prefix: string, cursor: string, limit: number, keysOnly: boolean): Promise<ScanPage> {
    if (limit < 1) limit = 1;
    const resume = cursor !== "" && compareUtf8(cursor, prefix) >= 0;
    const now = this.clock.now();
    const items: ScanItem[] = [];
    const expired: Entry[] = [];
    let more = false;
    for (const k of this.index.from(resume ? cursor : prefix, resume)) {
      if (!k.startsWith(prefix)) break;
      const e = this.map.get(k)!;
      if (e.expiresAt !== 0 && e.expiresAt <= now) {
        expired.push(e);
        continue;
      }
      if (items.length >= limit) {
        more = true;
        break;
      }
      items.push(keysOnly ? { key: k, version: e.version } : { key: k, value: Buffer.from(e.value), version: e.version });
    }
    for (const e of expired) this.drop(e);
    return { items, nextCursor: more ? items[items.length - 1]!.key : "" };
  }

  async expire(key: string, ttlMs: number): Promise<boolean> {
    const e = this.live(key);
    if (!e) return false;
    this.setExpiry(e, ttlMs);
    return true;
  }

  async ttl(key: string): Promise<{ ttlMs: number | null } | null> {
    const e = this.live(key);
    if (!e) return null;
    return { ttlMs: e.expiresAt === 0 ? null : e.expiresAt - this.clock.now() };
  }

  async persist(key: string): Promise<boolean> {
    const e = this.live(key);
    if (!e) return false;
    this.setExpiry(e, 0);
    return true;
  }

  /** Removes up to `budget` keys whose expiry is <= now; returns how many. */
  sweep(now: number, budget: number): number {
    let n = 0;
    for (let top = this.expiry.peek(); top && top.expiresAt <= now && n < budget; top = this.expiry.peek()) {
      this.drop(top);
      n++;
    }
    return n;
  }

  stats(): KvStats {
    return { keys: this.map.size, indexed: this.index.size, expiring: this.expiry.size };
  }

  clear(): void {
    this.map.clear();
    this.index.clear();
    this.expiry.clear();
  }

  /** The live entry; an expired one is removed on the way. */
  private live(key: string): Entry | undefined {
    const e = this.map.get(key);
    if (e === undefined || e.expiresAt === 0 || e.expiresAt > this.clock.now()) return e;
    this.drop(e);
    return undefined;
  }

  private read(key: string): KvRecord | null {
    const e = this.live(key);
    return e ? { value: Buffer.from(e.value), version: e.version } : null;
  }

  private write(key: string, value: Bytes, ttlMs: number | undefined, cas: SetOptions | undefined): number {
    let e = this.live(key);
    if (cas) {
      if (cas.ifAbsent && e) throw errors.casConflict(key, "already exists");
      const expected = cas.expectedVersion;
      if (expected !== undefined && (e ? e.version : 0) !== expected) {
        throw errors.casConflict(key, e ? `version is ${e.version}, expected ${expected}` : `is absent, expected version ${expected}`);
      }
    }
    // Our own copy in its own ArrayBuffer: the caller may reuse its buffer, and a
    // pooled slice would pin a shared 8 KiB slab for as long as the key lives.
    const copy = new Uint8Array(value);
    if (e) {
      e.value = copy;
      e.version++;
    } else {
      e = { key, value: copy, version: 1, expiresAt: 0, heapIdx: -1 };
      this.map.set(key, e);
      this.index.insert(key);
    }
    this.setExpiry(e, ttlMs);
    return e.version;
  }

  private remove(key: string): boolean {
    const e = this.live(key);
    if (!e) return false;
    this.drop(e);
    return true;
  }

  private setExpiry(e: Entry, ttlMs: number | undefined): void {
    if (ttlMs !== undefined && ttlMs > 0) {
      e.expiresAt = this.clock.now() + ttlMs;
      this.expiry.update(e);
    } else if (e.expiresAt !== 0) {
      e.expiresAt = 0;
      this.expiry.remove(e);
    }
  }

  private drop(e: Entry): void {
    this.map.delete(e.key);
    this.index.remove(e.key);
    this.expiry.remove(e);
  }
}
