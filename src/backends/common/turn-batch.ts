/**
 * Calls coalesced per event-loop turn and key: the calls of one key issued
 * before the next setImmediate run as one `run(key, items)` (up to `max`
 * items; a fuller turn opens another batch), and each caller gets its own
 * answer. Used by the queue drivers for Enqueue and Ack (one multi-row
 * statement / script call instead of one per message).
 *
 * Why: per-statement (per-script-call) work on both sides, and in PostgreSQL
 * one commit (and NOTIFY) per statement, dominate a small Enqueue or Ack.
 * Ordering is unchanged: concurrent calls never had an order between them,
 * and a call issued after another one answered goes out after it.
 */

/** One answer per item, aligned with the items; an Error rejects that item's call only. */
export type BatchRunner<T, R> = (key: string, items: T[]) => Promise<(R | Error)[]>;

class Batch<T, R> {
  readonly items: T[] = [];
  weight = 0;
  readonly settle: { resolve: (r: R) => void; reject: (e: unknown) => void }[] = [];
}

export class TurnBatcher<T, R> {
  private open = new Map<string, Batch<T, R>>();
  private scheduled = false;
  private readonly flushAll = (): void => {
    this.scheduled = false;
    const batches = this.open;
    this.open = new Map();
    for (const [key, b] of batches) this.send(key, b);
  };

  constructor(
    private readonly run: BatchRunner<T, R>,
    private readonly max: number,
    /** A batch whose items weigh this much (e.g. payload bytes) goes out at once. */
    private readonly maxWeight = Infinity,
  ) {}

  add(key: string, item: T, weight = 0): Promise<R> {
    let b = this.open.get(key);
    if (b === undefined) {
      this.open.set(key, (b = new Batch()));
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(this.flushAll);
      }
    }
    b.items.push(item);
    const p = new Promise<R>((resolve, reject) => b.settle.push({ resolve, reject }));
    b.weight += weight;
    if (b.items.length >= this.max || b.weight >= this.maxWeight) {
      this.open.delete(key);
      this.send(key, b);
    }
    return p;
  }

  private send(key: string, b: Batch<T, R>): void {
    let p: Promise<(R | Error)[]>;
    try {
      p = this.run(key, b.items);
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(
      (answers) => {
        for (let i = 0; i < b.settle.length; i++) {
          const a = answers[i];
          if (a instanceof Error) b.settle[i]!.reject(a);
          else b.settle[i]!.resolve(a as R);
        }
      },
      (e: unknown) => {
        for (const s of b.settle) s.reject(e);
      },
    );
  }
}
