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
import { z } from "zod";
import { INTERFACES } from "../../core/interfaces.js";
import type { BackendDriver } from "../driver.js";
import { PgInstance } from "./instance.js";

export const DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/test";

export const optionsSchema = z
  .object({
    /** A libpq-style connection string. */
    url: z.string().min(1).default(DEFAULT_URL),
    /** The schema holding Prism's tables (created if missing). Several Prism clusters can share a database with different schemas. */
    schema: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, "must be a plain identifier: 1-63 of A-Z a-z 0-9 _, not starting with a digit")
      .default("prism"),
    /** Pool size for queries (the listen connection comes on top). */
    pool_max: z.number().int().min(1).max(1000).default(10),
    /** How long opening a connection may take before the call fails with UNAVAILABLE. */
    connect_timeout_ms: z.number().int().min(100).max(60_000).default(5_000),
  })
  .strict();

export type PostgresOptions = z.infer<typeof optionsSchema>;

export const driver: BackendDriver<PostgresOptions> = {
  type: "postgres",
  description: "PostgreSQL (pg pool): durable keyvalue, queue (SKIP LOCKED) and stream tables; pubsub over LISTEN/NOTIFY",
  interfaces: INTERFACES,
  optionsSchema,
  create(options, ctx) {
    return new PgInstance(
      { url: options.url, schema: options.schema, poolMax: options.pool_max, connectTimeoutMs: options.connect_timeout_ms },
      ctx,
    );
  },
};
