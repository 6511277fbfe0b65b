/**
 * Patterns: what a namespace is. Each pattern declares its slots in code; per
 * slot the interfaces it requires (loading refuses a backend that lacks one),
 * those it can use (a call that needs a missing one gets FAILED_PRECONDITION)
 * and the backends it recommends (the automatic choice prefers them, in order).
 *
 * The four primitives are the simplest patterns: one slot each, named after
 * the primitive, serving that primitive's API. A namespace without `pattern:`
 * composes the primitives it lists, each slot bound to its own backend
 * instance (`slots:`) or to the namespace's `backend:`. Layer 2 patterns
 * (multicast registry, cache-aside, outbox, claim check) add entries here.
 */
import { PRIMITIVES, type ApiName, type InterfaceName, type PrimitiveName, type SlotFamily } from "../core/interfaces.js";
import type { NamespaceStores } from "../backends/driver.js";
import type { Clock } from "../core/clock.js";
import { cacheAside } from "./cache-aside.js";
import { multicastRegistry } from "./multicast-registry.js";
import { outbox } from "./outbox.js";
import { claimCheck } from "./claim-check.js";

export interface SlotDef {
  readonly name: string;
  readonly description: string;
  /** The primitive family whose interfaces and driver properties this slot is judged by. */
  readonly primitive: SlotFamily;
  readonly requires: readonly InterfaceName[];
  readonly optional: readonly InterfaceName[];
  /** Backend types recommended for this slot, best first. */
  readonly recommended: readonly string[];
  /**
   * A slot judged by the namespace's (validated) options: what replaces the
   * fields above when a namespace is resolved (outbox: `messaging` is a queue
   * slot with deliver_to: queue). The fields above are the defaults Admin lists.
   */
  readonly forOptions?: (options: Readonly<Record<string, unknown>>) => Partial<Pick<SlotDef, "description" | "primitive" | "requires" | "optional" | "recommended">>;
}

/** What a pattern's compose step gets: each slot's stores (guarded by its instance's breaker) and claims. */
export interface ComposeContext {
  readonly namespace: string;
  /** The namespace's `options:` block (validated by src/config/pattern-options.ts). */
  readonly options: Readonly<Record<string, unknown>>;
  readonly slots: ReadonlyMap<string, { readonly stores: NamespaceStores; readonly interfaces: ReadonlySet<InterfaceName>; readonly backendType: string; readonly instance: string }>;
  readonly clock: Clock;
  readonly log: (level: "info" | "warn" | "error", msg: string) => void;
}

/** A composed namespace: the stores its API is served from, what it claims, and its own counters (metrics). */
export interface PatternRuntime {
  readonly stores: NamespaceStores;
  readonly interfaces: readonly InterfaceName[];
  /** Monotonic event counts (exported as prism_pattern_events_total{namespace, pattern, event}). */
  readonly counters?: Readonly<Record<string, number>>;
  /** The pattern's own service object, for its API's handlers (multicast registry). */
  readonly service?: unknown;
  close?(): Promise<void>;
}

export interface PatternDef {
  readonly name: string;
  readonly description: string;
  readonly slots: readonly SlotDef[];
  /** The data APIs a namespace of this pattern serves. */
  readonly serves: readonly ApiName[];
  /** What a namespace of this pattern serves given its options, when that depends on them (claim-check: options.fronts). */
  readonly servesFor?: (options: Readonly<Record<string, unknown>>) => ApiName[];
  /**
   * Builds the namespace's stores from its slots' (a pattern is a bundle of its
   * slots' bundles). Absent: each slot serves its primitive directly (the four primitives).
   */
  readonly compose?: (ctx: ComposeContext) => PatternRuntime;
  /** With compose: the interfaces the namespace claims, from its slots' claims (Admin shows them without building stores). */
  readonly claims?: (slots: ReadonlyMap<string, ReadonlySet<InterfaceName>>, options?: Readonly<Record<string, unknown>>) => InterfaceName[];
}

function primitivePattern(
  name: PrimitiveName,
  description: string,
  requires: InterfaceName[],
  optional: InterfaceName[],
  recommended: string[],
): PatternDef {
  return {
    name,
    description,
    serves: [name],
    slots: [{ name, description: `the backend that stores the ${name} data`, primitive: name, requires, optional, recommended }],
  };
}

export const PATTERNS: readonly PatternDef[] = [
  primitivePattern(
    "keyvalue",
    "KeyValue: Get/Set/Delete/Exists, batches, scans, TTL, compare-and-set",
    ["keyvalue_basic"],
    ["keyvalue_ttl", "keyvalue_scan", "keyvalue_batch", "keyvalue_cas"],
    ["redis", "postgres", "sqlite", "memstore"],
  ),
  primitivePattern("pubsub", "PubSub: Publish and Subscribe, topic wildcards", ["pubsub_basic"], ["pubsub_wildcards"], ["nats", "redis", "mqtt", "kafka"]),
  primitivePattern(
    "queue",
    "Queue: Enqueue/Dequeue/Ack/Nack with leases, dead-lettering and delays",
    ["queue_basic"],
    ["queue_visibility", "queue_dead_letter", "queue_delayed"],
    ["postgres", "redis", "rabbitmq", "nats", "sqlite"],
  ),
  primitivePattern(
    "stream",
    "Stream: Append/Read with offsets, replay and consumer groups",
    ["stream_basic"],
    ["stream_consumer_groups", "stream_replay"],
    ["kafka", "nats", "redis", "postgres"],
  ),
  cacheAside,
  multicastRegistry,
  outbox,
  claimCheck,
];

const BY_NAME: ReadonlyMap<string, PatternDef> = new Map(PATTERNS.map((p) => [p.name, p]));

export function patternByName(name: string): PatternDef | undefined {
  return BY_NAME.get(name);
}

export function isPrimitivePattern(name: string): name is PrimitiveName {
  return (PRIMITIVES as readonly string[]).includes(name);
}

/** The primitive family an interface belongs to (keyvalue_ttl → keyvalue). */
export function primitiveOf(iface: InterfaceName): PrimitiveName {
  return iface.slice(0, iface.indexOf("_")) as PrimitiveName;
}
