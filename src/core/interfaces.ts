/**
 * Backend interface decomposition (PRD, MEMO-006). A driver claims the thin
 * interfaces it implements; a namespace's primitives require some of them;
 * calls that need an optional one check the claim (at load time the router
 * precomputes the set, so per request it is one lookup).
 */
export const INTERFACES = [
  "keyvalue_basic",
  "keyvalue_ttl",
  "keyvalue_scan",
  "keyvalue_batch",
  "keyvalue_cas",
  "keyvalue_outbox",
  "pubsub_basic",
  "pubsub_wildcards",
  "queue_basic",
  "queue_visibility",
  "queue_dead_letter",
  "queue_delayed",
  "stream_basic",
  "stream_consumer_groups",
  "stream_replay",
] as const;
export type InterfaceName = (typeof INTERFACES)[number];

/**
 * Claims that only a pattern's slot uses: a namespace serving the primitive
 * directly does not serve them. keyvalue_outbox (a value and a message
 * committed in one transaction) means something only where a relay delivers
 * the message (pattern outbox); a plain keyvalue namespace refuses a Set with
 * a message (FAILED_PRECONDITION) rather than store a message nobody sends.
 */
export const PATTERN_ONLY_INTERFACES: ReadonlySet<InterfaceName> = new Set<InterfaceName>(["keyvalue_outbox"]);

export const PRIMITIVES = ["keyvalue", "pubsub", "queue", "stream"] as const;
export type PrimitiveName = (typeof PRIMITIVES)[number];

/** APIs of Layer 2 patterns (their own services), served by namespaces of that pattern. */
export const PATTERN_APIS = ["multicast_registry"] as const;
/** What a namespace serves and a method belongs to: a primitive or a pattern's API. */
export type ApiName = PrimitiveName | (typeof PATTERN_APIS)[number];

/** What a namespace serving a primitive needs from its backend, at the least. */
export const REQUIRED_INTERFACES: Record<PrimitiveName, readonly InterfaceName[]> = {
  keyvalue: ["keyvalue_basic"],
  pubsub: ["pubsub_basic"],
  queue: ["queue_basic"],
  stream: ["stream_basic"],
};
