/**
 * KeyValue Gets coalesced per event-loop turn: the Gets of one namespace
 * issued before the next setImmediate go to PostgreSQL as one
 * `key = ANY($2)` statement (up to MAX_BATCH keys) instead of one statement
 * each; a lone Get still uses the single-key statement.
 *
 * Why: node-postgres's work per statement (Bind/Execute messages, a result
 * object, a pooled connection checkout) and the server's per-statement cost
 * dominate a Get. Each caller still gets its own promise, derived from the
 * batch's with a precomputed index picker (no closure per call).
 *
 * Consistency is unchanged: pooled statements never had an order between
 * concurrent calls (each may run on another connection), and a call issued
 * after another one finished (await set(); get()) is sent after it, batched
 * or not. Every Get of a batch reads at the same snapshot and clock reading.
 */
import type { KvRecord } from "../driver.js";

/** Keys per statement; a larger turn opens another batch. */
export const MAX_BATCH = 256;

type Records = (KvRecord | null)[];

const PICK: ((records: Records) => KvRecord | null)[] = Array.from({ length: MAX_BATCH }, (_, i) => (records: Records) => records[i] ?? null);

/** Runs the statements: one key, or many (answers aligned with `keys`). */
export interface GetRunner {
  getOne(key: string): Promise<KvRecord | null>;
  getMany(keys: string[]): Promise<Records>;
}

class Batch {
  readonly keys: string[] = [];
  resolve!: (records: Records) => void;
  reject!: (e: unknown) => void;
  readonly records = new Promise<Records>((resolve, reject) => {
    this.resolve = resolve;
    this.reject = reject;
  });
}

function one(r: KvRecord | null): Records {
  return [r];
}

export class PgGetBatcher {
  private open: Batch | null = null;
  private readonly flushOpen = (): void => this.flush();

  constructor(private readonly run: GetRunner) {}

  get(key: string): Promise<KvRecord | null> {
    let b = this.open;
    if (b === null || b.keys.length === MAX_BATCH) {
      if (b !== null) this.flush();
      b = this.open = new Batch();
      setImmediate(this.flushOpen);
    }
    return b.records.then(PICK[b.keys.push(key) - 1]);
  }

  /** Sends the open batch (at the end of the loop turn, or when it is full). */
  flush(): void {
    const b = this.open;
    if (b === null) return;
    this.open = null;
    const p = b.keys.length === 1 ? this.run.getOne(b.keys[0]!).then(one) : this.run.getMany(b.keys);
    p.then(b.resolve, b.reject);
  }
}
