/**
 * Options of the `redis` backend (its `backend:` block in prism.yaml, minus `type`).
 * Kept apart from the driver so that validating a config does not load the
 * driver, and a serving process never loads the validator (zod).
 */
import { z } from "zod";
import { checkUrlCredentials } from "../../core/redact.js";

/** Unencoded "/", "?", "#" in the URL's user or password are refused, naming the field (src/core/redact.ts explains why). */
function urlCredentials(v: string, ctx: z.RefinementCtx): void {
  const problem = checkUrlCredentials(v);
  if (problem !== undefined) ctx.addIssue({ code: "custom", message: problem });
}

export const optionsSchema = z
  .object({
    url: z.string().regex(/^rediss?:\/\//, "must be a redis:// or rediss:// URL").superRefine(urlCredentials).default("redis://127.0.0.1:6379"),
    /** First part of every key; lets several Prism deployments share one Redis. */
    key_prefix: z
      .string()
      .regex(/^[A-Za-z0-9_.:-]{1,64}$/, "must be 1-64 of A-Z a-z 0-9 _ . : -")
      .default("prism"),
    db: z.number().int().min(0).max(255).optional(),
  })
  .strict();

export type RedisOptions = z.output<typeof optionsSchema>;
