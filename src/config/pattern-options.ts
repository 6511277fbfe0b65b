/** Each pattern's `options:` block: its schema, defaults applied at load. Patterns without settings refuse any. */
import { z } from "zod";
import { CACHE_ASIDE_DEFAULTS } from "../patterns/cache-aside.js";

const SCHEMAS: Record<string, z.ZodType<Record<string, unknown>>> = {
  "cache-aside": z
    .object({
      /** How long a filled copy lives in the cache. */
      ttl_seconds: z.number().int().positive().max(30 * 24 * 3600).default(CACHE_ASIDE_DEFAULTS.ttlSeconds),
      /** invalidate: a write deletes the cached copy; through: it replaces it. */
      write: z.enum(["invalidate", "through"]).default(CACHE_ASIDE_DEFAULTS.write),
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
