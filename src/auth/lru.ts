/**
 * A bounded map with approximately-least-recently-used eviction ("second
 * chance", CLOCK) and a per-entry expiry (ms since the epoch), on a Map's
 * insertion order. A hit only marks the entry (moving it to the back of the
 * Map on every hit cost ~0.3 µs, most of the auth hot path); when the map is
 * full, marked entries at the front get one more round, the first unmarked one
 * is dropped.
 */
interface Entry<V> {
  value: V;
  expires: number;
  hit: boolean;
}

export class ExpiringLru<V> {
  private readonly map = new Map<string, Entry<V>>();
  constructor(private readonly max: number) {}

  get size(): number {
    return this.map.size;
  }

  /** The live value, or undefined (absent or expired at `now`). */
  get(key: string, now: number): V | undefined {
    const e = this.map.get(key);
    if (e === undefined) return undefined;
    if (now >= e.expires) {
      this.map.delete(key);
      return undefined;
    }
    e.hit = true;
    return e.value;
  }

  set(key: string, value: V, expires: number): void {
    if (this.max <= 0) return;
    this.map.delete(key);
    if (this.map.size >= this.max) this.evictOne();
    this.map.set(key, { value, expires, hit: false });
  }

  private evictOne(): void {
    // Each marked entry is moved back once (unmarked); at most size moves before an unmarked one comes up.
    let chances = this.map.size;
    for (const [k, e] of this.map) {
      this.map.delete(k);
      if (e.hit && chances-- > 0) {
        e.hit = false;
        this.map.set(k, e);
        continue;
      }
      return;
    }
  }

  clear(): void {
    this.map.clear();
  }
}

/**
 * Date.now() read at most once per event-loop turn (it costs ~0.1 µs here):
 * token expiry is checked against the time the turn started.
 */
let turnTime = 0;
let turnFresh = false;
const endTurn = () => {
  turnFresh = false;
};
export function turnNow(): number {
  if (!turnFresh) {
    turnTime = Date.now();
    turnFresh = true;
    setImmediate(endTurn);
  }
  return turnTime;
}
