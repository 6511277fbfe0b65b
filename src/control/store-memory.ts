/**
 * The config store in process memory (tests, embedders): the same semantics
 * as sqlite and postgres (see stores.ts), nothing outlives the object. Specs
 * are kept as JSON text, so a caller mutating an object it wrote or read
 * never changes the store.
 */
import type { ConfigStore, StoredEntry, WriteOp, WriteResult } from "./store.js";
import { byKindName, byRevisionKindName, checkRevision, encodeOps } from "./stores.js";

interface Row {
  kind: string;
  name: string;
  json: string | null;
  revision: number;
}

const keyOf = (kind: string, name: string): string => `${kind}\u0000${name}`;
const entryOf = (r: Row): StoredEntry => ({ kind: r.kind, name: r.name, spec: r.json === null ? null : JSON.parse(r.json), revision: r.revision });

export class MemoryConfigStore implements ConfigStore {
  readonly type = "memory" as const;
  readonly description = "memory";
  private readonly rows = new Map<string, Row>();
  private revision = 0;
  private closed = false;

  private check(): void {
    if (this.closed) throw new Error(`config store ${this.description}: closed`);
  }

  async snapshot(): Promise<{ revision: number; entries: StoredEntry[] }> {
    this.check();
    const entries: StoredEntry[] = [];
    for (const r of this.rows.values()) if (r.json !== null) entries.push(entryOf(r));
    return { revision: this.revision, entries: entries.sort(byKindName) };
  }

  async changesSince(revision: number): Promise<{ revision: number; changes: StoredEntry[] }> {
    this.check();
    revision = checkRevision(revision, this.description);
    const changes: StoredEntry[] = [];
    for (const r of this.rows.values()) if (r.revision > revision) changes.push(entryOf(r));
    return { revision: this.revision, changes: changes.sort(byRevisionKindName) };
  }

  async write(ops: WriteOp[]): Promise<WriteResult> {
    this.check();
    const encoded = encodeOps(ops, this.description);
    const next = this.revision + 1;
    // Applied to a copy first: an op set commits whole (nothing here can fail midway, but keep it so).
    const changed = new Map<string, Row>();
    const current = (k: string): Row | undefined => changed.get(k) ?? this.rows.get(k);
    const written = encoded.map((op) => {
      const k = keyOf(op.kind, op.name);
      if (op.json === null) {
        const r = current(k);
        if (!r || r.json === null) return false;
      }
      changed.set(k, { kind: op.kind, name: op.name, json: op.json, revision: next });
      return true;
    });
    if (changed.size === 0) return { revision: this.revision, written };
    for (const [k, r] of changed) this.rows.set(k, r);
    this.revision = next;
    return { revision: next, written };
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
