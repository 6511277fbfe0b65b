/**
 * sqlite: an embedded, durable backend in one file (better-sqlite3, WAL).
 * KeyValue, Queue and Stream live in the file and survive restarts; PubSub is
 * in-process fan-out (LocalPubSub): messages are not persisted, and delivery
 * across workers is handled above the driver.
 *
 *   backend: { type: sqlite, path: /var/lib/prism/data.db, busy_timeout_ms: 5000, synchronous: full }
 *
 * `path: ":memory:"` gives a private, non-durable database (tests).
 * All time decisions use the injected clock.
 */
import { z } from "zod";
import { INTERFACES } from "../../core/interfaces.js";
import type { BackendDriver } from "../driver.js";
import { SqliteInstance } from "./instance.js";

export const optionsSchema = z
  .object({
    /** The database file (created if missing); ":memory:" for a throwaway database. */
    path: z.string().min(1),
    /** How long a write waits for another process's lock before UNAVAILABLE. Default 5000. */
    busy_timeout_ms: z.number().int().nonnegative().max(60_000).optional(),
    /**
     * full (default): every acknowledged write is fsynced (survives power loss).
     * normal: survives a process crash, may lose the last writes on power loss; faster.
     */
    synchronous: z.enum(["full", "normal"]).optional(),
  })
  .strict();

export type SqliteOptions = z.infer<typeof optionsSchema>;

export const driver: BackendDriver<SqliteOptions> = {
  type: "sqlite",
  description: "embedded SQLite file (WAL): durable keyvalue, queue and stream; in-process pubsub",
  interfaces: INTERFACES,
  optionsSchema,
  create(options, ctx) {
    return new SqliteInstance(
      { path: options.path, busyTimeoutMs: options.busy_timeout_ms ?? 5000, synchronous: options.synchronous ?? "full" },
      ctx,
    );
  },
};
