/**
 * Options of the `sqlite` backend (its `backend:` block in prism.yaml, minus `type`).
 * Kept apart from the driver so that validating a config does not load the
 * driver, and a serving process never loads the validator (zod).
 */
import { z } from "zod";

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

/** Options that name a file: confined to server.data_dir (src/config/paths.ts). */
export const fileOptions = ["path"] as const;
