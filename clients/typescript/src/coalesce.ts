/**
 * Coalesces the calls one run of callbacks makes for the same queue into one
 * batch call (Queue/EnqueueBatch, Queue/AckBatch), the way ioredis's
 * auto-pipelining coalesces commands: 64 producers whose answers arrived in
 * one read issue their next 64 enqueues in the same run, and those leave as
 * one request that the server checks, authorizes and routes once. Each caller
 * still gets its own answer or error. A call alone in its run goes as the
 * plain single call, so a lone caller sees no difference at all.
 *
 * The batch is sent on process.nextTick from the first call: after the
 * current microtasks (the other callers' continuations) have run, before any
 * I/O — no added latency.
 */
import { Code, PrismError } from "./errors.js";

/** One entry's outcome from the batch call: its value, or the error of that entry alone. */
export type EntryResult<R> = { ok: true; value: R } | { ok: false; error: PrismError };

interface Open<I, R> {
  key: string;
  items: I[];
  resolves: ((v: R) => void)[];
  rejects: ((e: PrismError) => void)[];
  bytes: number;
}

export interface CoalescerOptions<I, R> {
  /** The batch call: one result per item, in order; a thrown error fails every item. */
  batch(key: string, items: I[]): Promise<EntryResult<R>[]>;
  /** The single call, for a lone item, and for every item once the server turned out not to know the batch call. */
  single(key: string, item: I): Promise<R>;
  /** Items per batch call (the server accepts 1000). */
  maxItems: number;
  /** Bytes per batch call, summed from `add`'s size argument (stays well under the server's message limit). */
  maxBytes: number;
}

export class Coalescer<I, R> {
  private readonly open = new Map<string, Open<I, R>>();
  private scheduled = false;
  /** Set when the server answered the batch call UNIMPLEMENTED (an older Prism): single calls from then on. */
  private unsupported = false;
  private readonly flushAll = (): void => this.flush();

  constructor(private readonly o: CoalescerOptions<I, R>) {}

  add(key: string, item: I, bytes: number): Promise<R> {
    if (this.unsupported) return this.o.single(key, item);
    let b = this.open.get(key);
    if (b !== undefined && (b.items.length >= this.o.maxItems || b.bytes + bytes > this.o.maxBytes)) {
      this.open.delete(key);
      this.send(b);
      b = undefined;
    }
    if (b === undefined) {
      b = { key, items: [], resolves: [], rejects: [], bytes: 0 };
      this.open.set(key, b);
      if (!this.scheduled) {
        this.scheduled = true;
        process.nextTick(this.flushAll);
      }
    }
    const open = b;
    open.items.push(item);
    open.bytes += bytes;
    return new Promise<R>((resolve, reject) => {
      open.resolves.push(resolve);
      open.rejects.push(reject);
    });
  }

  private flush(): void {
    this.scheduled = false;
    for (const b of this.open.values()) this.send(b);
    this.open.clear();
  }

  private send(b: Open<I, R>): void {
    if (b.items.length === 1) {
      this.o.single(b.key, b.items[0]!).then(b.resolves[0]!, b.rejects[0]!);
      return;
    }
    this.o.batch(b.key, b.items).then(
      (results) => {
        for (let i = 0; i < b.items.length; i++) {
          const r = results[i];
          if (r === undefined) b.rejects[i]!(new PrismError(Code.INTERNAL, `batch answer has ${results.length} results for ${b.items.length} entries`));
          else if (r.ok) b.resolves[i]!(r.value);
          else b.rejects[i]!(r.error);
        }
      },
      (e: unknown) => {
        if (isUnknownMethod(e) && !this.unsupported) {
          this.unsupported = true;
          for (let i = 0; i < b.items.length; i++) this.o.single(b.key, b.items[i]!).then(b.resolves[i]!, b.rejects[i]!);
          return;
        }
        const err = e instanceof PrismError ? e : new PrismError(Code.UNKNOWN, String((e as Error)?.message ?? e));
        for (const reject of b.rejects) reject(err);
      },
    );
  }
}

/** The server does not know the method at all (an older Prism), as opposed to a namespace lacking an interface (also UNIMPLEMENTED). */
function isUnknownMethod(e: unknown): boolean {
  if (!(e instanceof PrismError) || e.code !== Code.UNIMPLEMENTED) return false;
  return e.reason === "PRISM_ERR_UNKNOWN_METHOD" || (e.reason === "" && /unknown method|does not implement/i.test(e.message));
}
