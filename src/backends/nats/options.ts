/**
 * Options of the `nats` backend (its `backend:` block in prism.yaml, minus `type`).
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

const SERVER = z.string().regex(/^(nats|tls|wss?):\/\/[^\s]+$|^[^\s:/]+(:\d+)?$/, "must be a nats:// URL or host:port").superRefine(urlCredentials);

export const optionsSchema = z
  .object({
    servers: z.union([SERVER, z.array(SERVER).min(1)]).default("nats://127.0.0.1:4222"),
    /** First token of every subject and stream name: lets several Prism deployments share one NATS. */
    prefix: z
      .string()
      .regex(/^[A-Za-z0-9-]{1,32}$/, "must be 1-32 of A-Z a-z 0-9 -")
      .default("prism"),
    user: z.string().optional(),
    pass: z.string().optional(),
    token: z.string().optional(),
  })
  .strict();

export type NatsOptions = z.output<typeof optionsSchema>;
