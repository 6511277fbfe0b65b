/**
 * KeyValue on JetStream KV: one bucket per namespace (history 1), keys stored
 * as the hex of their UTF-8 bytes (any Prism key becomes a valid KV key, and
 * hex order is byte order). version = the entry's revision (the bucket
 * stream's sequence: it increases on every write).
 *
 * CAS: ifAbsent / expectedVersion 0 → KV create (atomic, also over a delete
 * marker); expectedVersion N → KV update (the server's expected last subject
 * sequence check). Delete is a soft delete conditioned on the revision read,
 * so it reports true only when it removed a live value.
 *
 * Scan: JetStream KV keys are neither ordered nor range-addressable, so each
 * page lists every key of the bucket (O(keys in the namespace) per page),
 * then filters, sorts and cuts the page; values come from one get per key.
 * Fine for thousands of keys, not for millions. No per-key TTL on this server
 * line (JetStream per-message TTL needs NATS 2.11+): keyvalue_ttl is not claimed.
 */
import { Kvm, type KV } from "@nats-io/kv";
import { errors } from "../../core/errors.js";
import type { Bytes, KeyValueStore, KvRecord, ScanItem, ScanPage, SetOptions } from "../driver.js";
import { apiCode, toDriverError, type Link } from "./connection.js";
import { kvKey, kvKeyDecode, type Names } from "./names.js";

const WRONG_LAST_SEQUENCE = 10071;
const WRONG_LAST_SEQUENCE_UNKNOWN = 10164;
const HEX = /^[0-9a-f]*$/;

function isCasConflict(e: unknown): boolean {
  const c = apiCode(e);
  return c === WRONG_LAST_SEQUENCE || c === WRONG_LAST_SEQUENCE_UNKNOWN;
}

export class NatsKeyValue implements KeyValueStore {
  private kv: Promise<KV> | undefined;

  constructor(
    private readonly link: Link,
    private readonly names: Names,
  ) {}

  private async bucket(): Promise<KV> {
    const c = await this.link.get();
    if (!this.kv) {
      const p = new Kvm(c.js).create(this.names.bucket, { history: 1 });
      this.kv = p;
      p.catch(() => {
        if (this.kv === p) this.kv = undefined;
      });
    }
    return this.kv.catch((e) => {
      throw toDriverError(e);
    });
  }

  async get(key: string): Promise<KvRecord | null> {
    const kv = await this.bucket();
    const e = await kv.get(kvKey(key)).catch((err) => {
      throw toDriverError(err);
    });
    return e && e.operation === "PUT" ? { value: e.value, version: e.revision } : null;
  }

  async set(key: string, value: Bytes, opts: SetOptions): Promise<number> {
    const kv = await this.bucket();
    const k = kvKey(key);
    try {
      if (opts.ifAbsent || opts.expectedVersion === 0) return await kv.create(k, value);
      if (opts.expectedVersion !== undefined) return await kv.update(k, value, opts.expectedVersion);
      return await kv.put(k, value);
    } catch (e) {
      if (isCasConflict(e)) {
        throw errors.casConflict(key, opts.ifAbsent || opts.expectedVersion === 0 ? "the key exists" : `its version is not ${opts.expectedVersion}`);
      }
      throw toDriverError(e);
    }
  }

  async delete(key: string): Promise<boolean> {
    const kv = await this.bucket();
    const k = kvKey(key);
    for (let attempt = 0; attempt < 10; attempt++) {
      try {
        const e = await kv.get(k);
        if (!e || e.operation !== "PUT") return false;
        await kv.delete(k, { previousSeq: e.revision });
        return true;
      } catch (e) {
        if (!isCasConflict(e)) throw toDriverError(e);
        // written meanwhile: read again
      }
    }
    throw errors.unavailable(`nats kv: key "${key}" kept changing during delete`);
  }

  async exists(key: string): Promise<boolean> {
    return (await this.get(key)) !== null;
  }

  batchGet(keys: string[]): Promise<(KvRecord | null)[]> {
    return Promise.all(keys.map((k) => this.get(k)));
  }

  batchSet(entries: { key: string; value: Bytes }[], _ttlMs: number | undefined): Promise<number[]> {
    return Promise.all(entries.map((e) => this.set(e.key, e.value, {})));
  }

  async batchDelete(keys: string[]): Promise<number> {
    const done = await Promise.all(keys.map((k) => this.delete(k)));
    return done.filter(Boolean).length;
  }

  async scan(prefix: string, cursor: string, limit: number, keysOnly: boolean): Promise<ScanPage> {
    if (!HEX.test(cursor) || cursor.length % 2) throw errors.invalidArgument("cursor", "is not a cursor this namespace returned");
    const kv = await this.bucket();
    const p = kvKey(prefix);
    const matched: string[] = [];
    try {
      const it = await kv.keys();
      for await (const k of it) if (k.startsWith(p) && k > cursor) matched.push(k);
    } catch (e) {
      throw toDriverError(e);
    }
    matched.sort();
    const page = matched.slice(0, limit);
    const more = matched.length > limit;
    const recs = await Promise.all(page.map((k) => kv.get(k).catch((e) => Promise.reject(toDriverError(e)))));
    const items: ScanItem[] = [];
    for (const [i, e] of recs.entries()) {
      // Deleted since the listing: skipped (a scan may or may not see concurrent changes).
      if (!e || e.operation !== "PUT") continue;
      items.push(keysOnly ? { key: kvKeyDecode(page[i]!), version: e.revision } : { key: kvKeyDecode(page[i]!), value: e.value, version: e.revision });
    }
    return { items, nextCursor: more ? page[page.length - 1]! : "" };
  }
}
