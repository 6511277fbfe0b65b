/** Each pattern's `options:` block: its schema, defaults applied at load. Patterns without settings refuse any. */
import { z } from "zod";
import { CACHE_ASIDE_DEFAULTS } from "../patterns/cache-aside.js";
import { OUTBOX_DEFAULTS } from "../patterns/outbox.js";
import { CLAIM_CHECK_DEFAULTS } from "../patterns/claim-check.js";

const SCHEMAS: Record<string, z.ZodType<Record<string, unknown>>> = {
  "cache-aside": z
    .object({
      /** How long a filled copy lives in the cache. */
      ttl_seconds: z.number().int().positive().max(30 * 24 * 3600).default(CACHE_ASIDE_DEFAULTS.ttlSeconds),
      /** invalidate: a write deletes the cached copy; through: it replaces it. */
      write: z.enum(["invalidate", "through"]).default(CACHE_ASIDE_DEFAULTS.write),
    })
    .strict(),
  outbox: z
    .object({
      /** pubsub: the relay publishes (topic = the message's topic); queue: it enqueues (topic = the queue name). */
      deliver_to: z.enum(["pubsub", "queue"]).default(OUTBOX_DEFAULTS.deliverTo),
      /** How often the relay looks for messages committed by other processes (its own commits wake it at once). */
      poll_interval_ms: z.number().int().min(10).max(60_000).default(OUTBOX_DEFAULTS.pollIntervalMs),
      /** How long sent messages stay in the outbox table before they are deleted (0: at the next cleanup). */
      keep_sent_seconds: z.number().int().min(0).max(30 * 24 * 3600).default(OUTBOX_DEFAULTS.keepSentSeconds),
      /** When set, each delivered message also carries this attribute holding its outbox id (increasing per namespace), for consumers that drop duplicates. */
      id_attribute: z.string().min(1).max(256).optional(),
    })
    .strict(),
  "multicast-registry": z
    .object({
      /** pubsub: multicasts reach live subscribers only (at most once); queue: one queue per member, kept while it is offline (at least once). */
      delivery: z.enum(["pubsub", "queue"]).default("pubsub"),
    })
    .strict(),
  "claim-check": z
    .object({
      /** What the messages slot serves, and so the namespace: queue (default), keyvalue, stream or pubsub. */
      fronts: z.enum(["queue", "keyvalue", "stream", "pubsub"]).default(CLAIM_CHECK_DEFAULTS.fronts),
      /** Values and messages above this many bytes are stored in the payloads slot (default 1 MiB). */
      threshold_bytes: z.number().int().min(0).max(1 << 30).default(CLAIM_CHECK_DEFAULTS.thresholdBytes),
      /** Claims up to this size are handed back inline by Get, Dequeue, Read, ReadGroup and subscriptions (default 8 MiB); larger ones are streamed with ClaimCheck.Get. */
      inline_max_bytes: z.number().int().min(0).max(1 << 30).default(CLAIM_CHECK_DEFAULTS.inlineMaxBytes),
      /** Largest payload ClaimCheck.Put accepts (default 5 GiB). */
      max_payload_bytes: z.number().int().positive().max(5 * 1024 ** 4).default(CLAIM_CHECK_DEFAULTS.maxPayloadBytes),
      /** How long a message's payload is kept (queue, stream, pubsub; 0: until deleted). Keys' payloads live as long as the key holds the claim. */
      payload_ttl_seconds: z.number().int().min(0).default(CLAIM_CHECK_DEFAULTS.payloadTtlSeconds),
      /** How often the sweeper looks for orphaned and expired payloads (0: never). */
      sweep_interval_ms: z.number().int().min(0).default(CLAIM_CHECK_DEFAULTS.sweepIntervalMs),
      /** An orphan (incomplete upload, a key's payload the key no longer holds) is deleted only after this long. */
      orphan_grace_seconds: z.number().int().min(0).default(CLAIM_CHECK_DEFAULTS.orphanGraceSeconds),
    })
    .strict(),
};

/** The validated options, or zod issues (paths relative to `options`). */
export function parsePatternOptions(pattern: string | undefined, raw: Record<string, unknown> | undefined):
  | { ok: true; options: Record<string, unknown> | undefined }
  | { ok: false; issues: { path: readonly PropertyKey[]; message: string }[] } {
  const schema = pattern ? SCHEMAS[pattern] : undefined;
  if (!schema) {
    if (raw === undefined || Object.keys(raw).length === 0) return { ok: true, options: raw };
    return { ok: false, issues: [{ path: [], message: `${pattern ? `pattern ${pattern}` : "a namespace without a pattern"} takes no options` }] };
  }
  const r = schema.safeParse(raw ?? {});
  return r.success ? { ok: true, options: r.data } : { ok: false, issues: r.error.issues };
}
