/**
 * A map from uint32 request ids to values for the calls in flight on one
 * connection: open addressing with linear probing over preallocated arrays,
 * deleted slots marked (tombstones) and reclaimed by an occasional rehash.
 *
 * Why not a Map: a connection's in-flight set empties and refills on every
 * loop turn under load (64 requests read, 64 answered), and V8 shrinks a Map's
 * table as it empties and grows it again as it refills, each step a runtime
 * call that copies the table. The CPU profile of the WebSocket Get path put
 * ~0.45 µs per request on the Map's set/delete lines. This table only grows
 * (to 2-4 times the peak in flight, bounded by the connection's in-flight
 * limit), so steady churn allocates nothing.
 */
const MIN_CAPACITY = 16;

/** Marks a slot whose entry was deleted (probing continues past it). */
const DELETED: unique symbol = Symbol("deleted");

export class IdTable<T extends object> {
  private keys: Uint32Array;
  /** undefined: never used; DELETED: tombstone; else the value stored under keys[i]. */
  private vals: (T | typeof DELETED | undefined)[];
  private mask: number;
  private live = 0;
  /** Live entries plus tombstones: probing stops only at a never-used slot. */
  private used = 0;
  /** The arrays of the previous same-size table, reused by the next rehash. */
  private spareKeys: Uint32Array | null = null;
  private spareVals: (T | typeof DELETED | undefined)[] | null = null;

  constructor(capacity = MIN_CAPACITY) {
    let cap = MIN_CAPACITY;
    while (cap < capacity) cap *= 2;
    this.keys = new Uint32Array(cap);
    this.vals = new Array<T | typeof DELETED | undefined>(cap).fill(undefined);
    this.mask = cap - 1;
  }

  get size(): number {
    return this.live;
  }

  /** Fibonacci hashing: consecutive ids (the usual client) spread over the table. */
  private slot(id: number): number {
    return (Math.imul(id, 0x9e3779b1) >>> 0) & this.mask;
  }

  /** The slot holding `id`, or -1. */
  private find(id: number): number {
    id >>>= 0;
    const keys = this.keys;
    const vals = this.vals;
    for (let i = this.slot(id); ; i = (i + 1) & this.mask) {
      const v = vals[i];
      if (v === undefined) return -1;
      if (v !== DELETED && keys[i] === id) return i;
    }
  }

  get(id: number): T | undefined {
    const i = this.find(id);
    return i < 0 ? undefined : (this.vals[i] as T);
  }

  has(id: number): boolean {
    return this.get(id) !== undefined;
  }

  set(id: number, value: T): void {
    id >>>= 0;
    const keys = this.keys;
    const vals = this.vals;
    let free = -1;
    let i = this.slot(id);
    for (; ; i = (i + 1) & this.mask) {
      const v = vals[i];
      if (v === undefined) break;
      if (v === DELETED) {
        if (free < 0) free = i;
      } else if (keys[i] === id) {
        vals[i] = value;
        return;
      }
    }
    if (free >= 0) {
      i = free; // reuse a tombstone: `used` does not change
    } else {
      this.used++;
    }
    keys[i] = id;
    vals[i] = value;
    this.live++;
    // Keep at least half the slots never used, so probes stay short and always end.
    if (this.used * 2 > this.vals.length) this.rehash();
  }

  delete(id: number): boolean {
    const i = this.find(id);
    if (i < 0) return false;
    this.vals[i] = DELETED;
    this.live--;
    return true;
  }

  /** The values in no particular order (a copy: the caller may delete while it iterates). */
  values(): T[] {
    const out: T[] = [];
    for (const v of this.vals) if (v !== undefined && v !== DELETED) out.push(v);
    return out;
  }

  clear(): void {
    this.vals.fill(undefined);
    this.live = 0;
    this.used = 0;
  }

  /**
   * Drops the tombstones; doubles the table when live entries alone fill a
   * quarter of it. A same-size rehash (the steady state: ids keep changing,
   * the count in flight does not) reuses the previous arrays: no allocation.
   */
  private rehash(): void {
    const oldKeys = this.keys;
    const oldVals = this.vals;
    const grow = this.live * 4 > oldVals.length;
    const cap = grow ? oldVals.length * 2 : oldVals.length;
    if (!grow && this.spareVals !== null) {
      this.keys = this.spareKeys!; // emptied when it was set aside (below)
      this.vals = this.spareVals;
    } else {
      this.keys = new Uint32Array(cap);
      this.vals = new Array<T | typeof DELETED | undefined>(cap).fill(undefined);
    }
    this.spareKeys = grow ? null : oldKeys;
    this.spareVals = grow ? null : oldVals;
    this.mask = cap - 1;
    this.used = this.live;
    for (let j = 0; j < oldVals.length; j++) {
      const v = oldVals[j];
      if (v === undefined || v === DELETED) continue;
      const id = oldKeys[j]!;
      let i = this.slot(id);
      while (this.vals[i] !== undefined) i = (i + 1) & this.mask;
      this.keys[i] = id;
      this.vals[i] = v;
    }
    // The spare must not keep answered calls' values alive until the next rehash.
    if (!grow) oldVals.fill(undefined);
  }
}
