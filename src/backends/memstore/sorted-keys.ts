/**
 * The ordered key index behind Scan: a list of sorted chunks (the layout of
 * Python's sortedcontainers). Insert and remove cost a binary search plus a
 * splice inside one chunk of at most 2*LOAD keys, so a million keys never
 * means a million-element memmove. Gets and sets of existing keys never touch
 * it; only key creation and removal do.
 *
 * Order: UTF-8 byte order (= Unicode code point order), the order SQL
 * backends give for BLOB/bytea keys. It differs from JS `<` (UTF-16 code
 * units) only for characters above U+FFFF versus U+E000..U+FFFF.
 */
const LOAD = 512;

/** Compares two strings by their UTF-8 bytes without encoding them. */
export function compareUtf8(a: string, b: string): number {
  const n = a.length < b.length ? a.length : b.length;
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x !== y) {
      // Surrogates (code points >= U+10000) must sort after U+E000..U+FFFF.
      if (x >= 0xd800 && y >= 0xd800) {
        x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
        y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
      }
      return x - y;
    }
  }
  return a.length - b.length;
}

/** First index whose element is >= key (or > key when `after`). */
function bound(arr: readonly string[], key: string, after: boolean): number {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const c = compareUtf8(arr[mid]!, key);
    if (c < 0 || (after && c === 0)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class SortedKeys {
  private readonly chunks: string[][] = [];
  /** Last (largest) key of each chunk. */
  private readonly maxes: string[] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Adds a key the caller knows is absent. */
  insert(key: string): void {
    this.count++;
    if (this.chunks.length === 0) {
      this.chunks.push([key]);
      this.maxes.push(key);
      return;
    }
    let ci = bound(this.maxes, key, false);
    if (ci === this.chunks.length) ci--;
    const chunk = this.chunks[ci]!;
    chunk.splice(bound(chunk, key, false), 0, key);
    if (chunk.length > 2 * LOAD) {
      const tail = chunk.splice(LOAD);
      this.chunks.splice(ci + 1, 0, tail);
      this.maxes.splice(ci + 1, 0, tail[tail.length - 1]!);
    }
    this.maxes[ci] = chunk[chunk.length - 1]!;
  }

  /** Removes a key; false when it was not there. */
  remove(key: string): boolean {
    const ci = bound(this.maxes, key, false);
    if (ci === this.chunks.length) return false;
    const chunk = this.chunks[ci]!;
    const pos = bound(chunk, key, false);
    if (chunk[pos] !== key) return false;
    this.count--;
    chunk.splice(pos, 1);
    if (chunk.length === 0) {
      this.chunks.splice(ci, 1);
      this.maxes.splice(ci, 1);
    } else {
      this.maxes[ci] = chunk[chunk.length - 1]!;
    }
    return true;
  }

  /** Keys in order, starting at `from` (strictly after it when `after`). Do not mutate while iterating. */
  *from(from: string, after: boolean): Generator<string, void, undefined> {
    let ci = bound(this.maxes, from, after);
    if (ci === this.chunks.length) return;
    let pos = bound(this.chunks[ci]!, from, after);
    for (; ci < this.chunks.length; ci++, pos = 0) {
      const chunk = this.chunks[ci]!;
      for (; pos < chunk.length; pos++) yield chunk[pos]!;
    }
  }

  clear(): void {
    this.chunks.length = 0;
    this.maxes.length = 0;
    this.count = 0;
  }
}
