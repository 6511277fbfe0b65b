/**
 * Options of the `kafka` backend (its `backend:` block in prism.yaml, minus `type`).
 * Kept apart from the driver so that validating a config does not load the
 * driver, and a serving process never loads the validator (zod).
 */
import { z } from "zod";

const broker = z.string().regex(/^[A-Za-z0-9.\-_[\]:]+:\d{1,5}$/, 'must be "host:port"');

export const optionsSchema = z
  .object({
    brokers: z.union([broker.transform((b) => [b]), z.array(broker).min(1)]).default(["127.0.0.1:9092"]),
    client_id: z.string().min(1).max(255).default("prism"),
    /** First part of every topic and group name; lets several Prism deployments share one cluster. */
    prefix: z
      .string()
      .regex(/^[A-Za-z0-9-]{1,64}$/, "must be 1-64 of A-Z a-z 0-9 -")
      .default("prism"),
    /** -1: the broker's default.replication.factor. */
    replication_factor: z.number().int().min(-1).max(32).default(-1),
    connect_timeout_ms: z.number().int().positive().max(60_000).default(3000),
    request_timeout_ms: z.number().int().positive().max(120_000).default(30_000),
    /** Retries of one request before it fails with UNAVAILABLE. */
    retries: z.number().int().min(0).max(10).default(2),
    ssl: z.boolean().default(false),
    sasl: z
      .object({
        mechanism: z.enum(["plain", "scram-sha-256", "scram-sha-512"]),
        username: z.string(),
        password: z.string(),
      })
      .strict()
      .optional(),
  })
  .strict();

export type KafkaOptions = z.output<typeof optionsSchema>;
