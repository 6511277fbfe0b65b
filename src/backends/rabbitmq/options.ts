/**
 * Options of the `rabbitmq` backend (its `backend:` block in prism.yaml, minus `type`).
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
    url: z.string().regex(/^amqps?:\/\//, "must be an amqp:// or amqps:// URL").superRefine(urlCredentials).default("amqp://guest:guest@127.0.0.1:5672"),
    /** First part of every queue and exchange name; lets several Prism deployments share one vhost. */
    prefix: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/, "must be 1-64 of A-Z a-z 0-9 _ -")
      .default("prism"),
    connect_timeout_ms: z.number().int().positive().max(60_000).default(3000),
    max_backoff_ms: z.number().int().positive().max(60_000).default(5000),
  })
  .strict();

export type RabbitOptions = z.output<typeof optionsSchema>;
