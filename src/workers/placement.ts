/**
 * Which worker owns a namespace's state. Embedded backends keep their state
 * inside one process, so exactly one worker may hold it; networked backends
 * are their own coherence point and every worker talks to them directly.
 * A namespace with any slot on an embedded backend is owned by one worker.
 */
import type { Placement } from "../router/router.js";
import type { ResolvedNamespace } from "../config/resolve.js";

/** Backends whose state lives in the process that opened them. */
export const EMBEDDED_BACKENDS: ReadonlySet<string> = new Set(["memstore", "sqlite"]);

/** FNV-1a over the name's UTF-16 code units: stable across processes and restarts. */
export function ownerOf(namespace: string, workers: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < namespace.length; i++) {
    h ^= namespace.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % workers;
}

export function isEmbedded(r: ResolvedNamespace): boolean {
  return r.slots.some((s) => EMBEDDED_BACKENDS.has(s.type));
}

/** The placement of worker `self` among `workers`: the owner's index, or undefined when the call is served here. */
export function workerPlacement(self: number, workers: number): Placement {
  return (r: ResolvedNamespace) => {
    if (workers <= 1 || !isEmbedded(r)) return undefined;
    const owner = ownerOf(r.config.name, workers);
    return owner === self ? undefined : owner;
  };
}
