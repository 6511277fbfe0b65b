/** Stream: an ordered log with offsets, replay and consumer groups. */
import type { prism } from "../gen/prism.js";
import { errors } from "../core/errors.js";
import type { StreamStore } from "../backends/driver.js";
import type { NamespaceRuntime } from "../router/router.js";
import type { RequestContext } from "../core/context.js";
import { count, requireAttributes, requireInterface, requireName, requireValue } from "./validate.js";
import { withTraceAttributes } from "../observability/propagate.js";
import { idempotencyToken, onceMethod, onceResult } from "./idempotency.js";

const EMPTY = new Uint8Array(0);

function store(ns: NamespaceRuntime): StreamStore {
  const s = ns.stores.stream;
  if (!s) throw errors.primitiveNotServed(ns.name, "stream");
  return s;
}

export async function append(ns: NamespaceRuntime, req: prism.v1.IAppendRequest): Promise<prism.v1.IAppendResponse> {
  const stream = req.stream ?? "";
  requireName(stream, "stream");
  const payload = req.payload ?? EMPTY;
  requireValue(ns, payload, "payload");
  const attributes = requireAttributes(req.attributes);
  const token = idempotencyToken(ns, "stream_idempotent", "append", stream, req.idempotencyKey, [payload, attributes]);
  if (token) {
    const s = store(ns);
    return { offset: onceResult(await onceMethod(ns, "stream_idempotent", s.appendOnce).call(s, stream, payload, withTraceAttributes(attributes), token), token) };
  }
  return { offset: await store(ns).append(stream, payload, withTraceAttributes(attributes)) };
}

export async function read(ns: NamespaceRuntime, req: prism.v1.IReadRequest): Promise<prism.v1.IReadResponse> {
  const stream = req.stream ?? "";
  requireName(stream, "stream");
  const from = Number(req.fromOffset ?? 0);
  if (from > 0) requireInterface(ns, "stream_replay");
  const limit = count(req.limit, 100, 1000, "limit");
  const records = await store(ns).read(stream, from, limit);
  const last = records[records.length - 1];
  return { records, nextOffset: last ? last.offset + 1 : from };
}

export async function readGroup(ns: NamespaceRuntime, req: prism.v1.IReadGroupRequest, ctx: RequestContext): Promise<prism.v1.IReadGroupResponse> {
  requireInterface(ns, "stream_consumer_groups");
  const stream = req.stream ?? "";
  requireName(stream, "stream");
  requireName(req.group ?? "", "group");
  requireName(req.consumer ?? "", "consumer");
  const n = count(req.count, 10, 1000, "count");
  const block = req.blockMs ?? 0;
  if (block > 20000) throw errors.invalidArgument("block_ms", `${block} exceeds the maximum of 20000`);
  const records = await store(ns).readGroup!(stream, req.group!, req.consumer!, n, block, block > 0 ? ctx.signal : undefined);
  return { records };
}

export async function ackGroup(ns: NamespaceRuntime, req: prism.v1.IAckGroupRequest): Promise<prism.v1.IAckGroupResponse> {
  requireInterface(ns, "stream_consumer_groups");
  const stream = req.stream ?? "";
  requireName(stream, "stream");
  requireName(req.group ?? "", "group");
  const offsets = (req.offsets ?? []).map(Number);
  if (offsets.length > 1000) throw errors.invalidArgument("offsets", "at most 1000 per call");
  return { acked: await store(ns).ackGroup!(stream, req.group!, offsets) };
}
