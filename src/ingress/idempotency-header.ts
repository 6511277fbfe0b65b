/**
 * HTTP's `Idempotency-Key` header: the request field `idempotency_key` of the
 * keyed writes (Set, Delete, Publish, Enqueue, Append) for HTTP callers. The
 * field in a JSON body wins when both are the same; different values, or the
 * header on a method without the field, are refused (never silently ignored).
 */
import { errors } from "../core/errors.js";

export const IDEMPOTENCY_HEADER = "idempotency-key";

const KEYED = new Set(["SetRequest", "DeleteRequest", "PublishRequest", "EnqueueRequest", "AppendRequest"]);

/** True for the requests that carry idempotency_key (the OpenAPI document lists the header on them). */
export function takesIdempotencyKey(requestTypeName: string): boolean {
  return KEYED.has(requestTypeName.replace(/^\.?prism\.v1\./, ""));
}

/** Sets req.idempotencyKey from the header value (undefined: no header). */
export function applyIdempotencyHeader(header: string | undefined, requestTypeName: string, req: { idempotencyKey?: string | null }): void {
  if (header === undefined) return;
  const name = requestTypeName.replace(/^\.?prism\.v1\./, "");
  if (!KEYED.has(name)) throw errors.invalidArgument("Idempotency-Key", `${name} takes no idempotency key (only Set, Delete, Publish, Enqueue and Append do)`);
  const key = header.trim();
  if (!key) throw errors.invalidArgument("Idempotency-Key", "must not be empty");
  if (req.idempotencyKey && req.idempotencyKey !== key) throw errors.invalidArgument("Idempotency-Key", "differs from the body's idempotency_key");
  req.idempotencyKey = key;
}
