/**
 * The driver contract. A backend is a folder under src/backends/<name>/ that
 * exports a BackendDriver: its type name, its options schema, the interfaces
 * it claims, and a factory. Drivers only translate; validation, limits, error
 * wording, retries, deadlines and shedding live above them (src/primitives).
 *
 * Rules every driver follows:
 * - Methods may be called concurrently; a driver serialises what it must.
 * - Buffers passed in (values, payloads) belong to the caller only until the
 *   returned promise settles; a driver that keeps one must copy it.
 *   Buffers returned belong to the caller.
 * - Errors: throw PrismError for semantic refusals (errors.casConflict,
 *   errors.staleReceipt); connection/availability failures become
 *   errors.unavailable(...). Anything else surfaces as INTERNAL.
 * - A driver claims an interface only when that interface's acceptance suite
 *   (test/acceptance/) passes on it against the real server.
 * - Namespaces are isolated: two NamespaceStores from one BackendInstance
 *   never see each other's keys, messages, queues or streams, even when one
 *   namespace name is a prefix of another.
 */
import type { Clock } from "../core/clock.js";
import type { InterfaceName } from "../core/interfaces.js";

export type Bytes = Uint8Array;
export type Attributes = Record<string, string>;

/** Limits and semantics a namespace passes to its stores (from prism.yaml, defaults applied). */
export interface NamespaceLimits {
  maxKeyBytes: number;
  maxValueBytes: number;
  /** 0: none. */
  defaultTtlSeconds: number;
  /** Deliveries before a queue message moves to `<queue>.dlq`. */
  maxDeliveries: number;
  visibilityTimeoutSeconds: number;
  /** 0: unlimited. */
  streamMaxCount: number;
  /** 0: unlimited. */
  streamMaxAgeSeconds: number;
  /** A pending consumer-group record is redelivered after this long without ack. */
  streamClaimTimeoutSeconds: number;
  /** How long an idempotency key is remembered (the *_idempotent interfaces). Unset: 86400. */
  idempotencyWindowSeconds?: number;
}

// ------------------------------------------------------------------ Idempotency

/**
 * What a write carrying an idempotency_key hands the store (the *_idempotent
 * interfaces). The store keeps one record per `key` for `windowMs`, in the
 * backend itself and atomically with the write where the backend allows it:
 * the first call runs the write and stores its result with `requestHash`; a
 * call finding a live record runs nothing and returns the stored result and
 * hash (the primitive layer refuses a hash that differs). Concurrent calls
 * with one key: exactly one runs the write. A write that fails stores nothing.
 */
export interface IdempotencyToken {
  /** Scoped by the primitive layer: operation, target (queue, topic, stream; "" for KeyValue) and the caller's key. */
  key: string;
  /** A digest of the request (everything that shapes the effect). */
  requestHash: string;
  windowMs: number;
}

/** An idempotent write's outcome: the result, and the stored hash when it was a replay. */
export interface Once<T> {
  result: T;
  /** Set when a live record answered (no write ran): the hash stored with it. */
  replayedHash?: string;
}

export interface DriverContext {
  clock: Clock;
  /** Short lines for operators (startup warnings, reconnects). */
  log: (level: "info" | "warn" | "error", msg: string) => void;
}

/**
 * What a driver documents about one primitive it serves, next to its interface
 * claims; `needs:` and the automatic backend choice (src/control/needs.ts) read
 * nothing else. A property left out is "not declared" and never satisfies a need.
 */
export interface PrimitiveProperties {
  /** Acknowledged writes survive a restart of the backend and of Prism. */
  durable?: boolean;
  /** Data can expire by age (KeyValue: the keyvalue_ttl claim decides instead). */
  ttl?: boolean;
  /** Messages / records of one queue, topic or stream reach consumers in the order they were accepted. */
  ordering?: boolean;
  /** Delivery guarantees it gives (queue, pubsub, stream). */
  delivery?: readonly ("at-least-once" | "at-most-once")[];
  /** Largest value / payload it stores, in bytes, with its default server settings. */
  maxValueBytes?: number;
  /** strong: a read sees every acknowledged write; eventual: it may lag. */
  consistency?: "strong" | "eventual";
  /** p99 latency in ms measured by a bench/ scenario (named in `measured`), and the rate it was measured at. */
  latencyP99Ms?: number;
  throughputRps?: number;
  /** Where latencyP99Ms / throughputRps come from (bench scenario and run). */
  measured?: string;
}

export type BackendProperties = Partial<Record<"keyvalue" | "pubsub" | "queue" | "stream", PrimitiveProperties>>;

export interface BackendDriver<Options = unknown> {
  readonly type: string;
  readonly description: string;
  readonly interfaces: readonly InterfaceName[];
  /** Documented properties per primitive (see PrimitiveProperties). */
  readonly properties: BackendProperties;
  /**
   * Set when the claims could not be verified by the acceptance suites on the
   * machine that builds Prism (e.g. no broker can run there): says why and how
   * to run them. Shown in ListBackends' description and the README matrix.
   */
  readonly unverified?: string;
  /**
   * Set when the backend lives in this process's memory (memstore): its calls
   * never fail transiently, so the gateway does not retry them. Not for
   * embedded files (SQLite answers UNAVAILABLE on SQLITE_BUSY, worth a retry).
   */
  readonly inProcess?: boolean;
  /**
   * Creates a connection/handle from options already validated (and defaulted) by
   * the backend's options schema (`<name>/options.ts`, see registry.ts). Must not throw when the server is down: report it through health() and UNAVAILABLE errors, and reconnect. */
  create(options: Options, ctx: DriverContext): BackendInstance;
}

export interface BackendHealth {
  ok: boolean;
  latencyMs: number;
  message: string;
}

/** One connection pool / file / in-memory store, shared by the namespaces whose backend config is identical. */
export interface BackendInstance {
  /** The stores for one namespace. Called when a namespace is applied; may prepare tables lazily. */
  namespace(name: string, limits: NamespaceLimits): NamespaceStores;
  health(): Promise<BackendHealth>;
  /** Close connections / files. Idempotent. */
  close(): Promise<void>;
}

export interface NamespaceStores {
  keyvalue?: KeyValueStore;
  pubsub?: PubSubStore;
  queue?: QueueStore;
  stream?: StreamStore;
  /** payload_* (object stores: the claim-check pattern's payloads slot). */
  payload?: PayloadStore;
  /** Forget in-process state tied to this namespace (subscriptions, timers). Data stays in the backend. */
  close?(): Promise<void>;
}

// ------------------------------------------------------------------ KeyValue

export interface KvRecord {
  value: Bytes;
  version: number;
}

export interface SetOptions {
  /** Time to live in ms; undefined or 0: no expiry. A write always replaces the previous TTL. */
  ttlMs?: number;
  /** keyvalue_cas: fail with errors.casConflict when the key exists. */
  ifAbsent?: boolean;
  /** keyvalue_cas: fail with errors.casConflict unless the current version equals this (0: must be absent). */
  expectedVersion?: number;
}

export interface ScanItem {
  key: string;
  /** Omitted when keysOnly. */
  value?: Bytes;
  version: number;
}

export interface ScanPage {
  items: ScanItem[];
  /** "" when the scan is complete. Opaque to callers. */
  nextCursor: string;
}

export interface KeyValueStore {
  // keyvalue_basic. Expired keys are absent everywhere (get, exists, batchGet, scan).
  get(key: string): Promise<KvRecord | null>;
  /** Returns the new version (increasing per key). Atomic with its TTL and CAS check. */
  set(key: string, value: Bytes, opts: SetOptions): Promise<number>;
  delete(key: string): Promise<boolean>;
  exists(key: string): Promise<boolean>;
  // keyvalue_batch
  batchGet?(keys: string[]): Promise<(KvRecord | null)[]>;
  batchSet?(entries: { key: string; value: Bytes }[], ttlMs: number | undefined): Promise<number[]>;
  batchDelete?(keys: string[]): Promise<number>;
  // keyvalue_scan: keys with the prefix, in byte order, strictly after the cursor position.
  scan?(prefix: string, cursor: string, limit: number, keysOnly: boolean): Promise<ScanPage>;
  // keyvalue_ttl
  /** Sets a TTL on an existing key; false when absent. */
  expire?(key: string, ttlMs: number): Promise<boolean>;
  /** null: key absent; { ttlMs: null }: no TTL. */
  ttl?(key: string): Promise<{ ttlMs: number | null } | null>;
  /** Removes the TTL; false when absent. */
  persist?(key: string): Promise<boolean>;
  // keyvalue_outbox (pattern outbox only: src/patterns/outbox.ts)
  /**
   * set, and in the same local transaction an outbox row holding msg. A write
   * refused (CAS) or failed leaves neither. Outbox ids grow in commit order per key.
   */
  setWithMessage?(key: string, value: Bytes, opts: SetOptions, msg: OutboxMessage): Promise<number>;
  /** delete, and in the same transaction an outbox row holding msg, only when a live key was deleted (true). */
  deleteWithMessage?(key: string, msg: OutboxMessage): Promise<boolean>;
  /**
   * One relay pass: hands the namespace's oldest unsent messages (id order, at
   * most opts.limit) to deliver, then marks sent the ids it returns and parks
   * the failed ones (kept, never handed out again). Holds a lock meanwhile, so
   * that no other relay (another Prism process on the same database) hands out
   * this namespace's messages at the same time; resolves { locked: false }
   * without calling deliver when another relay holds it. deliver never throws.
   * No store transaction stays open while deliver runs. Also deletes sent rows
   * older than opts.keepSentMs.
   */
  outboxRelay?(opts: OutboxRelayOptions, deliver: (batch: OutboxRecord[]) => Promise<OutboxOutcome>): Promise<OutboxPass>;
  // keyvalue_idempotent (see IdempotencyToken)
  setOnce?(key: string, value: Bytes, opts: SetOptions, token: IdempotencyToken): Promise<Once<number>>;
  deleteOnce?(key: string, token: IdempotencyToken): Promise<Once<boolean>>;
}

/** What a write with a message commits next to the value (keyvalue_outbox). */
export interface OutboxMessage {
  /** A pubsub topic, or a queue name (pattern outbox, options.deliver_to). */
  topic: string;
  payload: Bytes;
  attributes: Attributes;
}

/** A committed, unsent outbox row. */
export interface OutboxRecord extends OutboxMessage {
  /** Increasing per namespace, in commit order per key. */
  id: number;
  key: string;
  createdAtMs: number;
}

export interface OutboxRelayOptions {
  limit: number;
  /** Sent rows older than this are deleted, at most every 10 s (0: at the next cleanup). */
  keepSentMs: number;
}

/** What deliver did with a batch: ids acknowledged by the messaging backend, and ids refused for good (parked). */
export interface OutboxOutcome {
  sent: number[];
  failed: { id: number; error: string }[];
}

export interface OutboxPass {
  /** false: another relay holds this namespace's outbox (nothing was handed out). */
  locked: boolean;
  /** Rows handed to deliver. */
  handed: number;
  /** Unsent rows left after the pass (parked ones excluded). */
  pending: number;
}

// ------------------------------------------------------------------ PubSub

export interface PubSubMessage {
  topic: string;
  payload: Bytes;
  attributes: Attributes;
  messageId: string;
  publishTimeMs: number;
}

/** Push-based delivery: the driver calls onMessage as messages arrive (no pull loop). */
export interface SubscriptionSink {
  onMessage(msg: PubSubMessage): void;
  /** The subscription failed and is over (backend lost, etc.). */
  onError(err: Error): void;
}

export interface Subscription {
  close(): Promise<void>;
}

export interface PubSubStore {
  /** pubsub_basic. Returns a message id. */
  publish(topic: string, payload: Bytes, attributes: Attributes): Promise<string>;
  /**
   * pubsub_basic (exact topic) / pubsub_wildcards (`*` one token, `>` the rest).
   * Resolves once the subscription is live: a publish that starts after it
   * resolves is delivered.
   */
  subscribe(pattern: string, sink: SubscriptionSink): Promise<Subscription>;
  /** pubsub_idempotent: publish at most once per token (see IdempotencyToken). */
  publishOnce?(topic: string, payload: Bytes, attributes: Attributes, token: IdempotencyToken): Promise<Once<string>>;
}

// ------------------------------------------------------------------ Queue

export interface QueueMessage {
  messageId: string;
  payload: Bytes;
  attributes: Attributes;
  receipt: string;
  deliveryCount: number;
  enqueuedAtMs: number;
}

export interface DequeueOptions {
  maxMessages: number;
  visibilityTimeoutMs: number;
  /** Long poll: wait up to this long for a first message. */
  waitMs: number;
  /** Aborted when the caller goes away or its deadline passes: resolve with [] promptly. */
  signal?: AbortSignal;
}

/** What one queue of a namespace holds, as the backend itself counts it (every process's messages and leases). */
export interface QueueDepth {
  queue: string;
  /** Waiting and visible now (an expired lease counts here once the backend sees it as visible again). */
  visible: number;
  /** Waiting, not visible yet (enqueued with a delay, or nacked with one). */
  delayed: number;
  /** Leased to a consumer and not acked or nacked yet (whichever Prism process leased it). */
  inflight: number;
}

export interface QueueStore {
  /** queue_basic (delayMs 0) / queue_delayed (delayMs > 0). Resolves only once the message is durable in the backend. */
  enqueue(queue: string, payload: Bytes, attributes: Attributes, delayMs: number): Promise<string>;
  /**
   * queue_basic. Leases up to maxMessages visible messages. queue_dead_letter: a
   * message that was already delivered maxDeliveries times is moved to
   * `<queue>.dlq` instead of being delivered again.
   */
  dequeue(queue: string, opts: DequeueOptions): Promise<QueueMessage[]>;
  /** queue_basic. errors.staleReceipt when the receipt is not the message's current lease. */
  ack(queue: string, receipt: string): Promise<void>;
  /** queue_basic (delayMs 0) / queue_delayed. Ends the lease; visible again after delayMs. Stale receipt: errors.staleReceipt. */
  nack(queue: string, receipt: string, delayMs: number): Promise<void>;
  /** queue_visibility. The lease now ends ms from now. Stale receipt: errors.staleReceipt. */
  extendVisibility?(queue: string, receipt: string, ms: number): Promise<void>;
  /** queue_idempotent: enqueue at most once per token (see IdempotencyToken). */
  enqueueOnce?(queue: string, payload: Bytes, attributes: Attributes, delayMs: number, token: IdempotencyToken): Promise<Once<string>>;
  /**
   * Every queue of this namespace that holds at least one message (visible,
   * delayed or leased, dead-letter queues included), counted by the backend.
   * A queue migration finishes only when its `from` answers [] (src/migrations/queue.ts);
   * a driver without it cannot be drained from, so such a migration cannot finish.
   */
  depths?(): Promise<QueueDepth[]>;
}

// ------------------------------------------------------------------ Stream

export interface StreamRecord {
  offset: number;
  payload: Bytes;
  attributes: Attributes;
  timestampMs: number;
  /** ReadGroup only. */
  deliveryCount?: number;
}

export interface StreamStore {
  /** stream_basic. Returns the record's offset (increasing, first is 1). Applies retention. */
  append(stream: string, payload: Bytes, attributes: Attributes): Promise<number>;
  /** stream_basic (fromOffset 0) / stream_replay (any offset): records with offset >= fromOffset. */
  read(stream: string, fromOffset: number, limit: number): Promise<StreamRecord[]>;
  /** stream_consumer_groups. New records for the group, plus pending ones whose claim timeout passed. */
  readGroup?(
    stream: string,
    group: string,
    consumer: string,
    count: number,
    blockMs: number,
    signal?: AbortSignal,
  ): Promise<StreamRecord[]>;
  /** stream_consumer_groups. Returns how many offsets were pending and are now acked. */
  ackGroup?(stream: string, group: string, offsets: number[]): Promise<number>;
  /** stream_idempotent: append at most once per token (see IdempotencyToken). */
  appendOnce?(stream: string, payload: Bytes, attributes: Attributes, token: IdempotencyToken): Promise<Once<number>>;
}

// ------------------------------------------------------------------ Payload (objects)

/** What a payload store keeps next to the bytes (written once the bytes are stored). */
export interface PayloadMeta {
  size: number;
  /** Hex SHA-256 of the whole payload. */
  sha256: string;
  contentType: string;
  createdAtMs: number;
  /** 0: no expiry (payload_ttl: an expired payload is absent for get and head). */
  expiresAtMs: number;
  /** Small strings the pattern keeps (which key holds the claim). */
  labels: Record<string, string>;
}

export interface PayloadInfo extends PayloadMeta {
  id: string;
}

/** One entry of a listing: a stored payload, or the leftovers of an upload that never completed. */
export type PayloadListing = ({ complete: true } & PayloadInfo) | { complete: false; id: string; createdAtMs: number };

export interface PayloadStore {
  /**
   * payload_basic. Stores `body` under `id`, reading it as it comes (a driver
   * never holds the whole payload), then `meta()` (known only once the body
   * ended: size, digest) as the commit point: until it is written the payload
   * is absent. A body that throws aborts the upload and leaves nothing
   * readable (leftovers are listed as incomplete).
   */
  put(id: string, body: AsyncIterable<Uint8Array>, meta: () => PayloadMeta, signal?: AbortSignal): Promise<void>;
  /** payload_basic. The bytes from `offset` (length 0: to the end), streamed; null when absent. */
  get(id: string, offset: number, length: number, signal?: AbortSignal): Promise<{ meta: PayloadMeta; body: AsyncIterable<Uint8Array> } | null>;
  head(id: string): Promise<PayloadMeta | null>;
  /** Deletes the bytes, the meta and any incomplete leftovers; false when there was nothing. */
  delete(id: string): Promise<boolean>;
  /** payload_basic. Everything stored, expired and incomplete included (the sweeper's view), in id order after `cursor`. */
  list(cursor: string, limit: number): Promise<{ items: PayloadListing[]; nextCursor: string }>;
}
