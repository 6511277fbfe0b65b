/**
 * A binary min-heap whose items remember their own position, so an item can
 * be removed or re-keyed in O(log n) without a search. Used for TTL expiry
 * (one entry per expiring key) and queue due times (one entry per message).
 */
export interface HeapItem {
  /** Position in the heap; -1 when not in it. Owned by the heap. */
  heapIdx: number;
}

export class IndexedHeap<T extends HeapItem> {
  private readonly a: T[] = [];

  /** `less(x, y)`: x comes out before y. */
  constructor(private readonly less: (x: T, y: T) => boolean) {}

  get size(): number {
    return this.a.length;
  }

  peek(): T | undefined {
    return this.a[0];
  }

  push(item: T): void {
    item.heapIdx = this.a.length;
    this.a.push(item);
    this.up(item.heapIdx);
  }

  pop(): T | undefined {
    const top = this.a[0];
    if (top) this.remove(top);
    return top;
  }

  /** Removes the item if it is in the heap. */
  remove(item: T): void {
    const i = item.heapIdx;
    if (i < 0) return;
    const last = this.a.pop()!;
    item.heapIdx = -1;
    if (last !== item) {
      this.a[i] = last;
      last.heapIdx = i;
      this.fix(i);
    }
  }

  /** Re-positions an item whose key changed, or inserts it when absent. */
  update(item: T): void {
    if (item.heapIdx < 0) this.push(item);
    else this.fix(item.heapIdx);
  }

  /** Every item, in no particular order (close / tests). */
  items(): readonly T[] {
    return this.a;
  }

  clear(): void {
    for (const it of this.a) it.heapIdx = -1;
    this.a.length = 0;
  }

  private fix(i: number): void {
    if (i > 0 && this.less(this.a[i]!, this.a[(i - 1) >> 1]!)) this.up(i);
    else this.down(i);
  }

  private up(i: number): void {
    const a = this.a;
    const item = a[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = a[p]!;
      if (!this.less(item, parent)) break;
      a[i] = parent;
      parent.heapIdx = i;
      i = p;
    }
    a[i] = item;
    item.heapIdx = i;
  }

  private down(i: number): void {
    const a = this.a;
    const n = a.length;
    const item = a[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.less(a[r]!, a[l]!) ? r : l;
      const child = a[c]!;
      if (!this.less(child, item)) break;
      a[i] = child;
      child.heapIdx = i;
      i = c;
    }
    a[i] = item;
    item.heapIdx = i;
  }
}
