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
import type { SqliteOptions } from "./options.js";
import { INTERFACES } from "../../core/interfaces.js";
import type { BackendDriver } from "../driver.js";
import { SqliteInstance } from "./instance.js";

export type { SqliteOptions };

export const driver: BackendDriver<SqliteOptions> = {
  type: "sqlite",
  description: "embedded SQLite file (WAL): durable keyvalue, queue and stream; in-process pubsub",
  interfaces: INTERFACES,
  properties: {
    // One file, fsynced on every acknowledged write (synchronous: full, the default). SQLite's own value ceiling is 1 GB.
    keyvalue: { durable: true, consistency: "strong", maxValueBytes: 1_000_000_000 },
    pubsub: { durable: false, ordering: true, delivery: ["at-most-once"], maxValueBytes: 1_000_000_000 },
    queue: { durable: true, ordering: true, delivery: ["at-least-once"], consistency: "strong", maxValueBytes: 1_000_000_000 },
    stream: { durable: true, ttl: true, ordering: true, delivery: ["at-least-once"], consistency: "strong", maxValueBytes: 1_000_000_000 },
  },
  create(options, ctx) {
    return new SqliteInstance(
      { path: options.path, busyTimeoutMs: options.busy_timeout_ms ?? 5000, synchronous: options.synchronous ?? "full" },
      ctx,
    );
  },
};
