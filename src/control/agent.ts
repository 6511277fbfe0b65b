/**
 * The control agent of one Prism instance: keeps the namespaces and backend
 * instances of the config store applied to this instance's router (or, in a
 * cluster primary, to every worker), and turns Admin changes into store writes.
 *
 *   Admin.ApplyNamespace → validate + resolve (dry run stops here) → store.write
 *     → sync(): changesSince(revision) → re-resolve what changed → sink.apply / sink.delete
 *
 * Every instance pointed at one store runs the same sync: on a notification
 * from the store (PostgreSQL LISTEN/NOTIFY), after its own writes, and every
 * pollMs as the fallback, so the fleet converges within about a second.
 * Changes apply in revision order, so the later revision wins everywhere.
 * A stored entry that no longer resolves (say, its backend instance was
 * deleted by another instance) keeps its previous runtime and is logged.
 */
import { stableJson } from "../core/stable-json.js";
import type { ConfigStore, StoredEntry, WriteOp } from "./store.js";
import type { BackendSpec, NamespaceConfig, PrismConfig } from "../config/schema.js";
import { backendRefOf, choicesOf, resolveNamespace, type ResolvedNamespace } from "../config/resolve.js";
import { errors, PrismError } from "../core/errors.js";
import type { ApplyBackendResult, ApplyNamespaceResult, BackendInstanceInfo, ControlPlane } from "../core/gateway.js";
import type { PathPolicy } from "../config/paths.js";
import { WRITER_LEASE, isDryRun, type BackfillCursor, type MigrationPhase, type MigrationSettings, type MigrationState, type ReconcileCursor, type ReconcileRequest, type RepairBatch } from "../migrations/types.js";
import { DATAKEY_KIND, type Keyring, type WrappedDataKey } from "../pii/keyring.js";

/** What Admin shows of a migration (the live numbers come from the runtime: src/primitives/admin.ts). */
export interface MigrationStatus {
  settings: MigrationSettings;
  state: MigrationState | null;
  cursor: BackfillCursor | null;
  primitive: string;
  /** KeyValue: a reconcile requested after a writer died, and its progress (null: none requested). */
  reconcile?: { request: ReconcileRequest; cursor: ReconcileCursor | null; done: boolean } | null;
}

export const NAMESPACE_KIND = "namespace";
export const BACKEND_KIND = "backend";
/** A migration's phase (src/migrations/types.ts MigrationState); a change re-applies the namespace. */
export const MIGRATION_KIND = "migration";
/** A backfill's cursor: written often, read by the backfill only (never re-applies anything). */
export const CURSOR_KIND = "migration-cursor";
/**
 * A KeyValue migration's repair journal: one entry per batch of keys whose write to one side
 * failed (name `<namespace>/<batch id>`; src/migrations/repair-journal.ts). Never re-applies anything.
 */
export const REPAIR_KIND = "migration-repair";
/**
 * A KeyValue migration's writer lease (name `<namespace>/<instance id>`): refreshed by every process
 * serving the namespace in migration (src/migrations/keyvalue.ts), deleted on its clean close. One
 * not refreshed for WRITER_LEASE.expiryMs (as this agent observed) is a process that died, maybe with
 * write-behind copies pending: checkWriters() deletes it and requests a reconcile.
 */
export const WRITER_KIND = "migration-writer";
/** A reconcile request (name `<namespace>`; src/migrations/reconcile.ts). */
export const RECONCILE_KIND = "migration-reconcile";
/** The reconcile pass's cursor (name `<namespace>`), written by the instance running it. */
export const RECONCILE_CURSOR_KIND = "migration-reconcile-cursor";
/** What prism.yaml last seeded, per entry (so that an unchanged file does not undo Admin changes). */
export const SEED_KIND = "seed";

/** Where resolved namespaces go: the router (one process) or every worker (cluster primary). */
export interface NamespaceSink {
  apply(r: ResolvedNamespace): Promise<void>;
  delete(name: string): Promise<void>;
}

/** A namespace as stored: its validated entry and the automatic choices made for it (kept while they fit). */
interface StoredNamespace {
  config: NamespaceConfig;
  choice?: Record<string, string>;
}

export interface AgentOptions {
  store: ConfigStore;
  sink: NamespaceSink;
  log: (level: "info" | "warn" | "error", msg: string) => void;
  /** The periodic revision check (default 1000 ms; 0: none). */
  pollMs?: number;
  /** File options (sqlite paths) of Admin changes are confined to this (src/config/paths.ts). */
  paths?: PathPolicy;
  /** security.kek: wraps the data keys this agent creates for `pii: encrypt` namespaces (src/pii). */
  keyring?: Keyring;
}


/** The instance names a namespace refers to by name (not the ones auto-chosen). */
function namedInstances(ns: NamespaceConfig): string[] {
  const out: string[] = [];
  for (const v of [ns.backend, ...Object.values(ns.slots ?? {})]) {
    const r = backendRefOf(v);
    if (r?.kind === "instance") out.push(r.name);
  }
  return out;
}

export class ControlAgent implements ControlPlane {
  private revision = 0;
  private readonly backends = new Map<string, { spec: BackendSpec; revision: number }>();
  private readonly namespaces = new Map<string, StoredNamespace & { revision: number }>();
  private readonly migrations = new Map<string, MigrationState>();
  private readonly cursors = new Map<string, BackfillCursor>();
  /** Writer leases by namespace, then instance: when this agent last saw each refreshed (its own clock: no skew). */
  private readonly writers = new Map<string, Map<string, number>>();
  private readonly reconcileRequests = new Map<string, ReconcileRequest>();
  private readonly reconcileCursors = new Map<string, ReconcileCursor>();
  /** Repair journal batches by namespace, then batch id. */
  private readonly repairs = new Map<string, Map<string, RepairBatch>>();
  /** The revision each repair entry was last written at (tombstones too): a sync fetched before this process's own write does not undo it. */
  private readonly repairRevisions = new Map<string, number>();
  /**
   * pii: encrypt data keys by namespace, then id (kind `datakey`, name `<ns>/<id>`). Never
   * overwritten but by a re-wrap: processes creating one at once each keep theirs readable.
   */
  private readonly dataKeys = new Map<string, Map<string, WrappedDataKey>>();
  /** What the sink has, by namespace. */
  private readonly applied = new Map<string, ResolvedNamespace>();
  private readonly appliedKey = new Map<string, string>();
  private chain: Promise<void> = Promise.resolve();
  private timer: ReturnType<typeof setInterval> | undefined;
  private unsubscribe: (() => void) | undefined;
  private closed = false;
  private storeDown = false;

  constructor(private readonly opts: AgentOptions) {}

  get storeRevision(): number {
    return this.revision;
  }

  /** The namespaces as applied (cluster primary: what a re-forked worker starts from). */
  appliedNamespaces(): ResolvedNamespace[] {
    return [...this.applied.values()];
  }

  /**
   * Seeds the store with prism.yaml (its entries win over stored ones with the
   * same name; identical entries write nothing), then applies the store's content.
   */
  async start(seed: Pick<PrismConfig, "backends" | "namespaces">): Promise<void> {
    const snap = await this.opts.store.snapshot();
    const stored = new Map(snap.entries.map((e) => [`${e.kind}/${e.name}`, e.spec]));
    const ops: WriteOp[] = [];
    const instances = new Map<string, BackendSpec>();
    for (const e of snap.entries) if (e.kind === BACKEND_KIND) instances.set(e.name, e.spec as BackendSpec);
    // prism.yaml wins for the entries it changed since it last seeded them; an entry it did not
    // change keeps what Admin made of it since (a finished migration, a hot fix), even across restarts.
    const seededBefore = (kind: string, name: string) => stored.get(`${SEED_KIND}/${kind}/${name}`);
    for (const [name, spec] of Object.entries(seed.backends ?? {})) {
      const unchangedInFile = stableJson(seededBefore(BACKEND_KIND, name)) === stableJson(spec);
      const current = stored.get(`${BACKEND_KIND}/${name}`) as BackendSpec | undefined;
      if (unchangedInFile && current) continue;
      instances.set(name, spec);
      if (stableJson(current) !== stableJson(spec)) ops.push({ kind: BACKEND_KIND, name, spec });
      ops.push({ kind: SEED_KIND, name: `${BACKEND_KIND}/${name}`, spec });
    }
    for (const ns of seed.namespaces) {
      if (ns.pii === "encrypt" && this.opts.keyring === undefined) throw new Error(`prism.yaml namespace "${ns.name}": pii: encrypt needs a key-encryption key (security.kek: { id, file | env })`);
      const before = stored.get(`${NAMESPACE_KIND}/${ns.name}`) as StoredNamespace | undefined;
      const unchangedInFile = stableJson(seededBefore(NAMESPACE_KIND, ns.name)) === stableJson(ns);
      if (before && unchangedInFile) continue;
      ops.push({ kind: SEED_KIND, name: `${NAMESPACE_KIND}/${ns.name}`, spec: ns });
      if (before && stableJson(before.config) === stableJson(ns)) continue;
      const { resolved, problems } = await resolveNamespace(ns, [], instances, before?.choice);
      if (!resolved) throw new Error(`prism.yaml namespace "${ns.name}": ${problems.join("; ")}`);
      ops.push({ kind: NAMESPACE_KIND, name: ns.name, spec: { config: ns, choice: choicesOf(resolved) } satisfies StoredNamespace });
    }
    if (ops.length) await this.opts.store.write(ops);
    await this.sync();
    const poll = this.opts.pollMs ?? 1000;
    if (poll > 0) {
      this.timer = setInterval(() => void this.sync().then(() => this.checkWriters()).catch(() => {}), poll);
      this.timer.unref?.();
    }
    this.unsubscribe = this.opts.store.subscribe?.(() => void this.sync().catch(() => {}));
  }

  /** Brings this instance up to the store's revision. Serialised: one sync at a time, in order. */
  sync(): Promise<void> {
    const run = this.chain.then(() => this.syncOnce());
    this.chain = run.catch(() => {});
    return run;
  }

  private async syncOnce(): Promise<void> {
    if (this.closed) return;
    let changes: StoredEntry[];
    let revision: number;
    try {
      ({ changes, revision } = await this.opts.store.changesSince(this.revision));
    } catch (e) {
      // Once per outage, not once per poll.
      if (!this.storeDown) this.opts.log("warn", `${(e as Error).message}; serving the last configuration (revision ${this.revision}) until the config store answers`);
      this.storeDown = true;
      throw e;
    }
    if (this.storeDown) {
      this.storeDown = false;
      this.opts.log("info", `config store ${this.opts.store.description} answers again`);
    }
    if (!changes.length) {
      this.revision = Math.max(this.revision, revision);
      return;
    }
    let backendsChanged = false;
    const touched = new Set<string>();
    for (const c of changes) {
      if (c.kind === BACKEND_KIND) {
        backendsChanged = true;
        if (c.spec === null) this.backends.delete(c.name);
        else this.backends.set(c.name, { spec: c.spec as BackendSpec, revision: c.revision });
      } else if (c.kind === CURSOR_KIND) {
        if (c.spec === null) this.cursors.delete(c.name);
        else this.cursors.set(c.name, c.spec as BackfillCursor);
      } else if (c.kind === WRITER_KIND) {
        const at = c.name.lastIndexOf("/");
        const ns = c.name.slice(0, at);
        let m = this.writers.get(ns);
        if (c.spec === null) {
          m?.delete(c.name.slice(at + 1));
          if (m?.size === 0) this.writers.delete(ns);
        } else (m ??= this.writers.set(ns, new Map()).get(ns)!).set(c.name.slice(at + 1), Date.now());
      } else if (c.kind === RECONCILE_KIND) {
        if (c.spec === null) this.reconcileRequests.delete(c.name);
        else this.reconcileRequests.set(c.name, c.spec as ReconcileRequest);
      } else if (c.kind === RECONCILE_CURSOR_KIND) {
        if (c.spec === null) this.reconcileCursors.delete(c.name);
        else this.reconcileCursors.set(c.name, c.spec as ReconcileCursor);
      } else if (c.kind === REPAIR_KIND) {
        this.applyRepair(c.name, c.spec as { atMs: number; keys: RepairBatch["keys"] } | null, c.revision);
      } else if (c.kind === MIGRATION_KIND) {
        touched.add(c.name);
        if (c.spec === null) this.migrations.delete(c.name);
        else this.migrations.set(c.name, c.spec as MigrationState);
      } else if (c.kind === DATAKEY_KIND) {
        const ns = c.name.slice(0, c.name.lastIndexOf("/"));
        const id = c.name.slice(c.name.lastIndexOf("/") + 1);
        touched.add(ns);
        let m = this.dataKeys.get(ns);
        if (c.spec === null) m?.delete(id);
        else (m ??= this.dataKeys.set(ns, new Map()).get(ns)!).set(id, { ...(c.spec as WrappedDataKey), revision: c.revision });
      } else if (c.kind === NAMESPACE_KIND) {
        touched.add(c.name);
        if (c.spec === null) this.namespaces.delete(c.name);
        else this.namespaces.set(c.name, { ...(c.spec as StoredNamespace), revision: c.revision });
      }
    }
    this.revision = Math.max(revision, ...changes.map((c) => c.revision));
    // A changed instance re-resolves every namespace (named references and automatic choices alike: cheap, and sticky).
    const names = backendsChanged ? new Set([...touched, ...this.namespaces.keys(), ...this.applied.keys()]) : touched;
    const instances = this.instanceMap();
    for (const name of [...names].sort()) {
      const entry = this.namespaces.get(name);
      if (!entry) {
        if (this.applied.delete(name)) {
          this.appliedKey.delete(name);
          await this.opts.sink.delete(name);
        }
        continue;
      }
      const { resolved, problems } = await resolveNamespace(entry.config, [], instances, entry.choice);
      if (!resolved) {
        this.opts.log("error", `namespace "${name}" (revision ${entry.revision}) no longer resolves, keeping its previous backends: ${problems.join("; ")}`);
        continue;
      }
      resolved.revision = entry.revision;
      if (resolved.migration) resolved.migration.state = this.migrations.get(name) ?? null;
      let dataKeys: WrappedDataKey[] | undefined;
      if (resolved.config.pii === "encrypt") {
        dataKeys = await this.dataKeysOf(name).catch((e: Error) => {
          this.opts.log("error", `namespace "${name}" (revision ${entry.revision}) has pii: encrypt but no data key: ${e.message}; not applied`);
          return undefined;
        });
        if (dataKeys === undefined) continue;
        // A data key this process cannot unwrap (a KEK it does not have): keep the previous runtime rather than fail the sync.
        const missing = dataKeys.find((k) => !this.opts.keyring!.has(k.kek));
        if (missing !== undefined) {
          this.opts.log("error", `namespace "${name}": its data key ${missing.id} is wrapped by KEK "${missing.kek}", which this process does not have (security.kek / previous_keks); keeping its previous configuration`);
          continue;
        }
        (resolved as ResolvedNamespace & { dataKeys?: WrappedDataKey[] }).dataKeys = dataKeys;
      }
      const key = stableJson({ c: resolved.config, s: resolved.slots, m: resolved.migration?.state ?? null, k: dataKeys?.map((k) => `${k.id}:${k.kek}:${k.wrapped}`) ?? null });
      if (this.appliedKey.get(name) === key && this.applied.get(name)?.revision === entry.revision) continue;
      await this.opts.sink.apply(resolved);
      this.applied.set(name, resolved);
      this.appliedKey.set(name, key);
    }
  }

  private applyRepair(name: string, spec: { atMs: number; keys: RepairBatch["keys"] } | null, revision: number): void {
    if ((this.repairRevisions.get(name) ?? -1) > revision) return;
    this.repairRevisions.set(name, revision);
    const at = name.lastIndexOf("/");
    const ns = name.slice(0, at);
    const id = name.slice(at + 1);
    let m = this.repairs.get(ns);
    if (spec === null) {
      m?.delete(id);
      if (m?.size === 0) this.repairs.delete(ns);
      return;
    }
    if (!m) this.repairs.set(ns, (m = new Map()));
    m.set(id, { id, atMs: spec.atMs, keys: spec.keys });
  }

  /** Delete ops for every stored repair batch of a namespace. */
  /** The leases, reconcile request and cursor of a namespace's migration, deleted (start and finish). */
  private reconcileDeletes(name: string): WriteOp[] {
    return [
      ...[...(this.writers.get(name)?.keys() ?? [])].map((id) => ({ kind: WRITER_KIND, name: `${name}/${id}`, spec: null })),
      { kind: RECONCILE_KIND, name, spec: null },
      { kind: RECONCILE_CURSOR_KIND, name, spec: null },
    ];
  }

  /** A reconcile requested and not done yet (its latest request's cursor is not done): what finish and advance name. */
  private reconcilePending(name: string): string | undefined {
    const r = this.reconcileRequests.get(name);
    if (!r) return undefined;
    const c = this.reconcileCursors.get(name);
    if (c && c.gen === r.gen && c.done) return undefined;
    const progress = c && c.gen === r.gen ? `running on ${c.owner}, pass ${c.pass + 1} of 2, ${c.copied} key(s) copied, ${c.skipped} equal` : "not started yet";
    return `"${name}" needs a reconcile (${r.reason}): ${progress}; retry once prism migrate status shows it done`;
  }

  /**
   * Writer leases not refreshed for two refresh periods, not declared dead yet: that process may have
   * died with copies pending. Moving keys' primary now would make the reconcile that follows trust the
   * side that lacks the write, so finish and cutover advances wait for the verdict.
   */
  private staleWriters(name: string): string | undefined {
    const now = Date.now();
    const stale = [...(this.writers.get(name) ?? [])].filter(([, seen]) => now - seen > 2 * WRITER_LEASE.refreshMs).map(([id]) => id);
    if (!stale.length) return undefined;
    return `"${name}" has writer lease(s) not refreshed for over ${Math.round((2 * WRITER_LEASE.refreshMs) / 1000)} s (${stale.join(", ")}): if that process died, a reconcile follows within ${Math.round(WRITER_LEASE.expiryMs / 1000)} s; retry then`;
  }

  /**
   * Writer leases not seen refreshed for WRITER_LEASE.expiryMs: their process died, maybe with copies
   * pending. Deletes them and requests a reconcile, in one change set (several instances doing it at
   * once write the same generation, or one more: either way one more pass). Not while the config store
   * does not answer (every lease would look stale).
   */
  async checkWriters(): Promise<void> {
    if (this.closed || this.storeDown) return;
    const now = Date.now();
    for (const [ns, leases] of this.writers) {
      if (!this.migrations.has(ns)) continue;
      const dead = [...leases].filter(([, seen]) => now - seen > WRITER_LEASE.expiryMs).map(([id]) => id);
      if (!dead.length) continue;
      const gen = (this.reconcileRequests.get(ns)?.gen ?? 0) + 1;
      const reason = `writer ${dead.join(", ")} stopped refreshing its lease (gone for over ${Math.round(WRITER_LEASE.expiryMs / 1000)} s), maybe with copies pending`;
      this.opts.log("warn", `migration ${ns}: ${reason}: requesting a reconcile`);
      const request: ReconcileRequest = { gen, atMs: now, reason };
      await this.write([...dead.map((id) => ({ kind: WRITER_KIND, name: `${ns}/${id}`, spec: null })), { kind: RECONCILE_KIND, name: ns, spec: request }]);
      this.reconcileRequests.set(ns, request);
      for (const id of dead) leases.delete(id);
    }
  }

  private repairDeletes(name: string): WriteOp[] {
    return [...(this.repairs.get(name)?.keys() ?? [])].map((id) => ({ kind: REPAIR_KIND, name: `${name}/${id}`, spec: null }));
  }

  /** A pii: encrypt namespace's wrapped data keys, creating the first one (written to the store) when it has none. */
  private async dataKeysOf(name: string): Promise<WrappedDataKey[]> {
    const keyring = this.opts.keyring;
    if (keyring === undefined) throw new Error("this process has no key-encryption key (security.kek)");
    const have = this.dataKeys.get(name);
    if (have !== undefined && have.size > 0) return [...have.values()];
    const w = keyring.newDataKey(name);
    const r = await this.opts.store.write([{ kind: DATAKEY_KIND, name: `${name}/${w.id}`, spec: w }]);
    // This process's revision moves on at the next sync, which reads this entry back with the others.
    const k = { ...w, revision: r.revision };
    this.dataKeys.set(name, new Map([[w.id, k]]));
    return [k];
  }

  private instanceMap(): Map<string, BackendSpec> {
    return new Map([...this.backends].map(([k, v]) => [k, v.spec]));
  }

  private async parse<T>(f: (load: typeof import("../config/load.js")) => Promise<T>, field: string): Promise<T> {
    // The validator (yaml + zod) loads on the first Admin change, not in every serving process.
    const load = await import("../config/load.js");
    try {
      return await f(load);
    } catch (e) {
      if (e instanceof load.ConfigError) throw errors.invalidArgument(field, e.problems.join("; "));
      throw e;
    }
  }

  /** Up to date with the store, or UNAVAILABLE naming it (an Admin change needs the store). */
  private async current(): Promise<void> {
    try {
      await this.sync();
    } catch (e) {
      throw e instanceof PrismError ? e : errors.unavailable((e as Error).message, e);
    }
  }

  private async write(ops: WriteOp[]) {
    try {
      return await this.opts.store.write(ops);
    } catch (e) {
      throw e instanceof PrismError ? e : errors.unavailable((e as Error).message, e);
    }
  }

  async applyNamespace(entry: unknown, opts: { dryRun?: boolean } = {}): Promise<ApplyNamespaceResult> {
    const ns = await this.parse((l) => (typeof entry === "string" ? l.parseNamespaceText(entry, process.env, this.opts.paths) : l.parseNamespaceEntry(entry, process.env, "namespace", this.opts.paths)), typeof entry === "string" ? "config" : "namespace");
    if (ns.pii === "encrypt" && this.opts.keyring === undefined) throw errors.invalidArgument("namespace.pii", "encrypt needs a key-encryption key: set security.kek in prism.yaml on the Prism instances");
    await this.current();
    const before = this.namespaces.get(ns.name);
    const { resolved, problems } = await resolveNamespace(ns, [], this.instanceMap(), before?.choice);
    if (!resolved) throw errors.invalidArgument(typeof entry === "string" ? "config" : "namespace", problems.join("; "));
    if (opts.dryRun) return { namespace: { ...resolved, revision: before?.revision ?? 0 }, created: !before, revision: this.revision, applied: false };
    const w = await this.write([{ kind: NAMESPACE_KIND, name: ns.name, spec: { config: ns, choice: choicesOf(resolved) } satisfies StoredNamespace }]);
    await this.current();
    const now = this.applied.get(ns.name);
    return { namespace: now ?? { ...resolved, revision: w.revision }, created: !before, revision: w.revision, applied: true };
  }

  async deleteNamespace(name: string): Promise<{ deleted: boolean; revision: number }> {
    await this.current();
    const w = await this.write([{ kind: NAMESPACE_KIND, name, spec: null }]);
    await this.current();
    return { deleted: w.written[0] === true, revision: w.revision };
  }

  /** Namespaces whose slots use instance `name` (by name or by automatic choice). */
  private dependents(name: string): string[] {
    const out = new Set<string>();
    for (const [ns, e] of this.namespaces) if (namedInstances(e.config).includes(name)) out.add(ns);
    for (const [ns, r] of this.applied) if (r.slots.some((s) => s.instance === name)) out.add(ns);
    return [...out].sort();
  }

  async applyBackend(name: string, spec: unknown, opts: { dryRun?: boolean } = {}): Promise<ApplyBackendResult> {
    const parsed = await this.parse((l) => l.parseBackendEntry(name, spec, process.env, this.opts.paths), "backend");
    await this.current();
    const instances = this.instanceMap();
    const created = !instances.has(name);
    instances.set(name, parsed);
    // Every namespace using it must still resolve on the new definition.
    const users = this.dependents(name);
    const problems: string[] = [];
    for (const ns of users) {
      const e = this.namespaces.get(ns);
      if (!e) continue;
      const r = await resolveNamespace(e.config, [], instances, e.choice);
      if (!r.resolved) problems.push(`namespace "${ns}": ${r.problems.join("; ")}`);
    }
    if (problems.length) throw errors.configConflict(`backend "${name}" cannot change so: ${problems.join("; ")}`);
    if (opts.dryRun) return { backend: this.info(name, parsed, this.backends.get(name)?.revision ?? 0), created, revision: this.revision, applied: false, namespaces: users };
    const w = await this.write([{ kind: BACKEND_KIND, name, spec: parsed }]);
    await this.current();
    return { backend: this.info(name, parsed, w.revision), created, revision: w.revision, applied: true, namespaces: users };
  }

  async deleteBackend(name: string): Promise<{ deleted: boolean; revision: number }> {
    await this.current();
    const users = this.dependents(name);
    if (users.length) throw errors.configConflict(`backend "${name}" is used by namespace${users.length === 1 ? "" : "s"} ${users.map((u) => `"${u}"`).join(", ")}; change or delete them first`);
    const w = await this.write([{ kind: BACKEND_KIND, name, spec: null }]);
    await this.current();
    return { deleted: w.written[0] === true, revision: w.revision };
  }

  private info(name: string, spec: BackendSpec, revision: number): BackendInstanceInfo {
    const { type, ...options } = spec;
    return { name, type, options, namespaces: this.dependents(name), revision };
  }

  async listBackendInstances(): Promise<BackendInstanceInfo[]> {
    await this.current().catch(() => {}); // a store that does not answer: the last known instances
    return [...this.backends].sort(([a], [b]) => (a < b ? -1 : 1)).map(([n, v]) => this.info(n, v.spec, v.revision));
  }

  // ---------------------------------------------------------------- migrations

  private migratable(name: string): { entry: StoredNamespace & { revision: number }; resolved: ResolvedNamespace } {
    const entry = this.namespaces.get(name);
    const resolved = this.applied.get(name);
    if (!entry || !resolved) throw errors.unknownNamespace(name);
    if (!resolved.migration) throw errors.configConflict(`namespace "${name}" has no migration: block (add migration: { to: <instance> } and apply it)`);
    return { entry, resolved };
  }

  async migrationStatus(name: string): Promise<MigrationStatus> {
    await this.current().catch(() => {});
    const { resolved } = this.migratable(name);
    const cursor = await this.loadCursor(name).catch(() => null);
    const request = this.reconcileRequests.get(name);
    const rc = this.reconcileCursors.get(name) ?? null;
    const reconcile = request ? { request, cursor: rc, done: this.reconcilePending(name) === undefined } : null;
    return { settings: resolved.migration!.settings, state: this.migrations.get(name) ?? null, cursor, primitive: resolved.migration!.to.primitive, reconcile };
  }

  private async writeState(name: string, state: MigrationState): Promise<MigrationStatus> {
    await this.write([{ kind: MIGRATION_KIND, name, spec: state }]);
    await this.current();
    return this.migrationStatus(name);
  }

  /** `dryRun`: never serve from `to` in this run of the migration (as `dry_run: true` in its block). */
  async startMigration(name: string, opts: { dryRun?: boolean } = {}): Promise<MigrationStatus> {
    await this.current();
    const { resolved } = this.migratable(name);
    const running = this.migrations.get(name);
    // `start` without --dry-run on a run started with it: the same run goes on for real, in the phase it reached.
    if (running?.dryRun && !opts.dryRun) return this.writeState(name, { ...running, dryRun: undefined });
    if (running) throw errors.configConflict(`the migration of "${name}" is already running (phase ${running.phase}); see prism migrate status`);
    const p = resolved.migration!.to.primitive;
    // Draining sends new messages to `to` from the start: there is no phase that copies without serving.
    if (p === "queue" && (opts.dryRun || resolved.migration!.settings.dryRun)) throw errors.configConflict(`a queue migration cannot be a dry run: its drain sends new messages to "${resolved.migration!.settings.to}" from the start`);
    const phase: MigrationPhase = p === "keyvalue" ? "dual_write" : p === "queue" ? "drain" : "shadow";
    // A repair journal left by an earlier migration of the namespace (its block removed by hand) is not this one's.
    await this.write([{ kind: CURSOR_KIND, name, spec: null }, ...this.repairDeletes(name), ...this.reconcileDeletes(name)]);
    return this.writeState(name, { phase, step: 0, startedAtMs: Date.now(), ...(opts.dryRun ? { dryRun: true } : {}) });
  }

  async advanceMigration(name: string): Promise<MigrationStatus> {
    await this.current();
    const { resolved } = this.migratable(name);
    const state = this.migrations.get(name);
    if (!state) throw errors.configConflict(`the migration of "${name}" has not started (prism migrate start ${name})`);
    const s = resolved.migration!.settings;
    const next: MigrationState = { ...state, rolledBack: undefined };
    if (state.rolledBack) {
      // After a rollback, advance resumes the step that was rolled back (the operator decided it is safe).
    } else if (state.phase === "dual_write") next.phase = "backfill";
    else if (state.phase === "backfill") {
      const c = await this.loadCursor(name);
      if (!c?.done) throw errors.configConflict(`the backfill of "${name}" is not done (${c ? `${c.copied + c.skipped} keys so far` : "not started"}); advance when prism migrate status says done`);
      next.phase = "shadow";
      next.backfillDone = true;
    } else if (state.phase === "shadow") {
      if (resolved.migration!.to.primitive !== "keyvalue") throw errors.configConflict(`"${name}" is in shadow; finish it to switch to "${s.to}"`);
      if (isDryRun(s, state)) throw errors.configConflict(`the migration of "${name}" is a dry run: it never serves from "${s.to}"`);
      const pending = this.reconcilePending(name) ?? this.staleWriters(name);
      if (pending) throw errors.configConflict(pending);
      next.phase = "cutover";
      next.step = 0;
    } else if (state.phase === "cutover") {
      const pending = this.reconcilePending(name) ?? this.staleWriters(name);
      if (pending) throw errors.configConflict(pending);
      if (state.step >= s.cutoverSteps.length - 1) throw errors.configConflict(`"${name}" is served by "${s.to}" for every key; finish the migration`);
      next.step = state.step + 1;
    } else throw errors.configConflict(`"${name}" is draining its queues; finish the migration once "${s.from}" is empty`);
    return this.writeState(name, next);
  }

  async rollbackMigration(name: string, reason = "rolled back by the operator", automatic = false): Promise<MigrationStatus> {
    await this.current();
    this.migratable(name);
    const state = this.migrations.get(name);
    if (!state) throw errors.configConflict(`the migration of "${name}" has not started`);
    if (state.rolledBack) return this.migrationStatus(name);
    return this.writeState(name, { ...state, rolledBack: { reason, atMs: Date.now(), automatic }, rollbacks: (state.rollbacks ?? 0) + 1 });
  }

  /** Binds the slot to `to` for good and forgets the migration, in one change set. */
  async finishMigration(name: string): Promise<{ revision: number }> {
    await this.current();
    const { entry, resolved } = this.migratable(name);
    const state = this.migrations.get(name);
    const m = resolved.migration!;
    const s = m.settings;
    if (!state) throw errors.configConflict(`the migration of "${name}" has not started`);
    if (state.rolledBack) throw errors.configConflict(`the migration of "${name}" was rolled back (${state.rolledBack.reason}); advance or remove it`);
    if (isDryRun(s, state)) throw errors.configConflict(`the migration of "${name}" is a dry run: it never switches to "${s.to}" (remove the migration block, or start it again without --dry-run)`);
    if (m.to.primitive === "keyvalue") {
      // A writer that died with copies pending: `to` may hold older values than the last acknowledged writes.
      const pending = this.reconcilePending(name) ?? this.staleWriters(name);
      if (pending) throw errors.configConflict(pending);
    }
    const kvDone = state.phase === "cutover" && state.step === s.cutoverSteps.length - 1;
    if (m.to.primitive === "keyvalue" ? !kvDone : state.phase !== (m.to.primitive === "queue" ? "drain" : "shadow")) {
      throw errors.configConflict(`"${name}" cannot finish in phase ${state.phase}${state.phase === "cutover" ? ` at ${s.cutoverSteps[state.step]}%` : ""}: ${m.to.primitive === "keyvalue" ? "cut every key over first (100%)" : "start it first"}`);
    }
    if (m.to.primitive === "keyvalue") {
      // Keys whose last acknowledged write did not reach `to` (recorded by any instance): switching now would serve them stale.
      const behind = new Set<string>();
      for (const b of this.repairs.get(name)?.values() ?? []) for (const [k, side] of b.keys) if (side === "to") behind.add(k);
      if (behind.size) throw errors.configConflict(`"${name}" has ${behind.size} key${behind.size === 1 ? "" : "s"} recorded for repair on "${s.to}" (a write to it failed; the repair copies them from "${s.from}"); finish once prism migrate status shows repairs pending 0`);
    }
    const config: NamespaceConfig = structuredClone(entry.config);
    delete config.migration;
    if (config.slots && config.slots[s.slot] !== undefined) config.slots[s.slot] = s.to;
    else config.backend = s.to;
    const w = await this.write([
      { kind: NAMESPACE_KIND, name, spec: { config, choice: entry.choice } satisfies StoredNamespace },
      { kind: MIGRATION_KIND, name, spec: null },
      { kind: CURSOR_KIND, name, spec: null },
      // Batches left only list keys behind on `from`, which is no longer read.
      ...this.repairDeletes(name),
      ...this.reconcileDeletes(name),
    ]);
    await this.current();
    return { revision: w.revision };
  }

  // MigrationHost: the backfill's cursor, automatic rollbacks.
  async loadCursor(name: string): Promise<BackfillCursor | null> {
    await this.sync();
    return this.cursors.get(name) ?? null;
  }

  async saveCursor(name: string, c: BackfillCursor): Promise<void> {
    await this.opts.store.write([{ kind: CURSOR_KIND, name, spec: c }]);
  }

  async rollback(name: string, reason: string, automatic: boolean): Promise<unknown> {
    return this.rollbackMigration(name, reason, automatic);
  }

  // MigrationHost: the repair journal (src/migrations/repair-journal.ts).
  async loadRepairs(name: string): Promise<RepairBatch[] | null> {
    if (!this.migrations.has(name)) return null;
    return [...(this.repairs.get(name)?.values() ?? [])];
  }

  async writeRepairs(name: string, put: RepairBatch[], remove: string[]): Promise<void> {
    const ops: WriteOp[] = [
      ...put.map((b) => ({ kind: REPAIR_KIND, name: `${name}/${b.id}`, spec: { atMs: b.atMs, keys: b.keys } })),
      ...remove.map((id) => ({ kind: REPAIR_KIND, name: `${name}/${id}`, spec: null })),
    ];
    if (!ops.length) return;
    const w = await this.write(ops);
    // Known here at once (the next load reads it), before the next sync brings the same change.
    for (const b of put) this.applyRepair(`${name}/${b.id}`, { atMs: b.atMs, keys: b.keys }, w.revision);
    for (const id of remove) this.applyRepair(`${name}/${id}`, null, w.revision);
  }

  // MigrationHost: writer leases and the reconcile (src/migrations/reconcile.ts).
  async writerLease(name: string, instance: string, alive: boolean): Promise<void> {
    await this.write([{ kind: WRITER_KIND, name: `${name}/${instance}`, spec: alive ? { heartbeatMs: Date.now() } : null }]);
  }

  async loadReconcile(name: string): Promise<{ request: ReconcileRequest; cursor: ReconcileCursor | null } | null> {
    await this.sync();
    if (!this.migrations.has(name)) return null;
    const request = this.reconcileRequests.get(name);
    return request ? { request, cursor: this.reconcileCursors.get(name) ?? null } : null;
  }

  async saveReconcile(name: string, c: ReconcileCursor): Promise<void> {
    await this.write([{ kind: RECONCILE_CURSOR_KIND, name, spec: c }]);
    this.reconcileCursors.set(name, c);
  }

  /** Stops following the store (nothing more is applied) but keeps it open for the runtimes' last writes on their close (writer leases, repair journal) until close(). */
  async quiesce(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.unsubscribe?.();
    await this.chain.catch(() => {});
  }

  async close(): Promise<void> {
    await this.quiesce();
    await this.opts.store.close();
  }
}

export { PrismError };
