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
 * One batch in flight: while a batch is waiting for its reply, the Gets that
 * arrive join the next batch, which leaves as soon as that reply is in (at
 * the end of the reply's loop turn), or at once when it is full. An idle
 * connection sends at the end of the turn, as before, so a lone Get waits for
 * nothing; under load the batches grow instead of the write system calls
 * multiplying. Redis answers a connection's commands in order, so a Get held
 * back this way would have waited behind the batch in flight anyway. Measured
 * (bench ws-kv-get-redis, 64 in flight): Prism CPU per Get 8.5-11.4 µs with a
 * batch per loop turn, 6.8-6.9 µs with one batch in flight, p99 2.2-3.0 ms →
 * 1.6 ms; allowing two in flight measured 8.1-9.0 µs.
 *
 * Ordering: a write on the same KeyValue store flushes the open batch first
 * (flush(), never held back), so a Get issued before a Set is sent before it,
 * as with one command per Get.
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

  constructor(private readonly batcher: GetBatcher) {}

  /** The reply handlers of the script call (bound once per batch, not per Get). */
  readonly answered = (rows: Row[]): void => {
    this.batcher.settled();
    this.resolve(rows);
  };
  readonly failed = (e: unknown): void => {
    this.batcher.settled();
    this.reject(toDriverError(e));
  };
}

export class GetBatcher {
  private open: Batch | null = null;
  /** Batches sent and not yet answered (normally 0 or 1; more only when a batch filled up). */
  private sent = 0;
  private readonly flushOpen = (): void => this.flush();

  constructor(private readonly link: Link) {}

  /** Batches sent and not yet answered. */
  get inFlight(): number {
    return this.sent;
  }

  /** `fullKey` is the Redis key (kv:<key>). */
  get(fullKey: string): Promise<KvRecord | null> {
    let b = this.open;
    if (b === null || b.keys.length === MAX_BATCH) {
      if (b !== null) this.flush();
      b = this.open = new Batch(this);
      // With a batch in flight, this one leaves when that one is answered (settled()).
      if (this.sent === 0) setImmediate(this.flushOpen);
    }
    return b.rows.then(PICK[b.keys.push(fullKey) - 1]);
  }

  /** Sends the open batch now (before a write, at the end of the loop turn, or after the batch in flight). */
  flush(): void {
    const b = this.open;
    if (b === null) return;
    this.open = null;
    this.sent++;
    const c = this.link.current();
    if (c instanceof Promise) {
      c.then((r) => send(r, b), b.failed);
    } else {
      send(c, b);
    }
  }

  /** A batch was answered (or failed): the held one leaves at the end of this loop turn. */
  settled(): void {
    this.sent--;
    if (this.sent === 0 && this.open !== null) setImmediate(this.flushOpen);
  }
}

function send(r: Scripted | import("ioredis").Redis, b: Batch): void {
  (r as Scripted).kvGetManyBuffer(b.keys.length, ...b.keys).then(b.answered, b.failed);
}
