/**
 * CommonJS packages on the serving path (ws, pino, prom-client, protobufjs)
 * are loaded with require(), not import. When an ES module imports a CommonJS
 * file, Node 20 first scans its source for export names with cjs-module-lexer's
 * JavaScript build; with a dozen such files at start-up that scanner gets hot
 * enough for V8 to optimize it on a background thread, and that one compile
 * leaves a 2.5-4 MB glibc arena resident for the life of the process: idle
 * RSS of `--workers 1` was 56.7-60.0 MB over 8 runs, 55.4-55.7 MB once these
 * packages were require()d (V8 pool size 1 in both). require() skips the scan,
 * and start-up skips a 46 ms optimizing compile.
 * Types still come from the packages: `requireCjs("ws") as typeof import("ws")`.
 */
import { createRequire } from "node:module";

export const requireCjs = createRequire(import.meta.url);
