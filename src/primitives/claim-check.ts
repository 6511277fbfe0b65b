/**
 * ClaimCheck: validation above the pattern's service (src/patterns/claim-check.ts).
 *
 * Put and Get move bytes as streams, not messages: the ingress hands Put an
 * async iterable of the request's chunks (UPLOAD_BODY on the request object)
 * and streams Get's body (DOWNLOAD_BODY on the response) with backpressure.
 * Neither is retried (a consumed body cannot be replayed) nor forwarded to
 * another worker (the mesh carries messages, not streams).
 */
import type { prism } from "../gen/prism.js";
import { Code, errors, PrismError } from "../core/errors.js";
import type { RequestContext } from "../core/context.js";
import type { NamespaceRuntime } from "../router/router.js";
import { type Claim, type ClaimCheckService } from "../patterns/claim-check.js";
import { requireAttributes, requireInterface, requireKey, requireName, requireTopic } from "./validate.js";

/** On Put's request: the payload's chunks, in order. */
export const UPLOAD_BODY: unique symbol = Symbol("prism.claimCheck.uploadBody");
/** On Get's response: the payload's bytes (the claim is in `claim`). */
export const DOWNLOAD_BODY: unique symbol = Symbol("prism.claimCheck.downloadBody");

export type UploadRequest = prism.v1.IPutPayloadRequest & { [UPLOAD_BODY]?: AsyncIterable<Uint8Array> };
export interface DownloadResponse {
  claim: prism.v1.IClaim;
  /** The first byte sent and how many follow. */
  start: number;
  count: number;
  [DOWNLOAD_BODY]: AsyncIterable<Uint8Array>;
}

const SHA256 = /^[0-9a-fA-F]{64}$/;

function service(ns: NamespaceRuntime): ClaimCheckService {
  const s = ns.patternService as ClaimCheckService | undefined;
  if (!s || typeof (s as { upload?: unknown }).upload !== "function") throw errors.primitiveNotServed(ns.name, "claim_check");
  return s;
}

export function claimMessage(c: Claim): prism.v1.IClaim {
  return { id: c.id, size: c.size, sha256: c.sha256, contentType: c.contentType, createdAtMs: c.createdAtMs, expiresAtMs: c.expiresAtMs };
}

export const streamedOnly = (what: string) =>
  new PrismError(
    Code.UNIMPLEMENTED,
    "PRISM_ERR_STREAMING_ONLY",
    `${what} streams payloads: call it over gRPC (client- / server-streaming) or HTTP (PUT / GET /v1/ns/{namespace}/payloads); the WebSocket transport does not carry payload streams yet`,
  );

export async function put(ns: NamespaceRuntime, req: UploadRequest, ctx: RequestContext): Promise<prism.v1.IPutPayloadResponse> {
  const body = req[UPLOAD_BODY];
  if (!body) throw streamedOnly("ClaimCheck.Put");
  const svc = service(ns);
  const targets = (["key", "queue", "topic", "stream"] as const).filter((f) => !!req[f]);
  if (targets.length > 1) throw errors.invalidArgument(targets[1]!, `give at most one of key, queue, topic, stream (got ${targets.join(", ")})`);
  if (req.key) requireKey(ns, req.key);
  if (req.queue) requireName(req.queue, "queue");
  if (req.stream) requireName(req.stream, "stream");
  if (req.topic) requireTopic(req.topic);
  if (req.sha256 && !SHA256.test(req.sha256)) throw errors.invalidArgument("sha256", "must be 64 hex digits");
  if (req.ifAbsent && !req.key) throw errors.invalidArgument("if_absent", "applies to a key only");
  // The key's own semantics: a TTL or an only-if-absent write needs the fronted backend to have them.
  if (req.key && req.ttlSeconds) requireInterface(ns, "keyvalue_ttl");
  if (req.ifAbsent) requireInterface(ns, "keyvalue_cas");
  const r = await svc.upload(
    {
      key: req.key || undefined,
      queue: req.queue || undefined,
      topic: req.topic || undefined,
      stream: req.stream || undefined,
      ttlSeconds: req.ttlSeconds ?? 0,
      attributes: requireAttributes(req.attributes),
      contentType: (req.contentType ?? "").slice(0, 256),
      sha256: (req.sha256 ?? "").toLowerCase(),
      ifAbsent: !!req.ifAbsent,
    },
    body,
    ctx.signal,
  );
  return { claim: claimMessage(r.claim), version: r.version ?? 0, messageId: r.messageId ?? "", offset: r.offset ?? 0 };
}

/** The claim id a Get / Head / Delete names: claim_id, or the claim a key holds. */
async function claimIdOf(ns: NamespaceRuntime, svc: ClaimCheckService, req: prism.v1.IGetPayloadRequest): Promise<string> {
  if (req.claimId && req.key) throw errors.invalidArgument("key", "give claim_id or key, not both");
  if (req.claimId) return req.claimId;
  if (!req.key) throw errors.invalidArgument("claim_id", "must not be empty (or give key)");
  requireKey(ns, req.key);
  const c = await svc.claimOfKey(req.key);
  if (!c) throw new PrismError(Code.NOT_FOUND, "PRISM_ERR_PAYLOAD_NOT_FOUND", `key ${JSON.stringify(req.key)} holds no claim in namespace "${ns.name}" (absent, or a value below the threshold: KeyValue.Get returns it)`);
  return c.id;
}

export async function get(ns: NamespaceRuntime, req: prism.v1.IGetPayloadRequest, ctx: RequestContext): Promise<DownloadResponse> {
  const svc = service(ns);
  const id = await claimIdOf(ns, svc, req);
  const r = await svc.open(id, Number(req.offset ?? 0), Number(req.length ?? 0), ctx.signal);
  return { claim: claimMessage(r.claim), start: r.start, count: r.count, [DOWNLOAD_BODY]: r.body };
}

export async function head(ns: NamespaceRuntime, req: prism.v1.IGetPayloadRequest): Promise<prism.v1.IClaim> {
  const svc = service(ns);
  return claimMessage(await svc.head(await claimIdOf(ns, svc, req)));
}

export async function del(ns: NamespaceRuntime, req: prism.v1.IGetPayloadRequest): Promise<prism.v1.IDeletePayloadResponse> {
  const svc = service(ns);
  if (req.key) throw errors.invalidArgument("key", "delete the key with KeyValue.Delete (its payload goes with it); Delete takes a claim_id");
  return { deleted: await svc.remove(await claimIdOf(ns, svc, req)) };
}
