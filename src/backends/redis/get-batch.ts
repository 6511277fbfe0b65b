/**
 * KeyValue Gets coalesced per event-loop turn: every Get issued before the
 * next setImmediate joins one `kvGetMany` script call (up to MAX_BATCH keys),
 * instead of one HMGET each.
 *
 * Why: on the gateway's hot path the per-command cost of the client library
 * (a Command object, its promise, argument encoding, a queue entry) was the
 * largest piece of Prism's own CPU per Get (profile: ~20% of the process).
 * One command per turn amortizes it; each caller still gets its own promise,
 * derived from the batch's with a precomputed index picker (no closure per call).
 *
 * Ordering: a write on the same KeyValue store flushes the open batch first
 * (flush()), so a Get issued before a Set is sent before it, as with one
 * command per Get. Nothing waits longer than before: the batch leaves in the
 * same loop-turn boundary at which the corked connection is written anyway.
 */
import type { KvRecord } from "../driver.js";
import { toDriverError, type Link } from "./connection.js";
import type { ScriptCommands } from "./scripts.js";

type Row = Buffer | null;
type Scripted = ScriptCommands & import("ioredis").Redis;

/** Keys per script call; a larger turn opens another batch. */
export const MAX_BATCH = 128;

/** rows[2i] value, rows[2i+1] version; no version → absent. */
export function recordAt(rows: Row[], i: number): KvRecord | null {
  const ver = rows[2 * i + 1];
  if (!ver) return null;
  return { value: rows[2 * i] ?? Buffer.alloc(0), version: Number(ver.toString()) };
}

const PICK: ((rows: Row[]) => KvRecord | null)[] = Array.from({ length: MAX_BATCH }, (_, i) => (rows: Row[]) => recordAt(rows, i));

class Batch {
  readonly keys: string[] = [];
  resolve!: (rows: Row[]) => void;
  reject!: (e: unknown) => void;
  readonly rows = new Promise<Row[]>((resolve, reject) => {
    this.resolve = resolve;
    this.reject = reject;
  });
}

export class GetBatcher {
  private open: Batch | null = null;
  private readonly flushOpen = (): void => this.flush();

  constructor(private readonly link: Link) {}

  /** `fullKey` is the Redis key (kv:<key>). */
  get(fullKey: string): Promise<KvRecord | null> {
    let b = this.open;
    if (b === null || b.keys.length === MAX_BATCH) {
      if (b !== null) this.flush();
      b = this.open = new Batch();
      setImmediate(this.flushOpen);
    }
    return b.rows.then(PICK[b.keys.push(fullKey) - 1]);
  }

  /** Sends the open batch now (before a write, and at the end of the loop turn). */
  flush(): void {
    const b = this.open;
    if (b === null) return;
    this.open = null;
    const c = this.link.current();
    if (c instanceof Promise) {
      c.then((r) => send(r, b), (e: unknown) => b.reject(toDriverError(e)));
    } else {
      send(c, b);
    }
  }
}

function send(r: Scripted | import("ioredis").Redis, b: Batch): void {
  (r as Scripted).kvGetManyBuffer(b.keys.length, ...b.keys).then(b.resolve, (e: unknown) => b.reject(toDriverError(e)));
}
