/**
 * The namespace router: namespace name → its runtime (config, limits, its
 * slots and their backends' claimed interfaces, the stores). Backend instances
 * are pooled by their options: every namespace naming one instance (or with an
 * identical inline backend) shares one connection pool / file handle and one
 * circuit breaker. Applying or deleting a namespace swaps one map entry: calls
 * already running finish on the runtime they started with.
 */
import { stableJson } from "../core/stable-json.js";
import type { Clock } from "../core/clock.js";
import { PATTERN_ONLY_INTERFACES, type ApiName, type InterfaceName, type SlotFamily } from "../core/interfaces.js";
import type { BackendDriver, BackendInstance, NamespaceLimits, NamespaceStores } from "../backends/driver.js";
import { loadDriver } from "../backends/registry.js";
import type { NamespaceConfig } from "../config/schema.js";
import type { ResolvedNamespace } from "../config/resolve.js";
import { limitsOf } from "../config/defaults.js";
import { patternByName, primitiveOf } from "../patterns/registry.js";
import { MigratingKeyValueStore } from "../migrations/keyvalue.js";
import { DrainingQueueStore } from "../migrations/queue.js";
import { RepairJournal } from "../migrations/repair-journal.js";
import { ShadowCopy } from "../migrations/shadow.js";
import type { MigrationHost, MigrationSettings, MigrationState } from "../migrations/types.js";
import { CircuitBreaker, DEFAULT_BREAKER, guardStores, type BreakerOptions } from "../shedding/breaker.js";
import { encryptStores } from "../pii/stores.js";
import type { Cipher } from "../pii/envelope.js";
import type { Keyring, WrappedDataKey } from "../pii/keyring.js";

/** One slot of a namespace: the backend instance that serves it. */
export interface SlotRuntime {
  readonly slot: string;
  readonly primitive: SlotFamily;
  /** The instance's name ("" for an inline backend). */
  readonly instance: string;
  readonly backendType: string;
  readonly interfaces: ReadonlySet<InterfaceName>;
  /** This namespace's stores on the slot's instance (guarded by the instance's breaker); empty when another worker owns the state. */
  readonly stores: NamespaceStores;
}

export interface NamespaceRuntime {
  readonly name: string;
  readonly config: NamespaceConfig;
  /** Pattern, slots and the backend choice explained (src/config/resolve.ts). */
  readonly resolved: ResolvedNamespace;
  readonly limits: NamespaceLimits;
  /** The backend type; several slots on different types: "redis+postgres" (metric label, errors). */
  readonly backendType: string;
  /** Per primitive, the interfaces its slot's backend claims (one lookup per optional-interface check). */
  readonly interfaces: ReadonlySet<InterfaceName>;
  readonly primitives: ReadonlySet<ApiName>;
  /** Per primitive, the store of the slot serving it. */
  readonly stores: NamespaceStores;
  readonly slots: readonly SlotRuntime[];
  /** Set while a slot is in migration and its migration has started. */
  readonly migration?: MigrationRuntime;
  /** A composed pattern's service object (its API's handlers use it: src/primitives/registry.ts). */
  readonly patternService?: unknown;
  /** A composed pattern's event counts (prism_pattern_events_total). */
  readonly patternCounters?: Readonly<Record<string, number>>;
  /** Every slot's driver is in-process (memstore): calls are not retried (src/core/gateway.ts). */
  readonly inProcess?: boolean;
  /**
   * Metric series of this runtime by method id, cached by src/observability
   * (a runtime is replaced on every apply, so a changed backend starts afresh).
   */
  metricSeries?: { owner: object; byMethod: (object | undefined)[] };
  /**
   * Set when another worker owns this namespace's state (embedded backends
   * with several workers): calls are forwarded to that worker.
   */
  readonly owner?: number;
}

/** The live side of a namespace's migration (Admin status reads its numbers). */
export interface MigrationRuntime {
  settings: MigrationSettings;
  state: MigrationState;
  kv?: MigratingKeyValueStore;
  queue?: DrainingQueueStore;
  shadow?: ShadowCopy;
}

/** Where a namespace's state lives. The default: here. src/workers supplies one for multi-worker embedded backends. */
export type Placement = (ns: ResolvedNamespace) => number | undefined;

interface PooledInstance {
  instance: BackendInstance;
  refs: number;
  /** Every call from any namespace to this instance passes through it (src/shedding/breaker.ts). */
  breaker: CircuitBreaker;
}

export interface RouterOptions {
  /** Circuit breaker defaults (server.breaker); a namespace's `breaker` block overrides them for its instance. */
  breaker?: BreakerOptions;
  /** How long an instance no namespace holds stays open for the calls still running on it (default 10 s). */
  releaseGraceMs?: number;
}


/** Per namespace: the pool keys of the instances it holds (one ref each). */
type Held = string[];

export class Router {
  private readonly namespaces = new Map<string, NamespaceRuntime>();
  private readonly instances = new Map<string, PooledInstance>();
  private readonly held = new Map<string, Held>();
  private readonly retiring = new Map<string, { timer: ReturnType<typeof setTimeout>; close(): void }>();
  private closing = false;
  /** Backfill cursors and automatic rollbacks go here (the control plane; set once it exists). */
  migrationHost: MigrationHost | undefined;
  /** The KEKs (security.kek): a `pii: encrypt` namespace's slots are wrapped to encrypt values (src/pii). */
  keyring: Keyring | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly log: (level: "info" | "warn" | "error", msg: string) => void = () => {},
    private readonly placement: Placement = () => undefined,
    private readonly options: RouterOptions = {},
  ) {}

  get(name: string): NamespaceRuntime | undefined {
    return this.namespaces.get(name);
  }

  list(): NamespaceRuntime[] {
    return [...this.namespaces.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  get size(): number {
    return this.namespaces.size;
  }

  /** Applies a resolved namespace (src/config/resolve.ts); returns true when it is new. */
  async apply(resolved: ResolvedNamespace): Promise<boolean> {
    const config = resolved.config;
    const limits = limitsOf(config);
    const owner = this.placement(resolved);
    // pii: encrypt: the namespace's data keys (wrapped, attached by the control agent) unwrapped before anything is opened.
    const cipher = config.pii === "encrypt" && owner === undefined ? this.cipherOf(config.name, (resolved as { dataKeys?: WrappedDataKey[] }).dataKeys) : undefined;
    // Payload (object) stores are not wrapped by src/pii/stores.ts: refused rather than stored in plaintext.
    if (config.pii === "encrypt" && resolved.slots.some((s) => (s.primitive as string) === "payload")) throw new Error(`namespace "${config.name}": pii: encrypt does not cover payload (claim-check) slots yet`);
    const held: Held = [];
    const storesByKey = new Map<string, NamespaceStores>();
    const slots: SlotRuntime[] = [];
    const stores: { -readonly [K in keyof NamespaceStores]: NamespaceStores[K] } = {};
    const interfaces = new Set<InterfaceName>();
    const closers: (() => Promise<void>)[] = [];
    const served = new Set<SlotFamily>();
    for (const s of resolved.slots) {
      const driver: BackendDriver<any> = await loadDriver(s.type);
      let slotStores: NamespaceStores = {};
      if (owner === undefined) {
        const key = `${s.type}:${stableJson(s.options)}`;
        let ns = storesByKey.get(key);
        if (ns === undefined) {
          const pooled = this.pooled(key, s.type, s.instance, s.options, driver, config.name);
          held.push(key);
          if (config.breaker) pooled.breaker.options = { failures: config.breaker.failures, probeAfterMs: config.breaker.probe_after_ms };
          pooled.breaker.namespaces.add(config.name);
          const raw = pooled.instance.namespace(config.name, limits);
          if (raw.close) closers.push(() => raw.close!());
          ns = guardStores(raw, pooled.breaker);
          if (cipher !== undefined) ns = encryptStores(ns, cipher, this.log);
          storesByKey.set(key, ns);
        }
        slotStores = ns;
      }
      const claimed = new Set<InterfaceName>(driver.interfaces);
      slots.push({ slot: s.slot, primitive: s.primitive, instance: s.instance, backendType: s.type, interfaces: claimed, stores: slotStores });
      // A primitive is served by the first slot of its family: its store and its interface claims.
      if (!served.has(s.primitive)) {
        served.add(s.primitive);
        if (owner === undefined) (stores as Record<string, unknown>)[s.primitive] = slotStores[s.primitive];
        for (const i of driver.interfaces) if (primitiveOf(i) === s.primitive && !PATTERN_ONLY_INTERFACES.has(i)) interfaces.add(i);
      }
    }
    // A slot in migration: its primitive's store is wrapped to reach both instances (src/migrations).
    let migration: MigrationRuntime | undefined;
    const mig = resolved.migration;
    if (mig?.state && owner === undefined) {
      const to = mig.to;
      const key = `${to.type}:${stableJson(to.options)}`;
      const toDriver: BackendDriver<any> = await loadDriver(to.type);
      const pooled = this.pooled(key, to.type, to.instance, to.options, toDriver, config.name);
      held.push(key);
      pooled.breaker.namespaces.add(config.name);
      const raw = pooled.instance.namespace(config.name, limits);
      if (raw.close) closers.push(() => raw.close!());
      const guarded = guardStores(raw, pooled.breaker);
      const toStores = cipher !== undefined ? encryptStores(guarded, cipher, this.log) : guarded;
      const fromStores = slots.find((s) => s.slot === mig.settings.slot)!.stores;
      const log = (l: "info" | "warn" | "error", m: string) => this.log(l, m);
      migration = { settings: mig.settings, state: mig.state };
      if (to.primitive === "keyvalue" && fromStores.keyvalue && toStores.keyvalue) {
        const kv = new MigratingKeyValueStore(config.name, fromStores.keyvalue, toStores.keyvalue, mig.settings, mig.state, this.migrationHost, this.clock, log);
        (stores as Record<string, unknown>).keyvalue = kv;
        migration.kv = kv;
        closers.push(() => kv.close());
        // Its pending repairs are recorded in the config store and shared by every instance (src/migrations/repair-journal.ts).
        const detach = this.migrationHost ? RepairJournal.of(config.name)?.attach(this.migrationHost, log) : undefined;
        if (detach) closers.push(async () => detach());
      } else if (to.primitive === "queue" && fromStores.queue && toStores.queue) {
        migration.queue = new DrainingQueueStore(fromStores.queue, toStores.queue);
        (stores as Record<string, unknown>).queue = migration.queue;
      } else if (to.primitive === "pubsub" && fromStores.pubsub && toStores.pubsub) {
        migration.shadow = new ShadowCopy();
        (stores as Record<string, unknown>).pubsub = migration.shadow.pubsub(fromStores.pubsub, toStores.pubsub);
      } else if (to.primitive === "stream" && fromStores.stream && toStores.stream) {
        migration.shadow = new ShadowCopy();
        (stores as Record<string, unknown>).stream = migration.shadow.stream(fromStores.stream, toStores.stream);
      }
    }
    // A composed pattern (cache-aside …) serves its API from stores built over its slots'.
    const def = resolved.pattern ? patternByName(resolved.pattern) : undefined;
    let patternCounters: Readonly<Record<string, number>> | undefined;
    let patternService: unknown;
    if (def?.compose) {
      for (const k of Object.keys(stores)) delete (stores as Record<string, unknown>)[k];
      interfaces.clear();
      for (const i of def.claims?.(new Map(slots.map((s) => [s.slot, s.interfaces])), config.options ?? {}) ?? []) interfaces.add(i);
      if (owner === undefined) {
        const composed = def.compose({
          namespace: config.name,
          options: config.options ?? {},
          slots: new Map(slots.map((s) => [s.slot, s])),
          clock: this.clock,
          log: (l, m) => this.log(l, `[namespace ${config.name}, ${def.name}] ${m}`),
        });
        Object.assign(stores, composed.stores);
        patternCounters = composed.counters;
        patternService = composed.service;
        if (composed.close) closers.push(() => composed.close!());
      }
    }
    if (closers.length) stores.close = async () => void (await Promise.all(closers.map((c) => c().catch(() => {}))));
    const types = [...new Set(resolved.slots.map((s) => s.type))];
    const runtime: NamespaceRuntime = {
      name: config.name,
      config,
      resolved,
      limits,
      backendType: types.join("+"),
      interfaces,
      primitives: new Set(config.primitives),
      stores,
      slots,
      owner,
      patternCounters,
      patternService,
      migration,
      inProcess: resolved.slots.length > 0 && resolved.slots.every((s) => s.inProcess),
      metricSeries: undefined,
    };
    const previous = this.namespaces.get(config.name);
    const previousHeld = this.held.get(config.name);
    this.namespaces.set(config.name, runtime);
    this.held.set(config.name, held);
    if (previous) await this.release(previous, previousHeld ?? []);
    return !previous;
  }

  private cipherOf(name: string, keys: WrappedDataKey[] | undefined): Cipher {
    if (this.keyring === undefined) throw new Error(`namespace "${name}" has pii: encrypt but this process has no security.kek`);
    if (!keys?.length) throw new Error(`namespace "${name}" has pii: encrypt but no data key yet (the control agent creates it)`);
    return this.keyring.cipher(name, keys);
  }

  private pooled(key: string, type: string, instance: string, options: Record<string, unknown>, driver: BackendDriver<any>, firstNamespace: string): PooledInstance {
    let pooled = this.instances.get(key);
    const retiring = this.retiring.get(key);
    if (retiring) {
      clearTimeout(retiring.timer);
      this.retiring.delete(key);
    }
    if (!pooled) {
      const label = instance ? `${instance} (${type})` : type;
      const inst = driver.create(options, { clock: this.clock, log: (l, m) => this.log(l, `[${label}] ${m}`) });
      pooled = {
        instance: inst,
        refs: 0,
        // While open, the breaker runs the instance's own health check and probes as soon as it passes.
        breaker: new CircuitBreaker(instance ? label : `${type} (namespace ${firstNamespace})`, this.options.breaker ?? DEFAULT_BREAKER, this.clock, () => inst.health().then((h) => h.ok)),
      };
      this.instances.set(key, pooled);
    }
    pooled.refs++;
    return pooled;
  }

  async delete(name: string): Promise<boolean> {
    const previous = this.namespaces.get(name);
    if (!previous) return false;
    const held = this.held.get(name) ?? [];
    this.namespaces.delete(name);
    this.held.delete(name);
    await this.release(previous, held);
    return true;
  }

  private async release(rt: NamespaceRuntime, held: Held): Promise<void> {
    await rt.stores.close?.().catch(() => {});
    const now = this.held.get(rt.name) ?? [];
    for (const key of held) {
      const pooled = this.instances.get(key);
      if (!pooled) continue;
      if (!now.includes(key)) pooled.breaker.namespaces.delete(rt.name);
      if (--pooled.refs <= 0) this.retire(key, pooled);
    }
  }

  /**
   * An instance no namespace holds any more closes after a grace period, so
   * calls that started on the previous configuration of a namespace finish on
   * it; a namespace taking it up again meanwhile keeps it open.
   */
  private retire(key: string, pooled: PooledInstance): void {
    const grace = this.closing ? 0 : (this.options.releaseGraceMs ?? 10_000);
    const close = () => {
      if (pooled.refs > 0 || this.instances.get(key) !== pooled) return;
      this.instances.delete(key);
      this.retiring.delete(key);
      pooled.breaker.dispose();
      pooled.instance.close().catch((e) => this.log("warn", `closing ${key}: ${(e as Error).message}`));
    };
    if (grace === 0) return close();
    const t = setTimeout(close, grace);
    t.unref?.();
    this.retiring.set(key, { timer: t, close });
  }

  /** The circuit breaker of the (first) instance behind a namespace (Admin Health). */
  breakerOf(name: string, slot = 0): CircuitBreaker | undefined {
    const key = this.keyOf(name, slot);
    return key ? this.instances.get(key)?.breaker : undefined;
  }

  /** The instance behind a namespace's slot (health checks). */
  instanceOf(name: string, slot = 0): BackendInstance | undefined {
    const key = this.keyOf(name, slot);
    return key ? this.instances.get(key)?.instance : undefined;
  }

  private keyOf(name: string, slot: number): string | undefined {
    const rt = this.namespaces.get(name);
    const s = rt?.resolved.slots[slot];
    return s && rt.owner === undefined ? `${s.type}:${stableJson(s.options)}` : undefined;
  }

  /** Distinct backend instances open in this process. */
  get instanceCount(): number {
    return this.instances.size;
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const name of [...this.namespaces.keys()]) await this.delete(name);
    const closes: Promise<void>[] = [];
    for (const [key, r] of this.retiring) {
      clearTimeout(r.timer);
      const pooled = this.instances.get(key);
      if (pooled && pooled.refs <= 0) {
        this.instances.delete(key);
        pooled.breaker.dispose();
        closes.push(pooled.instance.close().catch(() => {}));
      }
    }
    this.retiring.clear();
    await Promise.all(closes);
  }
}
