/**
 * Idempotency keys on Set, Delete, Publish, Enqueue and Append (the
 * *_idempotent interfaces). The primitive layer checks the key, scopes it,
 * hashes the request and compares the hash of a replayed record; the store
 * keeps the record (src/backends/driver.ts, IdempotencyToken).
 *
 * Scope: namespace (the store is the namespace's) + operation + target
 * (queue, topic or stream name; "" for KeyValue, so a KeyValue key is one per
 * namespace and operation, whatever key it writes). The request hash covers
 * everything that shapes the effect (target, KeyValue key, value or payload,
 * attributes as the caller sent them, TTL, CAS options, delay), so the same
 * idempotency key on a different request is refused with FAILED_PRECONDITION
 * (PRISM_ERR_IDEMPOTENCY_KEY_REUSED) instead of answering for another request.
 */
import { createHash } from "node:crypto";
import { Code, errors, PrismError } from "../core/errors.js";
import type { InterfaceName } from "../core/interfaces.js";
import type { IdempotencyToken, Once } from "../backends/driver.js";
import type { NamespaceRuntime } from "../router/router.js";
import { requireInterface } from "./validate.js";

export const MAX_IDEMPOTENCY_KEY_BYTES = 255;
export const DEFAULT_IDEMPOTENCY_WINDOW_SECONDS = 86400;

export type IdempotentOp = "set" | "delete" | "publish" | "enqueue" | "append";

/** One part of a request, as hashed: strings, numbers, booleans, bytes, string maps (keys sorted). */
type Part = string | number | boolean | undefined | null | Uint8Array | Record<string, string>;

function hashParts(parts: readonly Part[]): string {
  const h = createHash("sha256");
  for (const p of parts) {
    // Each part is tagged and length-prefixed, so no two requests hash alike by concatenation.
    if (p instanceof Uint8Array) {
      h.update(`b${p.length}:`);
      h.update(p);
    } else if (p !== null && typeof p === "object") {
      const keys = Object.keys(p).sort();
      const s = JSON.stringify(keys.map((k) => [k, p[k]]));
      h.update(`m${Buffer.byteLength(s)}:${s}`);
    } else {
      const s = p === undefined || p === null ? "" : String(p);
      h.update(`${typeof p === "object" ? "u" : (typeof p)[0]}${Buffer.byteLength(s)}:${s}`);
    }
  }
  return h.digest("base64url");
}

/**
 * The token for a call carrying `idempotencyKey`, or undefined when it carries
 * none (""). Refuses a namespace whose backend lacks `iface`, and a key that
 * is too long. `parts` is the request as it shapes the effect.
 */
export function idempotencyToken(
  ns: NamespaceRuntime,
  iface: InterfaceName,
  op: IdempotentOp,
  target: string,
  idempotencyKey: string | null | undefined,
  parts: readonly Part[],
): IdempotencyToken | undefined {
  const key = idempotencyKey ?? "";
  if (!key) return undefined;
  const n = Buffer.byteLength(key, "utf8");
  if (n > MAX_IDEMPOTENCY_KEY_BYTES) throw errors.invalidArgument("idempotency_key", `${n} bytes exceeds the maximum of ${MAX_IDEMPOTENCY_KEY_BYTES}`);
  requireInterface(ns, iface);
  const windowSeconds = ns.limits.idempotencyWindowSeconds ?? DEFAULT_IDEMPOTENCY_WINDOW_SECONDS;
  return {
    key: JSON.stringify([op, target, key]),
    requestHash: hashParts([op, target, ...parts]),
    windowMs: windowSeconds * 1000,
  };
}

/** The result of a keyed call: a replay of another request is refused. */
export function onceResult<T>(once: Once<T>, token: IdempotencyToken): T {
  if (once.replayedHash !== undefined && once.replayedHash !== token.requestHash) {
    throw errors.idempotencyKeyReused((JSON.parse(token.key) as string[])[2]!);
  }
  return once.result;
}

/**
 * The store's keyed method, or FAILED_PRECONDITION when the namespace's store
 * does not offer it although the backend claims the interface (a store wrapped
 * by a migration that cannot pass the key to the store owning the effect).
 */
export function onceMethod<F>(ns: NamespaceRuntime, iface: InterfaceName, fn: F | undefined): F {
  if (fn) return fn;
  const why = ns.migration ? "while the namespace is migrating" : `on this namespace's ${ns.backendType} store`;
  throw new PrismError(Code.FAILED_PRECONDITION, "PRISM_ERR_INTERFACE_MISSING", `namespace "${ns.name}": ${iface} is not available ${why}`);
}
