/** Admin: namespaces (list, get, apply, delete), backend instances, drivers and their claims, patterns, health. */
import type { prism } from "../gen/prism.js";
import { errors } from "../core/errors.js";
import type { Gateway } from "../core/gateway.js";
import type { NamespaceRuntime } from "../router/router.js";
import type { ResolvedNamespace } from "../config/resolve.js";
import type { BackendInstanceInfo } from "../core/gateway.js";
import type { MigrationStatus } from "../control/agent.js";
import { isDryRun } from "../migrations/types.js";
import { PATTERNS, patternByName } from "../patterns/registry.js";
import { structToJson, type StructMessage } from "../core/struct.js";
import { loadAllDrivers } from "../backends/registry.js";
import { PATTERN_ONLY_INTERFACES } from "../core/interfaces.js";
import { redactSecrets, redactedJson } from "../core/redact.js";

/** A namespace's config as JSON with passwords and URL credentials masked (src/core/redact.ts: every connection-string form). */
export function redactedConfig(config: unknown): string {
  return redactedJson(config);
}

/** A namespace as Admin shows it: from its resolution (also for a dry run, which has no runtime). */
export function resolvedInfo(r: ResolvedNamespace): prism.v1.INamespaceInfo {
  const served = new Set<string>();
  let interfaces: string[] = [];
  const def = r.pattern ? patternByName(r.pattern) : undefined;
  if (def?.claims) interfaces = def.claims(new Map(r.slots.map((s) => [s.slot, new Set(s.interfaces)])), r.config.options ?? {});
  else for (const s of r.slots) {
    if (served.has(s.primitive)) continue;
    served.add(s.primitive);
    for (const i of s.interfaces) if (i.startsWith(`${s.primitive}_`) && !PATTERN_ONLY_INTERFACES.has(i)) interfaces.push(i);
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
      const breaker = gw.router.breakerOf(ns.name, i);
      const circuit = breaker?.describe() ?? "closed";
      // A namespace whose circuit is open does not serve, however healthy its backend answers now:
      // calls fail fast until a probe succeeds (the breaker probes as soon as the backend's health check does).
      const open = breaker !== undefined && breaker.state === "open";
      const report = (ok: boolean, latencyMs: number, message: string) => {
        const m = redactSecrets(message ?? "");
        return open ? { ...base, ok: false, latencyMs, message: `circuit open: calls fail fast until a probe succeeds (backend: ${m})`, circuit } : { ...base, ok, latencyMs, message: m, circuit };
      };
      probes.push(
        inst.health().then(
          (h) => report(h.ok, h.latencyMs, h.message),
          (e) => report(false, 0, (e as Error).message),
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

// ---------------------------------------------------------------- migrations

/** The stored phase (every instance) and this instance's live numbers (its runtime). */
function migrationInfo(gw: Gateway, name: string, st: MigrationStatus): prism.v1.IMigrationInfo {
  const rt = gw.router.get(name)?.migration;
  const kv = rt?.kv;
  const live = kv?.snapshot();
  const c = kv?.backfillProgress ?? st.cursor ?? undefined;
  const s = st.settings;
  const state = st.state;
  return {
    namespace: name,
    slot: s.slot,
    from: s.from,
    to: s.to,
    phase: state?.phase ?? "",
    cutoverPct: kv ? kv.cutoverPct : state?.phase === "cutover" && !state.rolledBack && !isDryRun(s, state) ? (s.cutoverSteps[state.step] ?? 0) : 0,
    dryRun: isDryRun(s, state),
    rolledBack: !!state?.rolledBack || !!kv?.isRolledBack,
    rollbackReason: state?.rolledBack?.reason ?? "",
    rollbackAutomatic: !!state?.rolledBack?.automatic,
    backfillCopied: c?.copied ?? 0,
    backfillSkipped: c?.skipped ?? 0,
    backfillEstimatedTotal: (c as { estimatedTotal?: number } | undefined)?.estimatedTotal ?? 0,
    // Done as the stored cursor says (what AdvanceMigration checks), not this instance's copy of it: another instance may still be writing it.
    backfillDone: !!(st.cursor ?? c)?.done,
    shadowReads: live?.shadowReads ?? 0,
    shadowMismatches: live?.shadowMismatches ?? 0,
    diffPct: live?.diffPct ?? 0,
    toErrorRate: live?.toErrorRate ?? 0,
    toP99Ms: live?.toP99Ms ?? 0,
    fromP99Ms: live?.fromP99Ms ?? 0,
    fromErrorRate: live?.fromErrorRate ?? 0,
    rollbacks: live?.rollbacks ?? state?.rollbacks ?? 0,
    dualWriteErrors: live?.dualWriteErrors ?? 0,
    repairsPending: live?.repairsPending ?? 0,
    servedByTo: live?.servedByTo ?? 0,
    servedByFrom: live?.servedByFrom ?? 0,
    // `applied`: the phase this instance (this worker) serves now, which may trail the stored one by a sync.
    // `reconcile`: requested after a writer died with copies pending (src/migrations/reconcile.ts); finish waits for done.
    statsJson: JSON.stringify({ queue: rt?.queue?.stats, shadow: rt?.shadow?.stats, applied: rt ? { phase: rt.state.phase, step: rt.state.step, rolledBack: !!rt.state.rolledBack } : null, reconcile: st.reconcile ?? null }),
  };
}

function nsName(req: prism.v1.IMigrationRequest): string {
  if (!req.namespace) throw errors.invalidArgument("namespace", "must not be empty");
  return req.namespace;
}

export async function migrationStatus(gw: Gateway, req: prism.v1.IMigrationRequest): Promise<prism.v1.IMigrationInfo> {
  const name = nsName(req);
  return migrationInfo(gw, name, await gw.control.migrationStatus(name));
}

export async function startMigration(gw: Gateway, req: prism.v1.IMigrationRequest): Promise<prism.v1.IMigrationInfo> {
  const name = nsName(req);
  return migrationInfo(gw, name, await gw.control.startMigration(name, { dryRun: !!req.dryRun }));
}

export async function advanceMigration(gw: Gateway, req: prism.v1.IMigrationRequest): Promise<prism.v1.IMigrationInfo> {
  const name = nsName(req);
  return migrationInfo(gw, name, await gw.control.advanceMigration(name));
}

export async function rollbackMigration(gw: Gateway, req: prism.v1.IMigrationRequest): Promise<prism.v1.IMigrationInfo> {
  const name = nsName(req);
  return migrationInfo(gw, name, await gw.control.rollbackMigration(name, req.reason || "rolled back by the operator", false));
}

export async function finishMigration(gw: Gateway, req: prism.v1.IMigrationRequest): Promise<prism.v1.IMigrationInfo> {
  const name = nsName(req);
  const before = await gw.control.migrationStatus(name);
  // A queue finishes only once `from` is drained: counted by `from`'s backend (every instance's messages and leases), here where the stores are.
  if (before.primitive === "queue" && before.state) {
    const rt = gw.router.get(name);
    const q = rt?.migration?.queue;
    if (!q) {
      const why = rt?.owner !== undefined ? `namespace "${name}" is served by worker ${rt.owner}, not this one; retry (a new connection may reach it)` : "this instance does not serve the drain phase yet; retry";
      throw errors.configConflict(`cannot verify that "${before.settings.from}" is drained: ${why}`);
    }
    await q.assertDrained(before.settings.from);
  }
  const { revision } = await gw.control.finishMigration(name);
  const info = migrationInfo(gw, name, { ...before, state: null });
  return { ...info, phase: "finished", revision };
}
