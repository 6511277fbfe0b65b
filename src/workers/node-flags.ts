/**
 * Node flags every serving process starts with: cluster workers get them from
 * the primary, and `npm start` passes them to a single-process server
 * (package.json; a unit test keeps the two in step).
 *
 * --v8-pool-size=1: one V8 background thread instead of four. Each thread that
 * runs a concurrent compile or GC task gets its own glibc malloc arena, and
 * the freed part of an arena stays resident: 2-5 MB per idle process, varying
 * from run to run. Measured idle RSS (settled, memstore): 56.8-56.9 MB per
 * cluster worker instead of 55.7-59.8 (with MALLOC_ARENA_MAX=1, which only
 * moved the fragmentation into the main arena) and 56.8-59.7 MB for
 * `--workers 1` instead of 60.9-63.1. One background thread is also what a
 * worker should use when there is one worker per core.
 */
export const SERVER_NODE_FLAGS: readonly string[] = ["--v8-pool-size=1"];

/** The flags to add to `execArgv`: the ones it does not already set (the user's value wins). */
export function serverNodeFlags(execArgv: readonly string[]): string[] {
  return SERVER_NODE_FLAGS.filter((f) => {
    const name = f.split("=")[0]!;
    return !execArgv.some((a) => a === name || a.startsWith(`${name}=`));
  });
}
