/**
 * Options of the `postgres` backend (its `backend:` block in prism.yaml, minus `type`).
 * Kept apart from the driver so that validating a config does not load the
 * driver, and a serving process never loads the validator (zod).
 */
import { z } from "zod";

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

/** Query parameters of `url` that name files (pg reads them when connecting): confined to server.data_dir (src/config/paths.ts). */
export const fileUrlParams = { url: ["sslcert", "sslkey", "sslrootcert"] } as const;
