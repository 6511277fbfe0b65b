/** A tiny typed event emitter (no dependency on node:events, so it also types cleanly for consumers). */
export type Listener<A extends unknown[]> = (...args: A) => void;

/** @internal */
export class Emitter<E extends Record<string, unknown[]>> {
  private readonly listeners: { [K in keyof E]?: Listener<E[K]>[] } = {};

  on<K extends keyof E>(event: K, fn: Listener<E[K]>): this {
    (this.listeners[event] ??= []).push(fn);
    return this;
  }

  off<K extends keyof E>(event: K, fn: Listener<E[K]>): this {
    const l = this.listeners[event];
    if (l) this.listeners[event] = l.filter((f) => f !== fn);
    return this;
  }

  once<K extends keyof E>(event: K, fn: Listener<E[K]>): this {
    const w: Listener<E[K]> = (...args) => {
      this.off(event, w);
      fn(...args);
    };
    return this.on(event, w);
  }

  /** Calls every listener; a throwing listener does not stop the others (its error is reported asynchronously). */
  emit<K extends keyof E>(event: K, ...args: E[K]): void {
    const l = this.listeners[event];
    if (!l) return;
    for (const fn of [...l]) {
      try {
        fn(...args);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }
}
