/**
 * In-process wake-ups for a long poll that otherwise polls (the Redis queue):
 * a write of this process wakes as many sleeping waiters of its key as can
 * take the rows it wrote (by the capacity each one sleeps with), oldest
 * first, so a Dequeue waiting in the same process answers right after the
 * Enqueue instead of at its next poll. Writes of other processes are still
 * found by the caller's polling.
 */

interface Sleeper {
  capacity: number;
  wake: () => void;
}

export class LocalWake {
  private readonly byKey = new Map<string, Set<Sleeper>>();
  /** Bumped by every notify: a waiter whose attempt started before one does not go to sleep. */
  private gen = 0;

  generation(): number {
    return this.gen;
  }

  notify(key: string, rows = Infinity): void {
    this.gen++;
    const set = this.byKey.get(key);
    if (!set) return;
    for (const s of set) {
      if (rows <= 0) break;
      set.delete(s);
      s.wake();
      rows -= s.capacity;
    }
    if (set.size === 0) this.byKey.delete(key);
  }

  /**
   * Sleeps up to ms, until notify(key) wakes it, or until the signal aborts;
   * returns at once when a notify happened since generation `since`.
   * Resolves false once aborted.
   */
  sleep(key: string, ms: number, capacity: number, since: number, signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) return Promise.resolve(false);
    if (this.gen !== since) return Promise.resolve(true);
    return new Promise((resolve) => {
      let set = this.byKey.get(key);
      if (!set) this.byKey.set(key, (set = new Set()));
      const done = (): void => {
        clearTimeout(t);
        signal?.removeEventListener("abort", done);
        const s = this.byKey.get(key);
        if (s?.delete(me) && s.size === 0) this.byKey.delete(key);
        resolve(!signal?.aborted);
      };
      const me: Sleeper = { capacity, wake: done };
      const t = setTimeout(done, ms);
      signal?.addEventListener("abort", done, { once: true });
      set.add(me);
    });
  }
}
