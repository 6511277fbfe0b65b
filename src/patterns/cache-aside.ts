/**
 * Cache-Aside: the KeyValue API over a `source` of truth, read through a
 * `cache` that holds copies for `options.ttl_seconds`.
 *
 * - Get: a cache hit answers; a miss reads the source, fills the cache, answers.
 *   Concurrent misses on one key share one source read (per process).
 * - Set / Delete: the source first; then the cached copy is invalidated
 *   (default) or replaced (`write: through`). A failed source write leaves the
 *   cache as it was, so it never holds a value the source refused.
 * - A cache that fails (down, circuit open) degrades to source reads, never to
 *   errors. A key whose invalidation failed is read from the source until an
 *   invalidation succeeds, so a cache that comes back cannot serve it stale.
 * - A fill that raced a write in this process is dropped (the key's generation
 *   moved), so a slow read cannot put back a value older than the write.
 *
 * The cache holds each value with the source's version in front (8 bytes), so
 * a hit answers the same version the source would.
 */
import type { KeyValueStore, KvRecord, NamespaceStores, ScanPage, SetOptions, Bytes, IdempotencyToken, Once } from "../backends/driver.js";
import type { InterfaceName } from "../core/interfaces.js";
import type { ComposeContext, PatternDef, PatternRuntime } from "./registry.js";
import { KeyValueByKey } from "../backends/common/kv-by-key.js";

export interface CacheAsideOptions {
  ttlSeconds: number;
  write: "invalidate" | "through";
}

export const CACHE_ASIDE_DEFAULTS: CacheAsideOptions = { ttlSeconds: 300, write: "invalidate" };

export type CacheAsideEvent = "hit" | "miss" | "fill" | "coalesced" | "cache_error" | "fill_dropped";

function encode(rec: KvRecord): Bytes {
  const out = new Uint8Array(8 + rec.value.length);
  new DataView(out.buffer, out.byteOffset, 8).setFloat64(0, rec.version);
  out.set(rec.value, 8);
  return out;
}

// The version is a big-endian float64 (DataView's order, as encode writes it). Reading it
// through one scratch array keeps the hit path from allocating a DataView per Get.
const scratch = new Float64Array(1);
const scratchBytes = new Uint8Array(scratch.buffer);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function decode(b: Bytes): KvRecord | null {
  if (b.length < 8) return null; // not ours: treat as a miss
  if (LITTLE_ENDIAN) for (let i = 0; i < 8; i++) scratchBytes[7 - i] = b[i]!;
  else for (let i = 0; i < 8; i++) scratchBytes[i] = b[i]!;
  return { version: scratch[0]!, value: b.subarray(8) };
}

export class CacheAsideStore extends KeyValueByKey {
  readonly counters: Record<CacheAsideEvent, number> = { hit: 0, miss: 0, fill: 0, coalesced: 0, cache_error: 0, fill_dropped: 0 };
  private readonly inflight = new Map<string, Promise<KvRecord | null>>();
  /** Bumped by every write of a key while a read of it may be in flight (see fill). */
  private readonly generation = new Map<string, number>();
  /** Keys whose cached copy could not be invalidated: read from the source until one invalidation succeeds. */
  private readonly dirty = new Set<string>();
  private readonly ttlMs: number;

  constructor(
    private readonly cache: KeyValueStore,
    private readonly source: KeyValueStore,
    private readonly opts: CacheAsideOptions,
    private readonly log: (level: "info" | "warn" | "error", msg: string) => void,
  ) {
    super();
    this.ttlMs = opts.ttlSeconds * 1000;
    if (source.scan) this.scan = (p, c, l, k) => source.scan!(p, c, l, k);
    if (source.setOnce && source.deleteOnce) {
      this.setOnce = (k, v, o, t) => this.keyedSet(k, v, o, t);
      this.deleteOnce = (k, t) => this.keyedDelete(k, t);
    }
  }

  /** keyvalue_idempotent: set, with the source (which owns the effect) keeping the key's record. */
  setOnce?: (key: string, value: Bytes, opts: SetOptions, token: IdempotencyToken) => Promise<Once<number>>;
  deleteOnce?: (key: string, token: IdempotencyToken) => Promise<Once<boolean>>;

  private async keyedSet(key: string, value: Bytes, opts: SetOptions, token: IdempotencyToken): Promise<Once<number>> {
    this.bump(key);
    const once = await this.source.setOnce!(key, value, opts, token);
    // A replay wrote nothing: the value it answers for may be stale, so it is not written through, only invalidated.
    if (once.replayedHash === undefined) await this.afterWrite(key, { value, version: once.result });
    else await this.afterWrite(key, null);
    return once;
  }

  private async keyedDelete(key: string, token: IdempotencyToken): Promise<Once<boolean>> {
    this.bump(key);
    const once = await this.source.deleteOnce!(key, token);
    if (once.replayedHash === undefined) await this.afterWrite(key, null);
    else await this.afterWrite(key, null);
    return once;
  }

  private cacheFailed(e: unknown, what: string): void {
    if (this.counters.cache_error++ === 0 || this.counters.cache_error % 1000 === 0) {
      this.log("warn", `cache ${what} failed (${this.counters.cache_error} so far), serving from the source: ${(e as Error).message}`);
    }
  }

  get(key: string): Promise<KvRecord | null> {
    if (this.dirty.size !== 0 && this.dirty.has(key)) return this.dirtyGet(key);
    // The hit path is one cache call and one continuation (no async frame of its own).
    return this.cache.get(key).then(
      (r) => {
        const rec = r && decode(r.value);
        if (rec) {
          this.counters.hit++;
          return rec;
        }
        return this.miss(key);
      },
      (e: unknown) => {
        this.cacheFailed(e, "read");
        return this.source.get(key);
      },
    );
  }

  /** A key whose invalidation failed: try it again, and read the source whatever it says. */
  private async dirtyGet(key: string): Promise<KvRecord | null> {
    if (await this.invalidate(key)) this.dirty.delete(key);
    return this.miss(key);
  }

  private miss(key: string): Promise<KvRecord | null> {
    this.counters.miss++;
    const pending = this.inflight.get(key);
    if (pending) {
      this.counters.coalesced++;
      return pending;
    }
    const p = this.readAndFill(key).finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  private async readAndFill(key: string): Promise<KvRecord | null> {
    const gen = this.generation.get(key) ?? 0;
    const rec = await this.source.get(key);
    if (rec && !this.dirty.has(key)) {
      if ((this.generation.get(key) ?? 0) !== gen) this.counters.fill_dropped++;
      else {
        try {
          await this.cache.set(key, encode(rec), { ttlMs: this.ttlMs });
          this.counters.fill++;
        } catch (e) {
          this.cacheFailed(e, "fill");
        }
      }
    }
    return rec;
  }

  private bump(key: string): void {
    this.generation.set(key, (this.generation.get(key) ?? 0) + 1);
    // Generations only matter while a read of the key is in flight; keep the map small.
    if (!this.inflight.has(key) && this.generation.size > 10_000) this.generation.clear();
  }

  /** Removes the cached copy; false (and the key marked dirty) when the cache did not answer. */
  private async invalidate(key: string): Promise<boolean> {
    try {
      await this.cache.delete(key);
      this.dirty.delete(key);
      return true;
    } catch (e) {
      this.cacheFailed(e, "invalidation");
      this.dirty.add(key);
      return false;
    }
  }

  private async afterWrite(key: string, rec: KvRecord | null): Promise<void> {
    this.bump(key);
    if (rec && this.opts.write === "through") {
      try {
        await this.cache.set(key, encode(rec), { ttlMs: this.ttlMs });
        this.dirty.delete(key);
        return;
      } catch (e) {
        this.cacheFailed(e, "write-through");
      }
    }
    await this.invalidate(key);
  }

  async set(key: string, value: Bytes, opts: SetOptions): Promise<number> {
    this.bump(key);
    const version = await this.source.set(key, value, opts); // throws: the cache is untouched
    await this.afterWrite(key, { value, version });
    return version;
  }

  async delete(key: string): Promise<boolean> {
    this.bump(key);
    const deleted = await this.source.delete(key);
    await this.afterWrite(key, null);
    return deleted;
  }


  /** keyvalue_scan, from the source (set in the constructor when the source scans). */
  scan?: (prefix: string, cursor: string, limit: number, keysOnly: boolean) => Promise<ScanPage>;
}

function optionsOf(raw: Readonly<Record<string, unknown>>): CacheAsideOptions {
  return {
    ttlSeconds: typeof raw.ttl_seconds === "number" ? raw.ttl_seconds : CACHE_ASIDE_DEFAULTS.ttlSeconds,
    write: raw.write === "through" ? "through" : CACHE_ASIDE_DEFAULTS.write,
  };
}

function compose(ctx: ComposeContext): PatternRuntime {
  const cache = ctx.slots.get("cache")!;
  const source = ctx.slots.get("source")!;
  const store = new CacheAsideStore(cache.stores.keyvalue!, source.stores.keyvalue!, optionsOf(ctx.options), ctx.log);
  const stores: NamespaceStores = { keyvalue: store };
  return { stores, interfaces: claims(new Map([...ctx.slots].map(([k, v]) => [k, v.interfaces]))), counters: store.counters };
}

/** Served by composition on any source: basic and batch. Scan and compare-and-set come from the source when it has them. */
function claims(slots: ReadonlyMap<string, ReadonlySet<InterfaceName>>): InterfaceName[] {
  const source = slots.get("source") ?? new Set<InterfaceName>();
  const out: InterfaceName[] = ["keyvalue_basic", "keyvalue_batch"];
  if (source.has("keyvalue_scan")) out.push("keyvalue_scan");
  if (source.has("keyvalue_cas")) out.push("keyvalue_cas");
  if (source.has("keyvalue_idempotent")) out.push("keyvalue_idempotent");
  return out;
}

export const cacheAside: PatternDef = {
  name: "cache-aside",
  description: "KeyValue read through a cache: misses fill it (one source read per key at a time), writes go to the source then invalidate or write through; a cache outage degrades to source reads",
  serves: ["keyvalue"],
  slots: [
    {
      name: "cache",
      description: "holds copies for options.ttl_seconds",
      primitive: "keyvalue",
      requires: ["keyvalue_basic", "keyvalue_ttl"],
      optional: [],
      recommended: ["redis", "memstore"],
    },
    {
      name: "source",
      description: "the source of truth",
      primitive: "keyvalue",
      requires: ["keyvalue_basic"],
      optional: ["keyvalue_scan", "keyvalue_cas"],
      recommended: ["postgres", "sqlite", "nats", "redis"],
    },
  ],
  compose,
  claims,
};
