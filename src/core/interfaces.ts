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
  "keyvalue_idempotent",
  "pubsub_basic",
  "pubsub_wildcards",
  "pubsub_idempotent",
  "queue_basic",
  "queue_visibility",
  "queue_dead_letter",
  "queue_delayed",
  "queue_idempotent",
  "stream_basic",
  "stream_consumer_groups",
  "stream_replay",
  "stream_idempotent",
] as const;
/**
 * Payload (object) store claims: put and get streams, ranges, delete, list
 * (payload_basic) and expiry (payload_ttl). Only the claim-check pattern's
 * `payloads` slot uses them (src/patterns/claim-check.ts); kept apart from
 * INTERFACES, which some drivers claim whole.
 */
export const PAYLOAD_INTERFACES = ["payload_basic", "payload_ttl"] as const;
/** The interfaces of the four primitives (each has an acceptance suite in test/acceptance/suites). */
export type PrimitiveInterfaceName = (typeof INTERFACES)[number];
export type InterfaceName = PrimitiveInterfaceName | (typeof PAYLOAD_INTERFACES)[number];

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
/**
 * What a pattern's slot is judged by: a primitive, or the payload family
 * (payload_* claims: object stores, which no namespace serves as a primitive).
 */
export type SlotFamily = PrimitiveName | "payload";

/** APIs of Layer 2 patterns (their own services), served by namespaces of that pattern. */
export const PATTERN_APIS = ["multicast_registry", "claim_check"] as const;
/** What a namespace serves and a method belongs to: a primitive or a pattern's API. */
export type ApiName = PrimitiveName | (typeof PATTERN_APIS)[number];

/** What a namespace serving a primitive needs from its backend, at the least. */
export const REQUIRED_INTERFACES: Record<PrimitiveName, readonly InterfaceName[]> = {
  keyvalue: ["keyvalue_basic"],
  pubsub: ["pubsub_basic"],
  queue: ["queue_basic"],
  stream: ["stream_basic"],
};
