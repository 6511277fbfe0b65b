/**
 * The namespace router: namespace name → its runtime (config, limits, the
 * backend's claimed interfaces, the stores). Backend instances are shared by
 * namespaces whose backend block is identical (one pool per Redis URL, one
 * handle per SQLite file). Applying or deleting a namespace swaps one map
 * entry: calls already running finish on the runtime they started with.
 */
import type { Clock } from "../core/clock.js";
import type { InterfaceName, PrimitiveName } from "../core/interfaces.js";
import type { BackendDriver, BackendInstance, NamespaceLimits, NamespaceStores } from "../backends/driver.js";
import { loadDriver } from "../backends/registry.js";
import type { NamespaceConfig } from "../config/schema.js";
import { limitsOf } from "../config/defaults.js";
import { CircuitBreaker, DEFAULT_BREAKER, guardStores, type BreakerOptions } from "../shedding/breaker.js";

export interface NamespaceRuntime {
  readonly name: string;
  readonly config: NamespaceConfig;
  readonly limits: NamespaceLimits;
  readonly backendType: string;
  readonly interfaces: ReadonlySet<InterfaceName>;
  readonly primitives: ReadonlySet<PrimitiveName>;
  readonly stores: NamespaceStores;
  /** The driver's BackendDriver.inProcess: calls are not retried (src/core/gateway.ts). */
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

/** Where a namespace's state lives. The default: here. src/workers supplies one for multi-worker embedded backends. */
export type Placement = (ns: NamespaceConfig) => number | undefined;

interface PooledInstance {
  instance: BackendInstance;
  refs: number;
  /** Every call from any namespace to this instance passes through it (src/shedding/breaker.ts). */
  breaker: CircuitBreaker;
}

export interface RouterOptions {
  /** Circuit breaker defaults (server.breaker); a namespace's `breaker` block overrides them for its instance. */
  breaker?: BreakerOptions;
}

function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(",")}]`;
  if (v && typeof v === "object")
    return `{${Object.keys(v as object)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`)
      .join(",")}}`;
  return JSON.stringify(v);
}

export class Router {
  private readonly namespaces = new Map<string, NamespaceRuntime>();
  private readonly instances = new Map<string, PooledInstance>();
  private readonly instanceKeyOf = new Map<string, string>();

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

  /** Applies a validated namespace config; returns true when it is new. */
  async apply(config: NamespaceConfig): Promise<boolean> {
    const { type, ...options } = config.backend;
    const driver: BackendDriver<any> = await loadDriver(type);
    const limits = limitsOf(config);
    const owner = this.placement(config);
    let stores: NamespaceStores = {};
    let key = "";
    if (owner === undefined) {
      // Validated and defaulted by src/config/load.ts (checkNamespace) wherever the config entered.
      const parsed = options;
      key = `${type}:${stableJson(parsed)}`;
      let pooled = this.instances.get(key);
      if (!pooled) {
        pooled = {
          instance: driver.create(parsed, { clock: this.clock, log: (l, m) => this.log(l, `[${type}] ${m}`) }),
          refs: 0,
          breaker: new CircuitBreaker(`${type} (namespace ${config.name})`, this.options.breaker ?? DEFAULT_BREAKER, this.clock),
        };
        this.instances.set(key, pooled);
      }
      pooled.refs++;
      if (config.breaker) pooled.breaker.options = { failures: config.breaker.failures, probeAfterMs: config.breaker.probe_after_ms };
      pooled.breaker.namespaces.add(config.name);
      stores = guardStores(pooled.instance.namespace(config.name, limits), pooled.breaker);
    }
    const runtime: NamespaceRuntime = {
      name: config.name,
      config,
      limits,
      backendType: type,
      interfaces: new Set(driver.interfaces),
      primitives: new Set(config.primitives),
      stores,
      owner,
      inProcess: driver.inProcess === true,
      metricSeries: undefined,
    };
    const previous = this.namespaces.get(config.name);
    const previousKey = this.instanceKeyOf.get(config.name);
    this.namespaces.set(config.name, runtime);
    this.instanceKeyOf.set(config.name, key);
    if (previous) await this.release(previous, previousKey);
    return !previous;
  }

  async delete(name: string): Promise<boolean> {
    const previous = this.namespaces.get(name);
    if (!previous) return false;
    const key = this.instanceKeyOf.get(name);
    this.namespaces.delete(name);
    this.instanceKeyOf.delete(name);
    await this.release(previous, key);
    return true;
  }

  private async release(rt: NamespaceRuntime, key: string | undefined): Promise<void> {
    await rt.stores.close?.().catch(() => {});
    if (!key) return;
    const pooled = this.instances.get(key);
    if (pooled && rt.name !== "" && this.instanceKeyOf.get(rt.name) !== key) pooled.breaker.namespaces.delete(rt.name);
    if (pooled && --pooled.refs <= 0) {
      this.instances.delete(key);
      await pooled.instance.close().catch((e) => this.log("warn", `closing ${key}: ${(e as Error).message}`));
    }
  }

  /** The circuit breaker of the instance behind a namespace (Admin Health). */
  breakerOf(name: string): CircuitBreaker | undefined {
    const key = this.instanceKeyOf.get(name);
    return key ? this.instances.get(key)?.breaker : undefined;
  }

  /** The instance behind a namespace (health checks). */
  instanceOf(name: string): BackendInstance | undefined {
    const key = this.instanceKeyOf.get(name);
    return key ? this.instances.get(key)?.instance : undefined;
  }

  async close(): Promise<void> {
    for (const name of [...this.namespaces.keys()]) await this.delete(name);
  }
}
