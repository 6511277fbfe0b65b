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
    /**
     * TLS (rediss:// URLs): PEM files of the CA that signed Redis's certificate (default: the system
     * roots) and, for Redis with tls-auth-clients, this client's certificate and key. Paths resolve
     * inside server.data_dir unless server.allowed_paths lists them.
     */
    tls_ca_file: z.string().min(1).optional(),
    tls_cert_file: z.string().min(1).optional(),
    tls_key_file: z.string().min(1).optional(),
    /** The name Redis's certificate is checked against (default: the URL's host). */
    tls_servername: z.string().min(1).optional(),
  })
  .strict()
  .superRefine((o, ctx) => {
    const tlsSet = ["tls_ca_file", "tls_cert_file", "tls_key_file", "tls_servername"].filter((k) => o[k as keyof typeof o] !== undefined);
    if (tlsSet.length > 0 && !o.url.startsWith("rediss://")) ctx.addIssue({ code: "custom", path: [tlsSet[0]!], message: "TLS options need a rediss:// URL" });
    if ((o.tls_cert_file === undefined) !== (o.tls_key_file === undefined)) ctx.addIssue({ code: "custom", path: [o.tls_cert_file === undefined ? "tls_cert_file" : "tls_key_file"], message: "tls_cert_file and tls_key_file go together" });
  });

/** Options naming files: confined to server.data_dir (src/config/paths.ts). */
export const fileOptions = ["tls_ca_file", "tls_cert_file", "tls_key_file"] as const;

export type RedisOptions = z.output<typeof optionsSchema>;
