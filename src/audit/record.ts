/**
 * One audit record's text, built by hand (no object, no JSON.stringify per
 * call): the unterminated JSON object the chain seals (src/audit/chain.ts).
 *
 *   {"time":"2026-12-06T22:09:23.123Z","principal":"alice","principal_kind":"jwt",
 *    "ns":"orders","method":"KeyValue/Get","key":"a","result":"OK",
 *    "trace_id":"…","ingress":"grpc","peer":"127.0.0.1","worker":0,
 *    "seq":12,"prev":"…","hash":"…"}
 *
 * Values and payloads are never read. What the call named: `key` (single-key
 * KeyValue calls; the queue, topic, stream, subscription pattern or member
 * identity of the other primitives; an Admin call's `name`), `keys` (batches:
 * at most MAX_KEYS, then `keys_total`), `prefix` (Scan), `count` (the messages or receipts of
 * a Queue EnqueueBatch / AckBatch, whose `key` is the queue). A namespace with
 * `audit: { hide_keys: true }` records none of them; `pii: mask` records them
 * masked (src/pii/mask.ts). Admin calls carry no `ns`.
 */
import type { RequestContext } from "../core/context.js";
import { codeName } from "../core/errors.js";
import type { NamespaceConfig } from "../config/schema.js";
import { maskKey } from "../pii/mask.js";
import { jsonString } from "./json.js";

/** Longest key / name recorded (longer ones are cut and end with "…"). */
const MAX_KEY_CHARS = 1024;
/** Keys of a batch recorded. */
const MAX_KEYS = 100;

type KeyMode = 0 | 1 | 2; // 0 plain, 1 hidden, 2 masked

function keyText(k: string, mode: KeyMode): string {
  const s = mode === 2 ? maskKey(k) : k.length > MAX_KEY_CHARS ? `${k.slice(0, MAX_KEY_CHARS)}…` : k;
  return jsonString(s);
}

/** The trace id: the call's span when tracing is on, else the caller's traceparent. */
function traceIdOf(ctx: RequestContext): string | undefined {
  const span = ctx.obs as { spanContext?: () => { traceId: string } } | undefined;
  if (span !== undefined && typeof span.spanContext === "function") return span.spanContext().traceId;
  const tp = ctx.traceparent;
  return tp !== undefined && tp.length >= 35 ? tp.slice(3, 35) : undefined;
}

const HEX32 = /^[0-9a-f]{32}$/;

/**
 * The record body for a call. `ns` is the namespace's config when the name
 * is served here (hide_keys / pii apply), undefined for an unknown name.
 */
export function buildRecord(ctx: RequestContext, req: any, code: number, ns: NamespaceConfig | undefined, worker: number | undefined, nowMs: number): string {
  const p = ctx.principal;
  let out = `{"time":"${new Date(nowMs).toISOString()}","principal":${p === undefined ? '"anonymous","principal_kind":"anonymous"' : `${jsonString(p.id)},"principal_kind":"${p.kind}"`}`;
  const m = ctx.method;
  const admin = m.admin !== undefined;
  if (!admin) {
    const name = req?.namespace;
    if (typeof name === "string" && name !== "") out += `,"ns":${jsonString(name.length > 128 ? `${name.slice(0, 128)}…` : name)}`;
  }
  out += `,"method":"${m.service}/${m.name}"`;
  const mode: KeyMode = ns?.audit?.hide_keys === true ? 1 : ns?.pii === "mask" ? 2 : 0;
  if (mode !== 1 && req !== null && typeof req === "object") {
    const k = admin ? req.name : req.key ?? req.queue ?? req.topic ?? req.stream ?? req.pattern ?? req.identity;
    if (typeof k === "string" && k !== "") {
      out += `,"key":${keyText(k, mode)}`;
      // Queue batches: how many messages / receipts the one call carried.
      const batch: unknown = req.queue !== undefined ? (req.entries ?? req.receipts) : undefined;
      if (Array.isArray(batch)) out += `,"count":${batch.length}`;
    } else if (!admin) {
      const keys: unknown = req.keys ?? (Array.isArray(req.entries) ? req.entries.map((e: { key?: unknown }) => e?.key) : undefined);
      if (Array.isArray(keys)) {
        const n = Math.min(keys.length, MAX_KEYS);
        let list = "";
        for (let i = 0; i < n; i++) list += (i ? "," : "") + keyText(String(keys[i] ?? ""), mode);
        out += `,"keys":[${list}]`;
        if (keys.length > MAX_KEYS) out += `,"keys_total":${keys.length}`;
      } else if (typeof req.prefix === "string") out += `,"prefix":${keyText(req.prefix, mode)}`;
    }
  }
  out += `,"result":"${codeName[code] ?? "UNKNOWN"}"`;
  const t = traceIdOf(ctx);
  if (t !== undefined && HEX32.test(t)) out += `,"trace_id":"${t}"`;
  out += `,"ingress":"${ctx.ingress}","peer":${jsonString(ctx.peer)}`;
  if (worker !== undefined) out += `,"worker":${worker}`;
  return out;
}
