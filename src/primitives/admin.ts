/** Admin: namespaces (list, get, hot-apply, delete), backends and their claims, health. */
import type { prism } from "../gen/prism.js";
import { errors } from "../core/errors.js";
import type { Gateway } from "../core/gateway.js";
import type { NamespaceRuntime } from "../router/router.js";
import { loadAllDrivers } from "../backends/registry.js";

const SECRET_KEY = /pass(word)?|secret|token|credential|private/i;

/** A namespace's config as JSON with passwords and URL credentials masked. */
export function redactedConfig(config: unknown): string {
  return JSON.stringify(config, (k, v) => {
    if (typeof v === "string" && SECRET_KEY.test(k)) return "***";
    if (typeof v === "string") return v.replace(/(\/\/[^:/@]*:)[^@/]*@/, "$1***@");
    return v;
  });
}

export function namespaceInfo(ns: NamespaceRuntime): prism.v1.INamespaceInfo {
  return {
    name: ns.name,
    primitives: [...ns.primitives],
    backendType: ns.backendType,
    interfaces: [...ns.interfaces],
    configJson: redactedConfig(ns.config),
  };
}

export async function listNamespaces(gw: Gateway): Promise<prism.v1.IListNamespacesResponse> {
  return { namespaces: gw.router.list().map(namespaceInfo) };
}

export async function getNamespace(gw: Gateway, req: prism.v1.IGetNamespaceRequest): Promise<prism.v1.INamespaceInfo> {
  if (!req.name) throw errors.invalidArgument("name", "must not be empty");
  const ns = gw.router.get(req.name);
  if (!ns) throw errors.unknownNamespace(req.name);
  return namespaceInfo(ns);
}

export async function applyNamespace(gw: Gateway, req: prism.v1.IApplyNamespaceRequest): Promise<prism.v1.IApplyNamespaceResponse> {
  if (!req.config) throw errors.invalidArgument("config", "must hold one namespace as YAML or JSON");
  // The validator (yaml + zod, a few MB) loads on the first ApplyNamespace, not in every serving process.
  const { ConfigError, parseNamespaceText } = await import("../config/load.js");
  let cfg;
  try {
    cfg = await parseNamespaceText(req.config);
  } catch (e) {
    if (e instanceof ConfigError) throw errors.invalidArgument("config", e.problems.join("; "));
    throw e;
  }
  const created = await gw.control.apply(cfg);
  return { namespace: namespaceInfo(gw.router.get(cfg.name)!), created };
}

export async function deleteNamespace(gw: Gateway, req: prism.v1.IDeleteNamespaceRequest): Promise<prism.v1.IDeleteNamespaceResponse> {
  if (!req.name) throw errors.invalidArgument("name", "must not be empty");
  return { deleted: await gw.control.delete(req.name) };
}

export async function listBackends(): Promise<prism.v1.IListBackendsResponse> {
  const drivers = await loadAllDrivers();
  return { backends: drivers.map((d) => ({
      type: d.type,
      interfaces: [...d.interfaces],
      description: d.unverified ? `${d.description} (claims unverified: ${d.unverified})` : d.description,
    })) };
}

export async function health(gw: Gateway): Promise<prism.v1.IHealthResponse> {
  const backends = await Promise.all(
    gw.router.list().map(async (ns) => {
      if (ns.owner !== undefined) {
        return { namespace: ns.name, backendType: ns.backendType, ok: true, latencyMs: 0, message: `state owned by worker ${ns.owner}` };
      }
      const inst = gw.router.instanceOf(ns.name);
      if (!inst) return { namespace: ns.name, backendType: ns.backendType, ok: false, latencyMs: 0, message: "no backend instance" };
      const circuit = gw.router.breakerOf(ns.name)?.describe() ?? "closed";
      try {
        const h = await inst.health();
        return { namespace: ns.name, backendType: ns.backendType, ok: h.ok, latencyMs: h.latencyMs, message: h.message, circuit };
      } catch (e) {
        return { namespace: ns.name, backendType: ns.backendType, ok: false, latencyMs: 0, message: (e as Error).message, circuit };
      }
    }),
  );
  return {
    status: backends.every((b) => b.ok) ? "SERVING" : "DEGRADED",
    backends,
    version: gw.version,
    workers: gw.workers,
    workerIndex: gw.workerIndex,
  };
}
