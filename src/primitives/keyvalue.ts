/**
 * KeyValue: validation and limits above the driver, then one driver call.
 * Handlers take the decoded protobuf request and return a plain response
 * object; ingresses do the encoding.
 */
import type { prism } from "../gen/prism.js";
import { errors } from "../core/errors.js";
import type { KeyValueStore, OutboxMessage } from "../backends/driver.js";
import type { NamespaceRuntime } from "../router/router.js";
import { count, requireAttributes, requireInterface, requireKey, requireValue } from "./validate.js";
import { idempotencyToken, onceMethod, onceResult } from "./idempotency.js";

const EMPTY = new Uint8Array(0);

function store(ns: NamespaceRuntime): KeyValueStore {
  const s = ns.stores.keyvalue;
  if (!s) throw errors.primitiveNotServed(ns.name, "keyvalue");
  return s;
}

/** ttl_seconds unset: the namespace default; 0: none. Returns ms or undefined. */
function ttlMs(ns: NamespaceRuntime, ttlSeconds: number | null | undefined): number | undefined {
  const s = ttlSeconds ?? ns.limits.defaultTtlSeconds;
  if (!s) return undefined;
  requireInterface(ns, "keyvalue_ttl");
  return s * 1000;
}

function hasField(req: object, field: string): boolean {
  return Object.prototype.hasOwnProperty.call(req, field) && (req as Record<string, unknown>)[field] != null;
}

/**
 * The message attached to a Set or Delete (keyvalue_outbox: pattern outbox),
 * checked; undefined when none is. The outbox store checks the topic against
 * where it delivers (a pubsub topic or a queue name).
 */
function outboxMessage(ns: NamespaceRuntime, req: { message?: prism.v1.IOutboxMessage | null }): OutboxMessage | undefined {
  if (!hasField(req, "message")) return undefined;
  requireInterface(ns, "keyvalue_outbox");
  const m = req.message!;
  const topic = m.topic ?? "";
  if (!topic) throw errors.invalidArgument("message.topic", "must not be empty");
  const payload = m.payload ?? EMPTY;
  requireValue(ns, payload, "message.payload");
  return { topic, payload, attributes: requireAttributes(m.attributes, "message.attributes") };
}

export async function get(ns: NamespaceRuntime, req: prism.v1.IGetRequest): Promise<prism.v1.IGetResponse> {
  const key = req.key ?? "";
  requireKey(ns, key);
  const rec = await store(ns).get(key);
  return rec ? { found: true, value: rec.value, version: rec.version } : { found: false, value: EMPTY, version: 0 };
}

export async function set(ns: NamespaceRuntime, req: prism.v1.ISetRequest): Promise<prism.v1.ISetResponse> {
  const key = req.key ?? "";
  requireKey(ns, key);
  const value = req.value ?? EMPTY;
  requireValue(ns, value);
  const msg = outboxMessage(ns, req);
  const ttl = ttlMs(ns, hasField(req, "ttlSeconds") ? req.ttlSeconds : undefined);
  const expectedVersion = hasField(req, "expectedVersion") ? Number(req.expectedVersion) : undefined;
  if (req.ifAbsent || expectedVersion !== undefined) requireInterface(ns, "keyvalue_cas");
  const opts = { ttlMs: ttl, ifAbsent: !!req.ifAbsent, expectedVersion };
  const token = idempotencyToken(ns, "keyvalue_idempotent", "set", "", req.idempotencyKey, [key, value, ttl, opts.ifAbsent, expectedVersion, !!msg]);
  if (token) {
    if (msg) throw errors.invalidArgument("idempotency_key", "cannot be combined with a message (outbox writes are not keyed)");
    const s = store(ns);
    return { version: onceResult(await onceMethod(ns, "keyvalue_idempotent", s.setOnce).call(s, key, value, opts, token), token) };
  }
  const version = msg ? await store(ns).setWithMessage!(key, value, opts, msg) : await store(ns).set(key, value, opts);
  return { version };
}

export async function del(ns: NamespaceRuntime, req: prism.v1.IDeleteRequest): Promise<prism.v1.IDeleteResponse> {
  const key = req.key ?? "";
  requireKey(ns, key);
  const msg = outboxMessage(ns, req);
  const token = idempotencyToken(ns, "keyvalue_idempotent", "delete", "", req.idempotencyKey, [key, !!msg]);
  if (token) {
    if (msg) throw errors.invalidArgument("idempotency_key", "cannot be combined with a message (outbox writes are not keyed)");
    const s = store(ns);
    return { deleted: onceResult(await onceMethod(ns, "keyvalue_idempotent", s.deleteOnce).call(s, key, token), token) };
  }
  return { deleted: msg ? await store(ns).deleteWithMessage!(key, msg) : await store(ns).delete(key) };
}

export async function exists(ns: NamespaceRuntime, req: prism.v1.IExistsRequest): Promise<prism.v1.IExistsResponse> {
  const key = req.key ?? "";
  requireKey(ns, key);
  return { exists: await store(ns).exists(key) };
}

const MAX_BATCH = 1000;

export async function batchGet(ns: NamespaceRuntime, req: prism.v1.IBatchGetRequest): Promise<prism.v1.IBatchGetResponse> {
  requireInterface(ns, "keyvalue_batch");
  const keys = req.keys ?? [];
  if (keys.length > MAX_BATCH) throw errors.invalidArgument("keys", `at most ${MAX_BATCH} keys per batch`);
  keys.forEach((k, i) => requireKey(ns, k, `keys[${i}]`));
  const recs = await store(ns).batchGet!(keys);
  return {
    items: keys.map((key, i) => {
      const r = recs[i];
      return r ? { key, value: r.value, found: true, version: r.version } : { key, value: EMPTY, found: false, version: 0 };
    }),
  };
}

export async function batchSet(ns: NamespaceRuntime, req: prism.v1.IBatchSetRequest): Promise<prism.v1.IBatchSetResponse> {
  requireInterface(ns, "keyvalue_batch");
  const entries = req.entries ?? [];
  if (entries.length > MAX_BATCH) throw errors.invalidArgument("entries", `at most ${MAX_BATCH} entries per batch`);
  const clean = entries.map((e, i) => {
    const key = e.key ?? "";
    requireKey(ns, key, `entries[${i}].key`);
    const value = e.value ?? EMPTY;
    requireValue(ns, value, `entries[${i}].value`);
    return { key, value };
  });
  const ttl = ttlMs(ns, hasField(req, "ttlSeconds") ? req.ttlSeconds : undefined);
  return { versions: await store(ns).batchSet!(clean, ttl) };
}

export async function batchDelete(ns: NamespaceRuntime, req: prism.v1.IBatchDeleteRequest): Promise<prism.v1.IBatchDeleteResponse> {
  requireInterface(ns, "keyvalue_batch");
  const keys = req.keys ?? [];
  if (keys.length > MAX_BATCH) throw errors.invalidArgument("keys", `at most ${MAX_BATCH} keys per batch`);
  keys.forEach((k, i) => requireKey(ns, k, `keys[${i}]`));
  return { deleted: await store(ns).batchDelete!(keys) };
}

export async function scan(ns: NamespaceRuntime, req: prism.v1.IScanRequest): Promise<prism.v1.IScanResponse> {
  requireInterface(ns, "keyvalue_scan");
  const limit = count(req.limit, 100, 1000, "limit");
  const prefix = req.prefix ?? "";
  if (Buffer.byteLength(prefix) > ns.limits.maxKeyBytes) throw errors.tooLarge("prefix", Buffer.byteLength(prefix), ns.limits.maxKeyBytes);
  const page = await store(ns).scan!(prefix, req.cursor ?? "", limit, !!req.keysOnly);
  return {
    items: page.items.map((it) => ({ key: it.key, value: it.value ?? EMPTY, found: true, version: it.version })),
    nextCursor: page.nextCursor,
  };
}

export async function expire(ns: NamespaceRuntime, req: prism.v1.IExpireRequest): Promise<prism.v1.IExpireResponse> {
  requireInterface(ns, "keyvalue_ttl");
  const key = req.key ?? "";
  requireKey(ns, key);
  if (!req.ttlSeconds) throw errors.invalidArgument("ttl_seconds", "must be > 0 (use Persist to remove a TTL)");
  return { found: await store(ns).expire!(key, req.ttlSeconds * 1000) };
}

export async function getTtl(ns: NamespaceRuntime, req: prism.v1.IGetTtlRequest): Promise<prism.v1.IGetTtlResponse> {
  requireInterface(ns, "keyvalue_ttl");
  const key = req.key ?? "";
  requireKey(ns, key);
  const t = await store(ns).ttl!(key);
  if (!t) return { found: false, hasTtl: false, ttlMs: 0 };
  return t.ttlMs === null ? { found: true, hasTtl: false, ttlMs: 0 } : { found: true, hasTtl: true, ttlMs: Math.max(0, t.ttlMs) };
}

export async function persist(ns: NamespaceRuntime, req: prism.v1.IPersistRequest): Promise<prism.v1.IPersistResponse> {
  requireInterface(ns, "keyvalue_ttl");
  const key = req.key ?? "";
  requireKey(ns, key);
  return { found: await store(ns).persist!(key) };
}

