/**
 * Options of the `memstore` backend (its `backend:` block in prism.yaml, minus `type`).
 * Kept apart from the driver so that validating a config does not load the
 * driver, and a serving process never loads the validator (zod).
 */
import { z } from "zod";

export const optionsSchema = z
  .object({
    /** How often expired keys are removed from memory (they are invisible from their expiry on regardless). */
    sweep_interval_ms: z.number().int().min(10).max(3_600_000).optional(),
  })
  .strict();
export type MemstoreOptions = z.infer<typeof optionsSchema>;
