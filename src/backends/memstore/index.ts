/**
 * memstore: everything in process memory, instant start, every interface.
 * The reference backend for tests and benchmarks. Data lives as long as the
 * instance; a namespace that is removed and re-added on the same instance
 * finds its data again. All time decisions use the injected Clock.
 */
import type { MemstoreOptions } from "./options.js";
import { errors } from "../../core/errors.js";
import { INTERFACES } from "../../core/interfaces.js";
import { LocalPubSub } from "../common/local-pubsub.js";
import type { BackendDriver, BackendHealth, BackendInstance, DriverContext, NamespaceLimits, NamespaceStores } from "../driver.js";
import { MemKeyValue, type KvStats } from "./keyvalue.js";
import { MemQueue } from "./queue.js";
import { MemStream } from "./stream.js";
import { MemIdempotency } from "../common/idempotency-memory.js";
import { MemKeyValueOnce, MemPubSubOnce, MemQueueOnce, MemStreamOnce } from "./once.js";
import type { NsContext } from "./wait.js";

const MiB = 1024 * 1024;

export type { MemstoreOptions };

const DEFAULT_SWEEP_MS = 1000;
/** Keys removed per namespace per sweep tick, so a mass expiry cannot stall the event loop. */
const SWEEP_BUDGET = 10_000;

/** One namespace's data; survives re-applying the namespace (only `ctx.limits` changes). */
class MemNamespace {
  readonly ctx: NsContext;
  readonly keyvalue: MemKeyValue;
  readonly pubsub: LocalPubSub;
  readonly queue: MemQueue;
  readonly stream: MemStream;
  /** Idempotency records of the keyed writes (every store of the namespace). */
  readonly idem: MemIdempotency;
  /** Live NamespaceStores handed out for this namespace. */
  views = 0;

  constructor(ctx: NsContext) {
    this.ctx = ctx;
    this.idem = new MemIdempotency(ctx.clock);
    this.keyvalue = new MemKeyValueOnce(ctx.clock, this.idem);
    this.pubsub = new MemPubSubOnce(ctx.clock, this.idem);
    this.queue = new MemQueueOnce(ctx, this.idem);
    this.stream = new MemStreamOnce(ctx, this.idem);
  }

  /** Ends subscriptions and parked long polls; data stays. */
  detach(reason: Error): void {
    this.ctx.epoch++;
    this.pubsub.closeAll(reason);
    this.queue.wakeAll();
    this.stream.wakeAll();
  }
}

export class MemstoreInstance implements BackendInstance {
  private readonly namespaces = new Map<string, MemNamespace>();
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(
    options: MemstoreOptions,
    private readonly dctx: DriverContext,
  ) {
    this.timer = setInterval(() => this.sweep(), options.sweep_interval_ms ?? DEFAULT_SWEEP_MS);
    this.timer.unref();
  }

  /**
   * Re-applying a namespace returns stores over the same data with the new
   * limits. The stores' close() ends that namespace's subscriptions and long
   * polls only when no other live NamespaceStores for it remain (so a config
   * reload, which opens the new view before closing the old, keeps them).
   */
  namespace(name: string, limits: NamespaceLimits): NamespaceStores {
    let ns = this.namespaces.get(name);
    if (ns) ns.ctx.limits = limits;
    else this.namespaces.set(name, (ns = new MemNamespace({ clock: this.dctx.clock, limits, epoch: 0 })));
    ns.views++;
    const owner = ns;
    let open = true;
    return {
      keyvalue: owner.keyvalue,
      pubsub: owner.pubsub,
      queue: owner.queue,
      stream: owner.stream,
      close: async () => {
        if (!open) return;
        open = false;
        if (--owner.views === 0) owner.detach(errors.unavailable(`namespace "${name}" was removed`));
      },
    };
  }

  async health(): Promise<BackendHealth> {
    return this.closed
      ? { ok: false, latencyMs: 0, message: "closed" }
      : { ok: true, latencyMs: 0, message: `in-process, ${this.namespaces.size} namespace(s)` };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    for (const ns of this.namespaces.values()) {
      ns.detach(errors.unavailable("memstore backend closed"));
      ns.keyvalue.clear();
      ns.queue.clear();
      ns.stream.clear();
      ns.idem.clear();
    }
    this.namespaces.clear();
  }

  /** Removes expired keys from memory now; returns how many. The interval calls it; tests may too. */
  sweep(): number {
    const now = this.dctx.clock.now();
    let n = 0;
    for (const ns of this.namespaces.values()) {
      n += ns.keyvalue.sweep(now, SWEEP_BUDGET);
      ns.idem.sweep(now, SWEEP_BUDGET);
    }
    return n;
  }

  /** Key counts held in memory for a namespace (expired-but-unswept keys included). */
  kvStats(namespace: string): KvStats | undefined {
    return this.namespaces.get(namespace)?.keyvalue.stats();
  }
}

export const driver: BackendDriver<MemstoreOptions> = {
  type: "memstore",
  description: "in-process memory: instant start, every interface but keyvalue_outbox, data lost on exit",
  // Every interface but keyvalue_outbox: an outbox store must keep committed messages across a crash.
  interfaces: INTERFACES.filter((i) => i !== "keyvalue_outbox"),
  inProcess: true,
  properties: {
    // In this process's memory: gone when Prism stops. Values up to Prism's own ceiling (limits.max_value_bytes, 64 MiB).
    keyvalue: { durable: false, consistency: "strong", maxValueBytes: 64 * MiB, latencyP99Ms: 3, throughputRps: 400_000, measured: "bench ws-kv-get-memstore (README table: 430.5K/s, p99 2.53 ms)" },
    pubsub: { durable: false, ordering: true, delivery: ["at-most-once"], maxValueBytes: 64 * MiB },
    queue: { durable: false, ordering: true, delivery: ["at-least-once"], maxValueBytes: 64 * MiB, consistency: "strong", latencyP99Ms: 3, throughputRps: 120_000, measured: "bench ws-queue-memstore (README table: 126.6K/s, p99 2.95 ms)" },
    stream: { durable: false, ttl: true, ordering: true, delivery: ["at-least-once"], maxValueBytes: 64 * MiB, consistency: "strong" },
  },
  create(options, ctx) {
    return new MemstoreInstance(options, ctx);
  },
};
