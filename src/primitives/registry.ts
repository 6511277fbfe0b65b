/** MulticastRegistry: validation above the pattern's service (src/patterns/multicast-registry.ts). */
import type { prism } from "../gen/prism.js";
import { errors } from "../core/errors.js";
import type { NamespaceRuntime } from "../router/router.js";
import type { Subscription, SubscriptionSink } from "../backends/driver.js";
import { compileFilter, type MulticastRegistry } from "../patterns/multicast-registry.js";
import { count, requireAttributes, requireValue } from "./validate.js";

function registry(ns: NamespaceRuntime): MulticastRegistry {
  const s = ns.patternService as MulticastRegistry | undefined;
  if (!s) throw errors.primitiveNotServed(ns.name, "multicast_registry");
  return s;
}

function metadataOf(m: Record<string, string> | null | undefined): Record<string, string> {
  return requireAttributes(m, "metadata");
}

export async function register(ns: NamespaceRuntime, req: prism.v1.IRegisterRequest): Promise<prism.v1.IRegisterResponse> {
  const r = await registry(ns).register(req.identity ?? "", metadataOf(req.metadata), req.ttlSeconds ?? 0);
  return { created: r.created, expiresAtMs: r.expiresAtMs };
}

export async function unregister(ns: NamespaceRuntime, req: prism.v1.IUnregisterRequest): Promise<prism.v1.IUnregisterResponse> {
  return { removed: await registry(ns).unregister(req.identity ?? "") };
}

export async function enumerate(ns: NamespaceRuntime, req: prism.v1.IEnumerateRequest): Promise<prism.v1.IEnumerateResponse> {
  const filter = compileFilter(req.filter ?? "");
  const limit = count(req.limit, 100, 10_000, "limit");
  const page = await registry(ns).enumerate(filter, req.cursor ?? "", limit);
  return { members: page.members.map((m) => ({ identity: m.identity, metadata: m.metadata, expiresAtMs: m.expiresAtMs })), nextCursor: page.nextCursor };
}

export async function multicast(ns: NamespaceRuntime, req: prism.v1.IMulticastRequest): Promise<prism.v1.IMulticastResponse> {
  const filter = compileFilter(req.filter ?? "");
  const payload = req.payload ?? new Uint8Array(0);
  requireValue(ns, payload);
  return registry(ns).multicast(filter, payload, requireAttributes(req.attributes));
}

export async function subscribe(ns: NamespaceRuntime, req: prism.v1.IMemberSubscribeRequest, sink: SubscriptionSink): Promise<Subscription> {
  return registry(ns).subscribe(req.identity ?? "", sink);
}
