/** Each pattern's `options:` block: its schema, defaults applied at load. Patterns without settings refuse any. */
import { z } from "zod";
import { CACHE_ASIDE_DEFAULTS } from "../patterns/cache-aside.js";
import { OUTBOX_DEFAULTS } from "../patterns/outbox.js";

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
