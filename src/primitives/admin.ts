/** Admin: namespaces (list, get, apply, delete), backend instances, drivers and their claims, patterns, health. */
import type { prism } from "../gen/prism.js";
import { errors } from "../core/errors.js";
import type { Gateway } from "../core/gateway.js";
import type { NamespaceRuntime } from "../router/router.js";
import type { ResolvedNamespace } from "../config/resolve.js";
import type { BackendInstanceInfo } from "../core/gateway.js";
import { PATTERNS, patternByName } from "../patterns/registry.js";
import { structToJson, type StructMessage } from "../core/struct.js";
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

/** A namespace as Admin shows it: from its resolution (also for a dry run, which has no runtime). */
export function resolvedInfo(r: ResolvedNamespace): prism.v1.INamespaceInfo {
  const served = new Set<string>();
  let interfaces: string[] = [];
  const def = r.pattern ? patternByName(r.pattern) : undefined;
  if (def?.claims) interfaces = def.claims(new Map(r.slots.map((s) => [s.slot, new Set(s.interfaces)])));
  else for (const s of r.slots) {
    if (served.has(s.primitive)) continue;
    served.add(s.primitive);
    for (const i of s.interfaces) if (i.startsWith(`${s.primitive}_`)) interfaces.push(i);
  }
  return {
    name: r.config.name,
    primitives: [...r.config.primitives],
    backendType: [...new Set(r.slots.map((s) => s.type))].join("+"),
    interfaces,
    configJson: redactedConfig(r.config),
    pattern: r.pattern,
    slots: r.slots.map((s) => ({ slot: s.slot, instance: s.instance, backendType: s.type, interfaces: [...s.interfaces], auto: s.auto })),
    revision: r.revision,
    explanation: [...r.explanation],
  };
}

export function namespaceInfo(ns: NamespaceRuntime): prism.v1.INamespaceInfo {
  return resolvedInfo(ns.resolved);
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

/** A Struct field as JSON, or undefined when it was not sent. */
function entryOf(s: StructMessage | null | undefined): Record<string, unknown> | undefined {
  if (!s || !s.fields || Object.keys(s.fields).length === 0) return undefined;
  return structToJson(s);
}

export async function applyNamespace(gw: Gateway, req: prism.v1.IApplyNamespaceRequest): Promise<prism.v1.IApplyNamespaceResponse> {
  const entry = entryOf(req.namespace) ?? (req.config ? req.config : undefined);
  if (entry === undefined) throw errors.invalidArgument("namespace", 'must hold the namespace entry, e.g. {"name": "orders", "backend": {"type": "memstore"}} (or `config`: the entry as YAML/JSON text)');
  if (req.config && entryOf(req.namespace)) throw errors.invalidArgument("config", "give the namespace either as `namespace` or as `config` text, not both");
  const r = await gw.control.applyNamespace(entry, { dryRun: req.dryRun === true });
  return { namespace: resolvedInfo(r.namespace), created: r.created, revision: r.revision, applied: r.applied };
}

export async function deleteNamespace(gw: Gateway, req: prism.v1.IDeleteNamespaceRequest): Promise<prism.v1.IDeleteNamespaceResponse> {
  if (!req.name) throw errors.invalidArgument("name", "must not be empty");
  return gw.control.deleteNamespace(req.name);
}

function backendInfo(b: BackendInstanceInfo): prism.v1.IBackendInstanceInfo {
  return { name: b.name, type: b.type, optionsJson: redactedConfig(b.options), namespaces: b.namespaces, revision: b.revision };
}

export async function applyBackend(gw: Gateway, req: prism.v1.IApplyBackendRequest): Promise<prism.v1.IApplyBackendResponse> {
  if (!req.name) throw errors.invalidArgument("name", "must not be empty");
  const spec = entryOf(req.backend);
  if (!spec) throw errors.invalidArgument("backend", 'must hold the instance, e.g. {"type": "redis", "url": "redis://127.0.0.1:6379"}');
  const r = await gw.control.applyBackend(req.name, spec, { dryRun: req.dryRun === true });
  return { backend: backendInfo(r.backend), created: r.created, revision: r.revision, applied: r.applied, namespaces: r.namespaces };
}

export async function deleteBackend(gw: Gateway, req: prism.v1.IDeleteBackendRequest): Promise<prism.v1.IDeleteBackendResponse> {
  if (!req.name) throw errors.invalidArgument("name", "must not be empty");
  return gw.control.deleteBackend(req.name);
}

export async function listBackendInstances(gw: Gateway): Promise<prism.v1.IListBackendInstancesResponse> {
  return { backends: (await gw.control.listBackendInstances()).map(backendInfo) };
}

export async function listPatterns(): Promise<prism.v1.IListPatternsResponse> {
  return {
    patterns: PATTERNS.map((p) => ({
      name: p.name,
      description: p.description,
      serves: [...p.serves],
      slots: p.slots.map((s) => ({ name: s.name, description: s.description, requires: [...s.requires], optional: [...s.optional], recommended: [...s.recommended] })),
    })),
  };
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
  const probes: Promise<prism.v1.IBackendHealth>[] = [];
  for (const ns of gw.router.list()) {
    ns.slots.forEach((slot, i) => {
      const base = { namespace: ns.name, backendType: slot.backendType, slot: slot.slot, instance: slot.instance };
      if (ns.owner !== undefined) {
        probes.push(Promise.resolve({ ...base, ok: true, latencyMs: 0, message: `state owned by worker ${ns.owner}` }));
        return;
      }
      const inst = gw.router.instanceOf(ns.name, i);
      if (!inst) {
        probes.push(Promise.resolve({ ...base, ok: false, latencyMs: 0, message: "no backend instance" }));
        return;
      }
      const circuit = gw.router.breakerOf(ns.name, i)?.describe() ?? "closed";
      probes.push(
        inst.health().then(
          (h) => ({ ...base, ok: h.ok, latencyMs: h.latencyMs, message: h.message, circuit }),
          (e) => ({ ...base, ok: false, latencyMs: 0, message: (e as Error).message, circuit }),
        ),
      );
    });
  }
  const backends = await Promise.all(probes);
  return {
    status: backends.every((b) => b.ok) ? "SERVING" : "DEGRADED",
    backends,
    version: gw.version,
    workers: gw.workers,
    workerIndex: gw.workerIndex,
  };
}
