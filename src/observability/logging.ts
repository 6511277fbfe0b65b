/**
 * Logs: pino JSON lines on stderr (one line per event).
 *
 * Level: env PRISM_LOG_LEVEL, else PRISM_QUIET (→ warn, for tests and tools),
 * else `server.log_level` (default info). Events go through a synchronous
 * destination (rare, and must not be lost when the process exits); the access
 * log uses its own buffered destination, flushed on close. Event messages
 * pass through redactSecrets (src/core/redact.ts): a connection string a
 * driver or library put in an error never reaches the log with its password.
 */
import type { Logger, DestinationStream } from "pino";
import { requireCjs } from "../core/require-cjs.js";
import { redactSecrets } from "../core/redact.js";

const { pino } = requireCjs("pino") as typeof import("pino");

export type Level = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
const LEVELS: ReadonlySet<string> = new Set(["fatal", "error", "warn", "info", "debug", "trace", "silent"]);

/** The `(level, msg)` logger the rest of Prism takes. */
export type Log = (level: "info" | "warn" | "error", msg: string) => void;

/** Where JSON lines go instead of stderr (tests). */
export interface LogSink {
  write(line: string): unknown;
}

/** The effective level for a configured one (see the module comment for the order). */
export function resolveLevel(configured: Level = "info", env: NodeJS.ProcessEnv = process.env): Level {
  const fromEnv = env.PRISM_LOG_LEVEL?.toLowerCase();
  if (fromEnv !== undefined && LEVELS.has(fromEnv)) return fromEnv as Level;
  if (env.PRISM_QUIET) return "warn";
  return configured;
}

function baseBindings(): Record<string, unknown> {
  const b: Record<string, unknown> = { pid: process.pid };
  if (process.env.PRISM_WORKER_INDEX !== undefined) b.worker = Number(process.env.PRISM_WORKER_INDEX);
  return b;
}

export function createLogger(level: Level, sink?: LogSink, name?: string): Logger {
  const dest = (sink ?? pino.destination({ fd: 2, sync: true })) as DestinationStream;
  return pino({ level, base: baseBindings(), name, timestamp: pino.stdTimeFunctions.isoTime }, dest);
}

/** How often a quiet buffered logger still writes what it holds. */
const FLUSH_EVERY_MS = 1000;

/**
 * A buffered stderr logger for high-volume lines (the access log): writes in
 * 4 KiB chunks, and at least every second. close() writes the rest
 * synchronously (call it before exit).
 */
export function createBufferedLogger(level: Level, sink?: LogSink): { logger: Logger; close(): void } {
  if (sink !== undefined) return { logger: createLogger(level, sink, "access"), close: () => {} };
  const dest = pino.destination({ fd: 2, sync: false, minLength: 4096 });
  const logger = pino({ level, base: baseBindings(), name: "access", timestamp: pino.stdTimeFunctions.isoTime }, dest);
  // Flush only what was written since the last flush: an empty flush still
  // makes a write call, and an idle process should not allocate every second.
  let written = false;
  const write = dest.write.bind(dest);
  dest.write = (line: string) => {
    written = true;
    return write(line);
  };
  const timer = setInterval(() => {
    if (!written) return;
    written = false;
    dest.flush();
  }, FLUSH_EVERY_MS);
  timer.unref();
  return {
    logger,
    close: () => {
      clearInterval(timer);
      try {
        dest.flushSync();
      } catch {
        // not ready yet (nothing written) or the fd is gone
      }
    },
  };
}

/** Adapts a pino logger to Prism's `(level, msg)` Log. */
export function asLog(logger: Logger): Log {
  return (level, msg) => logger[level](redactSecrets(msg));
}

let processLogger: Logger | undefined;

/** The process-wide event logger behind `stderrLog` (created on first use). */
export function getProcessLogger(): Logger {
  return (processLogger ??= createLogger(resolveLevel()));
}

/** Applies `server.log_level` to the process logger (the env still wins). */
export function setProcessLogLevel(configured: Level): void {
  getProcessLogger().level = resolveLevel(configured);
}

/** Events as pino JSON lines on stderr (level: PRISM_LOG_LEVEL, PRISM_QUIET → warn, server.log_level). */
export const stderrLog: Log = (level, msg) => getProcessLogger()[level](redactSecrets(msg));
