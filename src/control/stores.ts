/**
 * Opening a config store from its spec, and the rules every implementation
 * shares. The implementations are loaded on demand (dynamic import), so a
 * process on the memory store never loads pg or better-sqlite3.
 *
 * Shared semantics (memory, sqlite and postgres behave identically):
 * - a spec is stored as its JSON text (JSON.stringify), so what comes back is
 *   JSON.parse of it: objects, arrays, numbers, strings, booleans and nested
 *   nulls round-trip; undefined properties are dropped as JSON drops them (a
 *   top-level spec that has no JSON form is refused). PostgreSQL keeps specs
 *   as jsonb, which does not keep the order of an object's keys.
 * - entries are ordered by kind, then name, by Unicode code point (the byte
 *   order of UTF-8: SQLite's BINARY and PostgreSQL's "C" collation).
 * - the ops of one write apply in order (a put then a delete of one entry in
 *   one change set leaves a tombstone).
 */
import type { ConfigStore, StoredEntry, WriteOp } from "./store.js";

export type ConfigStoreSpec = { type: "memory" } | { type: "sqlite"; path: string } | { type: "postgres"; url: string; table?: string };

export async function openConfigStore(spec: ConfigStoreSpec): Promise<ConfigStore> {
  switch (spec.type) {
    case "memory": {
      const { MemoryConfigStore } = await import("./store-memory.js");
      return new MemoryConfigStore();
    }
    case "sqlite": {
      const { SqliteConfigStore } = await import("./store-sqlite.js");
      return new SqliteConfigStore({ path: spec.path });
    }
    case "postgres": {
      const { PostgresConfigStore } = await import("./store-postgres.js");
      return new PostgresConfigStore(spec.table === undefined ? { url: spec.url } : { url: spec.url, table: spec.table });
    }
    default:
      throw new Error(`config store: unknown type ${JSON.stringify((spec as { type?: unknown }).type)}`);
  }
}

/** A write op checked and with its spec as JSON text (null: delete). */
export interface EncodedOp {
  kind: string;
  name: string;
  json: string | null;
}

/** Validates ops and serialises their specs; throws (before anything is written) on a bad op. */
export function encodeOps(ops: readonly WriteOp[], description: string): EncodedOp[] {
  if (!Array.isArray(ops)) throw new Error(`config store ${description}: write expects an array of ops`);
  return ops.map((op, i) => {
    const where = `config store ${description}: op ${i}`;
    if (typeof op?.kind !== "string" || op.kind === "") throw new Error(`${where}: kind must be a non-empty string`);
    if (typeof op.name !== "string" || op.name === "") throw new Error(`${where}: name must be a non-empty string`);
    if (op.spec === null) return { kind: op.kind, name: op.name, json: null };
    let json: string | undefined;
    try {
      json = JSON.stringify(op.spec);
    } catch (e) {
      throw new Error(`${where} (${op.kind}/${op.name}): spec is not JSON: ${(e as Error).message}`);
    }
    if (json === undefined) throw new Error(`${where} (${op.kind}/${op.name}): spec is not JSON (${typeof op.spec})`);
    return { kind: op.kind, name: op.name, json };
  });
}

/** changesSince's argument: a finite revision number (0: everything). Revisions are integers, so > r is > floor(r). */
export function checkRevision(revision: number, description: string): number {
  if (typeof revision !== "number" || !Number.isFinite(revision)) {
    throw new Error(`config store ${description}: changesSince expects a revision number, got ${String(revision)}`);
  }
  return Math.floor(revision);
}

/** Orders strings by code point (UTF-16 code units differ from it above U+D7FF). */
export function compareCodePoints(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    // Surrogates (U+D800-DFFF, i.e. code points >= U+10000) sort after U+E000-FFFF.
    if (x >= 0xd800) x += x < 0xe000 ? 0x2000 : -0x800;
    if (y >= 0xd800) y += y < 0xe000 ? 0x2000 : -0x800;
    return x - y;
  }
  return a.length - b.length;
}

export function byKindName(a: StoredEntry, b: StoredEntry): number {
  return compareCodePoints(a.kind, b.kind) || compareCodePoints(a.name, b.name);
}

export function byRevisionKindName(a: StoredEntry, b: StoredEntry): number {
  return a.revision - b.revision || byKindName(a, b);
}

/** The text of an error, including what an AggregateError (several addresses refused) carries. */
export function errorText(e: unknown): string {
  if (e instanceof Error) {
    if (e.message) return e.message;
    const inner = (e as { errors?: unknown }).errors;
    if (Array.isArray(inner) && inner.length) return inner.map(errorText).join("; ");
    const code = (e as { code?: unknown }).code;
    return typeof code === "string" ? code : e.name;
  }
  return String(e);
}

/** `config store <description>: <what failed>`, with the original as cause. */
export function storeError(description: string, e: unknown): Error {
  if (e instanceof Error && e.message.startsWith(`config store ${description}`)) return e;
  const err = new Error(`config store ${description}: ${errorText(e)}`, { cause: e });
  const code = (e as { code?: unknown })?.code;
  if (typeof code === "string") (err as Error & { code?: string }).code = code;
  return err;
}
