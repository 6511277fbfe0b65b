/**
 * KeyValue stores built over other stores (patterns, migrations) that serve
 * exists and the batch calls through their own single-key get/set/delete,
 * so each key takes the path its get/set/delete defines.
 */
import type { Bytes, KeyValueStore, KvRecord, SetOptions } from "../driver.js";

export abstract class KeyValueByKey implements KeyValueStore {
  abstract get(key: string): Promise<KvRecord | null>;
  abstract set(key: string, value: Bytes, opts: SetOptions): Promise<number>;
  abstract delete(key: string): Promise<boolean>;

  async exists(key: string): Promise<boolean> {
    return (await this.get(key)) !== null;
  }

  batchGet(keys: string[]): Promise<(KvRecord | null)[]> {
    return Promise.all(keys.map((k) => this.get(k)));
  }

  batchSet(entries: { key: string; value: Bytes }[], ttlMs: number | undefined): Promise<number[]> {
    return Promise.all(entries.map((e) => this.set(e.key, e.value, { ttlMs })));
  }

  async batchDelete(keys: string[]): Promise<number> {
    return (await Promise.all(keys.map((k) => this.delete(k)))).filter(Boolean).length;
  }
}
