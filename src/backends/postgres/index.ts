/**
 * postgres: PostgreSQL through one pg.Pool per distinct backend block, plus
 * one dedicated LISTEN connection. KeyValue, Queue and Stream live in tables
 * of the configured schema (created and migrated on first use); PubSub and
 * long-poll wake-ups use LISTEN/NOTIFY.
 *
 *   backend: { type: postgres, url: "postgres://prism@db:5432/app", schema: prism, pool_max: 10 }
 *
 * Limits: a PubSub message travels in one NOTIFY (< 8000 bytes once encoded):
 * larger ones are refused with INVALID_ARGUMENT. Long polls wake on NOTIFY and
 * poll every 250 ms as a fallback. All time decisions use Prism's clock,
 * passed as query parameters (not now() in SQL).
 */
import type { PostgresOptions } from "./options.js";
import { INTERFACES } from "../../core/interfaces.js";
import type { BackendDriver } from "../driver.js";
import { PgInstance } from "./instance.js";

export { DEFAULT_URL } from "./options.js";

export type { PostgresOptions };

export const driver: BackendDriver<PostgresOptions> = {
  type: "postgres",
  description: "PostgreSQL (pg pool): durable keyvalue, queue (SKIP LOCKED) and stream tables; pubsub over LISTEN/NOTIFY",
  interfaces: INTERFACES,
  properties: {
    // Committed transactions survive restarts; bytea holds up to 1 GB. PubSub is LISTEN/NOTIFY: not stored, 8000-byte payloads.
    keyvalue: { durable: true, consistency: "strong", maxValueBytes: 1_000_000_000, latencyP99Ms: 3, throughputRps: 80_000, measured: "bench ws-kv-get-postgres (README table: 80.3K/s, p99 2.11 ms)" },
    pubsub: { durable: false, ordering: true, delivery: ["at-most-once"], maxValueBytes: 8000 },
    queue: { durable: true, ordering: true, delivery: ["at-least-once"], consistency: "strong", maxValueBytes: 1_000_000_000 },
    stream: { durable: true, ttl: true, ordering: true, delivery: ["at-least-once"], consistency: "strong", maxValueBytes: 1_000_000_000 },
  },
  create(options, ctx) {
    return new PgInstance(
      { url: options.url, schema: options.schema, poolMax: options.pool_max, connectTimeoutMs: options.connect_timeout_ms },
      ctx,
    );
  },
};
