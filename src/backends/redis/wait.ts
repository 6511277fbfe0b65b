/** Polling for long polls and blocking group reads: never blocks a shared connection. */

/** Sleeps ms, or less when the signal aborts. Resolves false once aborted. */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve(!signal?.aborted);
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Calls attempt until it returns a non-empty array, waitMs (real time)
 * passes or the signal aborts; backs off from 25 to 200 ms between attempts.
 */
export async function poll<T>(attempt: () => Promise<T[]>, waitMs: number, signal?: AbortSignal): Promise<T[]> {
  let out = await attempt();
  if (out.length || waitMs <= 0) return out;
  const end = Date.now() + waitMs;
  let delay = 25;
  for (;;) {
    const left = end - Date.now();
    if (left <= 0) return out;
    if (!(await sleep(Math.min(delay, left), signal))) return [];
    out = await attempt();
    if (out.length) return out;
    delay = Math.min(delay * 2, 200);
  }
}
