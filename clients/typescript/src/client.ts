/**
 * The application-facing API: `prism.kv(ns)`, `prism.pubsub(ns)`,
 * `prism.queue(ns)`, `prism.stream(ns)`, `prism.admin` and the low-level
 * `prism.call`. Transport-neutral: it builds proto-shaped requests and reads
 * fields of decoded responses, normalising bytes (Uint8Array) and 64-bit ints (number).
 */
import { prism as pb } from "./gen/prism.js";
import { Code, PrismError } from "./errors.js";
import { METHODS, methodInfo, type MethodInfo } from "./methods.js";
import { attrs, bytes, num, toBytes, toPlain, toStruct } from "./convert.js";
import { SubscriptionImpl, type PubSubMessage, type Subscription } from "./subscription.js";
import type { CallOptions, Channel, ConnectionState, UnaryOptions, WriteOptions } from "./transport.js";
import type { HealingChannel } from "./healing.js";
import type { Listener } from "./emitter.js";
import { ClaimCheck, type ClaimCheckOptions } from "./claim-check.js";
import { Coalescer, type EntryResult } from "./coalesce.js";

/** A value to write: raw bytes, or a string (sent as UTF-8). */
export type Bytes = Uint8Array | string;

function m(name: string): MethodInfo {
  return METHODS.get(name)!;
}
const KV_GET = m("KeyValue/Get");
const KV_SET = m("KeyValue/Set");
const KV_DELETE = m("KeyValue/Delete");
const KV_EXISTS = m("KeyValue/Exists");
const KV_BATCH_GET = m("KeyValue/BatchGet");
const KV_BATCH_SET = m("KeyValue/BatchSet");
const KV_BATCH_DELETE = m("KeyValue/BatchDelete");
const KV_SCAN = m("KeyValue/Scan");
const KV_EXPIRE = m("KeyValue/Expire");
const KV_GET_TTL = m("KeyValue/GetTtl");
const KV_PERSIST = m("KeyValue/Persist");
const PS_PUBLISH = m("PubSub/Publish");
const PS_SUBSCRIBE = m("PubSub/Subscribe");
const Q_ENQUEUE = m("Queue/Enqueue");
const Q_DEQUEUE = m("Queue/Dequeue");
const Q_ACK = m("Queue/Ack");
const Q_NACK = m("Queue/Nack");
const Q_EXTEND = m("Queue/ExtendVisibility");
const Q_ENQUEUE_BATCH = m("Queue/EnqueueBatch");
const Q_ACK_BATCH = m("Queue/AckBatch");
const ST_APPEND = m("Stream/Append");
const ST_READ = m("Stream/Read");
const ST_READ_GROUP = m("Stream/ReadGroup");
const ST_ACK = m("Stream/AckGroup");
const REG_REGISTER = m("MulticastRegistry/Register");
const REG_UNREGISTER = m("MulticastRegistry/Unregister");
const REG_ENUMERATE = m("MulticastRegistry/Enumerate");
const REG_MULTICAST = m("MulticastRegistry/Multicast");
const REG_SUBSCRIBE = m("MulticastRegistry/Subscribe");
const AD_LIST = m("Admin/ListNamespaces");
const AD_GET = m("Admin/GetNamespace");
const AD_APPLY = m("Admin/ApplyNamespace");
const AD_DELETE = m("Admin/DeleteNamespace");
const AD_BACKENDS = m("Admin/ListBackends");
const AD_HEALTH = m("Admin/Health");
const AD_APPLY_BACKEND = m("Admin/ApplyBackend");
const AD_DELETE_BACKEND = m("Admin/DeleteBackend");
const AD_INSTANCES = m("Admin/ListBackendInstances");
const AD_PATTERNS = m("Admin/ListPatterns");

/** The per-call part of an options object, or undefined (the common case: no allocation). */
function co(o: CallOptions | undefined, extraMs = 0): UnaryOptions | undefined {
  if (!o || (o.timeoutMs === undefined && o.signal === undefined)) return extraMs > 0 ? { extraMs } : undefined;
  return { timeoutMs: o.timeoutMs, signal: o.signal, extraMs };
}

/** Sets the request's idempotency key: the caller's, or a random one with `autoIdempotency`. */
function keyed<R extends { idempotencyKey?: string | null }>(t: Channel, req: R, o: WriteOptions | undefined): R {
  const k = o?.idempotencyKey;
  if (k !== undefined && k !== "") req.idempotencyKey = k;
  else if (t.autoIdempotency) req.idempotencyKey = randomKey();
  return req;
}

function randomKey(): string {
  return globalThis.crypto.randomUUID();
}

// ---------------------------------------------------------------- KeyValue

/** Options of {@link KeyValue.set}. */
export interface SetOptions extends WriteOptions {
  /** Time to live in seconds (default: the namespace's default TTL; none by default). */
  ttl?: number;
  /** Write only when the key is absent; otherwise FAILED_PRECONDITION. */
  ifAbsent?: boolean;
  /** Compare-and-set: write only when the key's version equals this (0: must be absent). */
  expectedVersion?: number;
  /** Outbox namespaces: a message committed with the value and sent by the relay (at least once, in commit order per key). */
  message?: OutboxMessage;
}

/** A message committed with a KeyValue write (pattern outbox). `topic` is the queue name when the namespace delivers to a queue. */
export interface OutboxMessage {
  topic: string;
  payload: Bytes;
  attributes?: Record<string, string>;
}

function outboxMessage(m: OutboxMessage): pb.v1.IOutboxMessage {
  return { topic: m.topic, payload: toBytes(m.payload), attributes: m.attributes ?? {} };
}

/** A stored value with its version. */
export interface KvItem {
  value: Uint8Array;
  version: number;
}

/** One scanned key (value is empty with `keysOnly`). */
export interface ScanItem {
  key: string;
  value: Uint8Array;
  version: number;
}

/** One page of {@link KeyValue.scanPage}; `nextCursor` is "" when the scan is complete. */
export interface ScanPage {
  items: ScanItem[];
  nextCursor: string;
}

/** Key-value calls on one namespace. */
export class KeyValue {
  /** @internal */
  constructor(
    private readonly t: Channel,
    /** The namespace every call goes to. */
    readonly namespace: string,
  ) {}

  /** Writes `value` (a string is stored as UTF-8); resolves to the key's new version. */
  async set(key: string, value: Bytes, opts?: SetOptions): Promise<{ version: number }> {
    const req: pb.v1.ISetRequest = { namespace: this.namespace, key, value: toBytes(value) };
    if (opts) {
      if (opts.ttl !== undefined) req.ttlSeconds = opts.ttl;
      if (opts.ifAbsent) req.ifAbsent = true;
      if (opts.expectedVersion !== undefined) req.expectedVersion = opts.expectedVersion;
      if (opts.message) req.message = outboxMessage(opts.message);
    }
    const res = await this.t.unary(KV_SET, keyed(this.t, req, opts), co(opts));
    return { version: num(res.version) };
  }

  /** The value, or null when the key is absent (an empty Uint8Array is a real empty value). */
  async get(key: string, opts?: CallOptions): Promise<Uint8Array | null> {
    const res = await this.t.unary(KV_GET, { namespace: this.namespace, key }, co(opts));
    return res.found ? bytes(res.value) : null;
  }

  /** The value and its version, or null when the key is absent. */
  async getItem(key: string, opts?: CallOptions): Promise<KvItem | null> {
    const res = await this.t.unary(KV_GET, { namespace: this.namespace, key }, co(opts));
    return res.found ? { value: bytes(res.value), version: num(res.version) } : null;
  }

  /** Deletes the key; false when it was absent. With `message` (outbox namespaces): committed with the delete, only when a key was deleted. */
  async delete(key: string, opts?: { message?: OutboxMessage } & WriteOptions): Promise<boolean> {
    const req: pb.v1.IDeleteRequest = { namespace: this.namespace, key };
    if (opts?.message) req.message = outboxMessage(opts.message);
    const res = await this.t.unary(KV_DELETE, keyed(this.t, req, opts), co(opts));
    return !!res.deleted;
  }

  async exists(key: string, opts?: CallOptions): Promise<boolean> {
    const res = await this.t.unary(KV_EXISTS, { namespace: this.namespace, key }, co(opts));
    return !!res.exists;
  }

  /** Values in the order of `keys`; null for absent keys. */
  async batchGet(keys: string[], opts?: CallOptions): Promise<(Uint8Array | null)[]> {
    const res = await this.t.unary(KV_BATCH_GET, { namespace: this.namespace, keys }, co(opts));
    return (res.items as pb.v1.IKvItem[]).map((it) => (it.found ? bytes(it.value) : null));
  }

  /** Writes all entries; resolves to their new versions, in order. */
  async batchSet(entries: { key: string; value: Bytes }[], opts?: { ttl?: number } & CallOptions): Promise<number[]> {
    const req: pb.v1.IBatchSetRequest = {
      namespace: this.namespace,
      entries: entries.map((e) => ({ key: e.key, value: toBytes(e.value) })),
    };
    if (opts?.ttl !== undefined) req.ttlSeconds = opts.ttl;
    const res = await this.t.unary(KV_BATCH_SET, req, co(opts));
    return (res.versions as unknown[]).map(num);
  }

  /** Deletes the keys; resolves to how many existed. */
  async batchDelete(keys: string[], opts?: CallOptions): Promise<number> {
    const res = await this.t.unary(KV_BATCH_DELETE, { namespace: this.namespace, keys }, co(opts));
    return num(res.deleted);
  }

  /** One page of keys in lexicographic order. Pass the previous `nextCursor` to continue. */
  async scanPage(opts: { prefix?: string; cursor?: string; limit?: number; keysOnly?: boolean } & CallOptions = {}): Promise<ScanPage> {
    const res = await this.t.unary(KV_SCAN, {
      namespace: this.namespace,
      prefix: opts.prefix ?? "",
      cursor: opts.cursor ?? "",
      limit: opts.limit ?? 0,
      keysOnly: !!opts.keysOnly,
    }, co(opts));
    return {
      items: (res.items as pb.v1.IKvItem[]).map((it) => ({ key: it.key ?? "", value: bytes(it.value), version: num(it.version) })),
      nextCursor: res.nextCursor ?? "",
    };
  }

  /**
   * Every key with `prefix`, page by page (`limit` = page size). Complete and
   * without duplicates even while keys are written concurrently.
   */
  async *scan(prefix = "", opts: { limit?: number; keysOnly?: boolean } & CallOptions = {}): AsyncGenerator<ScanItem, void, undefined> {
    let cursor = "";
    do {
      const page = await this.scanPage({ prefix, cursor, limit: opts.limit, keysOnly: opts.keysOnly, timeoutMs: opts.timeoutMs, signal: opts.signal });
      yield* page.items;
      cursor = page.nextCursor;
    } while (cursor);
  }

  /** Sets the key's TTL (seconds, > 0); false when the key is absent. */
  async expire(key: string, ttlSeconds: number, opts?: CallOptions): Promise<boolean> {
    const res = await this.t.unary(KV_EXPIRE, { namespace: this.namespace, key, ttlSeconds }, co(opts));
    return !!res.found;
  }

  /** Remaining time to live: `ttlMs` is null when the key has no TTL (or is absent: `found` false). */
  async ttl(key: string, opts?: CallOptions): Promise<{ found: boolean; ttlMs: number | null }> {
    const res = await this.t.unary(KV_GET_TTL, { namespace: this.namespace, key }, co(opts));
    return { found: !!res.found, ttlMs: res.found && res.hasTtl ? num(res.ttlMs) : null };
  }

  /** Removes the key's TTL; false when the key is absent. */
  async persist(key: string, opts?: CallOptions): Promise<boolean> {
    const res = await this.t.unary(KV_PERSIST, { namespace: this.namespace, key }, co(opts));
    return !!res.found;
  }
}

// ---------------------------------------------------------------- PubSub

function toPubSubMessage(msg: unknown): PubSubMessage {
  const m = msg as pb.v1.PubSubMessage;
  return {
    topic: m.topic,
    payload: bytes(m.payload),
    attributes: attrs(m.attributes),
    messageId: m.messageId,
    publishTimeMs: num(m.publishTimeMs),
  };
}

/** Publish/subscribe on one namespace. */
export class PubSub {
  /** @internal */
  constructor(
    private readonly t: Channel,
    readonly namespace: string,
  ) {}

  /** Publishes to `topic` (dot-separated tokens); resolves to the message id. */
  async publish(topic: string, data: Bytes, attributes?: Record<string, string>, opts?: WriteOptions): Promise<string> {
    const req: pb.v1.IPublishRequest = { namespace: this.namespace, topic, payload: toBytes(data) };
    if (attributes) req.attributes = attributes;
    const res = await this.t.unary(PS_PUBLISH, keyed(this.t, req, opts), co(opts));
    return res.messageId;
  }

  /**
   * Subscribes to `pattern` (`*` = one token, trailing `>` = one or more).
   * Await `sub.ready` before publishing if you must not miss messages.
   * Resumed by itself after a reconnect (events `disconnected`, `resumed`);
   * aborting `signal` closes it.
   */
  subscribe(pattern: string, opts?: { signal?: AbortSignal }): Subscription<PubSubMessage> {
    return startSubscription(this.t, PS_SUBSCRIBE, { namespace: this.namespace, pattern }, opts?.signal);
  }
}

function startSubscription(t: Channel, method: MethodInfo, request: object, signal: AbortSignal | undefined): Subscription<PubSubMessage> {
  const sub = new SubscriptionImpl(toPubSubMessage);
  if (signal?.aborted) {
    void sub.close();
    return sub;
  }
  sub.handle = t.serverStream(method, request, sub);
  signal?.addEventListener("abort", () => void sub.close(), { once: true });
  return sub;
}

// ---------------------------------------------------------------- MulticastRegistry

/** A registered member. `expiresAtMs` 0: no expiry. */
export interface RegistryMember {
  identity: string;
  metadata: Record<string, string>;
  expiresAtMs: number;
}

/** A namespace with `pattern: multicast-registry`: members with metadata, multicast by filter. */
export class MulticastRegistry {
  /** @internal */
  constructor(
    private readonly t: Channel,
    readonly namespace: string,
  ) {}

  /** Registers `identity` (or refreshes it: metadata replaced, TTL restarted). ttl 0: no expiry. */
  async register(identity: string, metadata: Record<string, string> = {}, opts: { ttl?: number } & CallOptions = {}): Promise<{ created: boolean; expiresAtMs: number }> {
    const res = await this.t.unary(REG_REGISTER, { namespace: this.namespace, identity, metadata, ttlSeconds: opts.ttl ?? 0 }, co(opts));
    return { created: !!res.created, expiresAtMs: num(res.expiresAtMs) };
  }

  async unregister(identity: string, opts?: CallOptions): Promise<boolean> {
    return !!(await this.t.unary(REG_UNREGISTER, { namespace: this.namespace, identity }, co(opts))).removed;
  }

  /** One page of live members matching `filter` (e.g. `type = "temperature" and floor = 3`; "" all). */
  async enumerate(filter = "", opts: { cursor?: string; limit?: number } & CallOptions = {}): Promise<{ members: RegistryMember[]; nextCursor: string }> {
    const res = await this.t.unary(REG_ENUMERATE, { namespace: this.namespace, filter, cursor: opts.cursor ?? "", limit: opts.limit ?? 0 }, co(opts));
    return {
      members: (res.members as pb.v1.IMember[]).map((m) => ({ identity: m.identity ?? "", metadata: { ...(m.metadata ?? {}) }, expiresAtMs: num(m.expiresAtMs) })),
      nextCursor: res.nextCursor ?? "",
    };
  }

  /** Sends `data` to every live member matching `filter`. */
  async multicast(filter: string, data: Bytes, attributes?: Record<string, string>, opts?: CallOptions): Promise<{ total: number; delivered: number; failed: number; failedIdentities: string[] }> {
    const req: pb.v1.IMulticastRequest = { namespace: this.namespace, filter, payload: toBytes(data) };
    if (attributes) req.attributes = attributes;
    const res = await this.t.unary(REG_MULTICAST, req, co(opts));
    return { total: num(res.total), delivered: num(res.delivered), failed: num(res.failed), failedIdentities: [...(res.failedIdentities ?? [])] };
  }

  /** What is multicast to `identity` (which must be registered). Await `sub.ready` before multicasting. */
  subscribe(identity: string, opts?: { signal?: AbortSignal }): Subscription<PubSubMessage> {
    return startSubscription(this.t, REG_SUBSCRIBE, { namespace: this.namespace, identity }, opts?.signal);
  }
}

// ---------------------------------------------------------------- Queue

/** A message leased to this consumer; ack/nack it with `receipt`. */
export interface QueueMessage {
  messageId: string;
  payload: Uint8Array;
  attributes: Record<string, string>;
  receipt: string;
  deliveryCount: number;
  enqueuedAtMs: number;
}

/** Options of {@link Queue.enqueue}. */
export interface EnqueueOptions extends WriteOptions {
  attributes?: Record<string, string>;
  /** Invisible this many seconds (queue_delayed). */
  delaySeconds?: number;
}

/** One message of {@link Queue.enqueueMany}. */
export interface EnqueueEntry {
  data: Bytes;
  attributes?: Record<string, string>;
  delaySeconds?: number;
}

/** Entries per batch call (the server's limit) and payload bytes per coalesced call. */
const MAX_BATCH = 1000;
const MAX_COALESCED_BYTES = 256 * 1024;
/** A payload this large goes as its own call. */
const ALONE_BYTES = 16 * 1024;

function entryOf(data: Bytes, attributes: Record<string, string> | undefined, delaySeconds: number | undefined): pb.v1.IEnqueueBatchEntry {
  const e: pb.v1.IEnqueueBatchEntry = { payload: toBytes(data) };
  if (attributes) e.attributes = attributes;
  if (delaySeconds) e.delaySeconds = delaySeconds;
  return e;
}

function entryErrors<R>(n: number, errors: pb.v1.IBatchEntryError[] | null | undefined, value: (i: number) => R): EntryResult<R>[] {
  const out: EntryResult<R>[] = new Array(n);
  for (let i = 0; i < n; i++) out[i] = { ok: true, value: value(i) };
  for (const e of errors ?? []) {
    const i = e.index ?? 0;
    if (i < n) out[i] = { ok: false, error: new PrismError(e.code ?? Code.UNKNOWN, e.message ?? "", e.reason ?? "") };
  }
  return out;
}

/**
 * Work queues on one namespace.
 *
 * Enqueue and Ack calls made in the same run of callbacks for the same queue
 * (e.g. by many concurrent producers or consumers) leave as one EnqueueBatch /
 * AckBatch request (coalesce.ts); each caller still gets its own result or
 * error. Calls with a timeout, a signal or an idempotency key go on their own.
 */
export class Queue {
  private readonly enqueues: Coalescer<pb.v1.IEnqueueBatchEntry, string>;
  private readonly acks: Coalescer<string, void>;

  /** @internal */
  constructor(
    private readonly t: Channel,
    readonly namespace: string,
  ) {
    this.enqueues = new Coalescer({
      maxItems: MAX_BATCH,
      maxBytes: MAX_COALESCED_BYTES,
      single: async (queue, e) => (await this.t.unary(Q_ENQUEUE, { namespace: this.namespace, queue, ...e }, undefined)).messageId,
      batch: async (queue, entries) => {
        const res = await this.t.unary(Q_ENQUEUE_BATCH, { namespace: this.namespace, queue, entries }, undefined);
        const ids = res.messageIds as string[];
        return entryErrors(entries.length, res.errors, (i) => ids[i] ?? "");
      },
    });
    this.acks = new Coalescer<string, void>({
      maxItems: MAX_BATCH,
      maxBytes: MAX_COALESCED_BYTES,
      single: async (queue, receipt) => void (await this.t.unary(Q_ACK, { namespace: this.namespace, queue, receipt }, undefined)),
      batch: async (queue, receipts) => {
        const res = await this.t.unary(Q_ACK_BATCH, { namespace: this.namespace, queue, receipts }, undefined);
        return entryErrors(receipts.length, res.errors, () => undefined);
      },
    });
  }

  /** Enqueues; `delaySeconds` keeps it invisible that long. Resolves to the message id. */
  enqueue(queue: string, data: Bytes, opts?: EnqueueOptions): Promise<string> {
    if (this.t.coalesce && !this.t.autoIdempotency && typeof queue === "string" && (opts === undefined || (opts.timeoutMs === undefined && opts.signal === undefined && !opts.idempotencyKey))) {
      const e = entryOf(data, opts?.attributes, opts?.delaySeconds);
      const n = e.payload?.length;
      if (n !== undefined && n <= ALONE_BYTES) return this.enqueues.add(queue, e, n + 16);
    }
    // Anything else (and anything malformed: it fails as the single call's encoding fails, as a rejection).
    return this.enqueueOne(queue, data, opts);
  }

  private async enqueueOne(queue: string, data: Bytes, opts: EnqueueOptions | undefined): Promise<string> {
    const req: pb.v1.IEnqueueRequest = { namespace: this.namespace, queue, payload: toBytes(data) };
    if (opts?.attributes) req.attributes = opts.attributes;
    if (opts?.delaySeconds) req.delaySeconds = opts.delaySeconds;
    const res = await this.t.unary(Q_ENQUEUE, keyed(this.t, req, opts), co(opts));
    return res.messageId;
  }

  /**
   * Enqueues up to 1000 messages in one call, in order. Resolves to one result per
   * entry: its message id, or the error of that entry alone (e.g. a payload over the
   * namespace's limit). The call itself fails when every entry failed.
   */
  async enqueueMany(queue: string, entries: EnqueueEntry[], opts?: CallOptions): Promise<EntryResult<string>[]> {
    const list = entries.map((e) => entryOf(e.data, e.attributes, e.delaySeconds));
    const res = await this.t.unary(Q_ENQUEUE_BATCH, { namespace: this.namespace, queue, entries: list }, co(opts));
    const ids = res.messageIds as string[];
    return entryErrors(list.length, res.errors, (i) => ids[i] ?? "");
  }

  /**
   * Leases up to `max` messages (default 1) for `visibilityTimeout` seconds
   * (default: the namespace's); `wait` long-polls up to that many seconds.
   */
  async dequeue(queue: string, opts?: { max?: number; visibilityTimeout?: number; wait?: number } & CallOptions): Promise<QueueMessage[]> {
    const wait = opts?.wait ?? 0;
    const res = await this.t.unary(
      Q_DEQUEUE,
      {
        namespace: this.namespace,
        queue,
        maxMessages: opts?.max ?? 0,
        visibilityTimeoutSeconds: opts?.visibilityTimeout ?? 0,
        waitSeconds: wait,
      },
      co(opts, wait * 1000),
    );
    return (res.messages as pb.v1.QueueMessage[]).map((q) => ({
      messageId: q.messageId,
      payload: bytes(q.payload),
      attributes: attrs(q.attributes),
      receipt: q.receipt,
      deliveryCount: num(q.deliveryCount),
      enqueuedAtMs: num(q.enqueuedAtMs),
    }));
  }

  /** Acknowledges (removes) a leased message. A stale receipt → FAILED_PRECONDITION. */
  ack(queue: string, receipt: string, opts?: CallOptions): Promise<void> {
    if (this.t.coalesce && typeof queue === "string" && typeof receipt === "string" && (opts === undefined || (opts.timeoutMs === undefined && opts.signal === undefined))) {
      return this.acks.add(queue, receipt, receipt.length);
    }
    return this.ackOne(queue, receipt, opts);
  }

  private async ackOne(queue: string, receipt: string, opts: CallOptions | undefined): Promise<void> {
    await this.t.unary(Q_ACK, { namespace: this.namespace, queue, receipt }, co(opts));
  }

  /** Acknowledges up to 1000 leased messages in one call: one result per receipt (a stale one fails alone). */
  async ackMany(queue: string, receipts: string[], opts?: CallOptions): Promise<EntryResult<void>[]> {
    const res = await this.t.unary(Q_ACK_BATCH, { namespace: this.namespace, queue, receipts }, co(opts));
    return entryErrors(receipts.length, res.errors, () => undefined);
  }

  /** Returns a leased message to the queue, visible again after `requeueAfter` seconds (default 0). */
  async nack(queue: string, receipt: string, opts?: { requeueAfter?: number } & CallOptions): Promise<void> {
    await this.t.unary(Q_NACK, { namespace: this.namespace, queue, receipt, requeueAfterSeconds: opts?.requeueAfter ?? 0 }, co(opts));
  }

  /** The lease now ends `seconds` from now. */
  async extendVisibility(queue: string, receipt: string, seconds: number, opts?: CallOptions): Promise<void> {
    await this.t.unary(Q_EXTEND, { namespace: this.namespace, queue, receipt, seconds }, co(opts));
  }
}

// ---------------------------------------------------------------- Stream

/** One stream record. `deliveryCount` is set on records from {@link Stream.readGroup}. */
export interface StreamRecord {
  offset: number;
  payload: Uint8Array;
  attributes: Record<string, string>;
  timestampMs: number;
  deliveryCount?: number;
}

function toRecord(r: pb.v1.StreamRecord): StreamRecord {
  return { offset: num(r.offset), payload: bytes(r.payload), attributes: attrs(r.attributes), timestampMs: num(r.timestampMs) };
}

/** Append-only streams on one namespace. */
export class Stream {
  /** @internal */
  constructor(
    private readonly t: Channel,
    readonly namespace: string,
  ) {}

  /** Appends a record; resolves to its offset (increasing, the first is 1). */
  async append(stream: string, data: Bytes, attributes?: Record<string, string>, opts?: WriteOptions): Promise<number> {
    const req: pb.v1.IAppendRequest = { namespace: this.namespace, stream, payload: toBytes(data) };
    if (attributes) req.attributes = attributes;
    const res = await this.t.unary(ST_APPEND, keyed(this.t, req, opts), co(opts));
    return num(res.offset);
  }

  /** Records with offset ≥ `from` (default: the oldest retained); pass `nextOffset` as `from` to continue. */
  async read(stream: string, opts?: { from?: number; limit?: number } & CallOptions): Promise<{ records: StreamRecord[]; nextOffset: number }> {
    const res = await this.t.unary(ST_READ, { namespace: this.namespace, stream, fromOffset: opts?.from ?? 0, limit: opts?.limit ?? 0 }, co(opts));
    return { records: (res.records as pb.v1.StreamRecord[]).map(toRecord), nextOffset: num(res.nextOffset) };
  }

  /**
   * Consumer-group read: up to `count` records for `consumer`, each pending
   * until {@link Stream.ack}; `block` waits up to that many milliseconds.
   */
  async readGroup(stream: string, group: string, consumer: string, opts?: { count?: number; block?: number } & CallOptions): Promise<StreamRecord[]> {
    const block = opts?.block ?? 0;
    const res = await this.t.unary(
      ST_READ_GROUP,
      { namespace: this.namespace, stream, group, consumer, count: opts?.count ?? 0, blockMs: block },
      co(opts, block),
    );
    return (res.records as pb.v1.StreamRecord[]).map((r) => {
      const rec = toRecord(r);
      rec.deliveryCount = num(r.deliveryCount);
      return rec;
    });
  }

  /** Acknowledges records of a group; resolves to how many were pending. */
  async ack(stream: string, group: string, offsets: number[], opts?: CallOptions): Promise<number> {
    const res = await this.t.unary(ST_ACK, { namespace: this.namespace, stream, group, offsets }, co(opts));
    return num(res.acked);
  }
}

// ---------------------------------------------------------------- Admin

/** One slot of a namespace and the backend instance serving it. */
export interface SlotInfo {
  slot: string;
  /** "" for an inline backend. */
  instance: string;
  backendType: string;
  interfaces: string[];
  /** Chosen by the namespace's needs. */
  auto: boolean;
}

/** A configured namespace. `configJson`: its effective config, secrets redacted. */
export interface NamespaceInfo {
  name: string;
  primitives: string[];
  backendType: string;
  interfaces: string[];
  configJson: string;
  /** "" for a namespace of plain primitives. */
  pattern: string;
  slots: SlotInfo[];
  /** The config store revision that last wrote it. */
  revision: number;
  /** Why each slot has its backend (with an automatic choice: every instance rejected and why). */
  explanation: string[];
}

function toNamespaceInfo(n: pb.v1.INamespaceInfo | null | undefined): NamespaceInfo {
  return {
    name: n?.name ?? "",
    primitives: [...(n?.primitives ?? [])],
    backendType: n?.backendType ?? "",
    interfaces: [...(n?.interfaces ?? [])],
    configJson: n?.configJson ?? "",
    pattern: n?.pattern ?? "",
    slots: (n?.slots ?? []).map((s) => ({
      slot: s.slot ?? "",
      instance: s.instance ?? "",
      backendType: s.backendType ?? "",
      interfaces: [...(s.interfaces ?? [])],
      auto: !!s.auto,
    })),
    revision: num(n?.revision),
    explanation: [...(n?.explanation ?? [])],
  };
}

/** A named backend instance. `optionsJson`: its options, secrets redacted. */
export interface BackendInstanceInfo {
  name: string;
  type: string;
  optionsJson: string;
  namespaces: string[];
  revision: number;
}

function toInstanceInfo(b: pb.v1.IBackendInstanceInfo | null | undefined): BackendInstanceInfo {
  return { name: b?.name ?? "", type: b?.type ?? "", optionsJson: b?.optionsJson ?? "", namespaces: [...(b?.namespaces ?? [])], revision: num(b?.revision) };
}

/** A pattern and its slots' interface requirements. */
export interface PatternInfo {
  name: string;
  description: string;
  serves: string[];
  slots: { name: string; description: string; requires: string[]; optional: string[]; recommended: string[] }[];
}

/** Health of the gateway and of each namespace's backend. */
export interface Health {
  status: string;
  backends: { namespace: string; backendType: string; ok: boolean; latencyMs: number; message: string }[];
  version: string;
  workers: number;
}

/** Control-plane calls. */
export class Admin {
  /** @internal */
  constructor(private readonly t: Channel) {}

  async listNamespaces(call?: CallOptions): Promise<NamespaceInfo[]> {
    const res = await this.t.unary(AD_LIST, {}, co(call));
    return (res.namespaces as pb.v1.INamespaceInfo[]).map(toNamespaceInfo);
  }

  /** The namespace; NOT_FOUND when it is not configured. */
  async getNamespace(name: string, call?: CallOptions): Promise<NamespaceInfo> {
    return toNamespaceInfo(await this.t.unary(AD_GET, { name }, co(call)));
  }

  /**
   * Validates, stores and applies one namespace (an object of the shape of a
   * prism.yaml `namespaces:` entry, or its YAML/JSON text) without restart.
   * `dryRun`: only the validation and the backend choice.
   */
  async applyNamespace(
    config: string | object,
    opts: { dryRun?: boolean } & CallOptions = {},
  ): Promise<{ namespace: NamespaceInfo; created: boolean; revision: number; applied: boolean }> {
    const req = typeof config === "string" ? { config } : { namespace: toStruct(config as Record<string, unknown>) };
    const res = await this.t.unary(AD_APPLY, { ...req, dryRun: opts.dryRun === true }, co(opts));
    return { namespace: toNamespaceInfo(res.namespace), created: !!res.created, revision: num(res.revision), applied: !!res.applied };
  }

  /** Removes the namespace; false when it did not exist. */
  async deleteNamespace(name: string, call?: CallOptions): Promise<boolean> {
    const res = await this.t.unary(AD_DELETE, { name }, co(call));
    return !!res.deleted;
  }

  /** Declares or changes a named backend instance ({ type, ...options }); namespaces using it move to the new definition. */
  async applyBackend(
    name: string,
    backend: { type: string } & Record<string, unknown>,
    opts: { dryRun?: boolean } & CallOptions = {},
  ): Promise<{ backend: BackendInstanceInfo; created: boolean; revision: number; applied: boolean; namespaces: string[] }> {
    const res = await this.t.unary(AD_APPLY_BACKEND, { name, backend: toStruct(backend), dryRun: opts.dryRun === true }, co(opts));
    return { backend: toInstanceInfo(res.backend), created: !!res.created, revision: num(res.revision), applied: !!res.applied, namespaces: [...(res.namespaces ?? [])] };
  }

  /** Removes a backend instance; FAILED_PRECONDITION while namespaces use it. */
  async deleteBackend(name: string, call?: CallOptions): Promise<boolean> {
    const res = await this.t.unary(AD_DELETE_BACKEND, { name }, co(call));
    return !!res.deleted;
  }

  async listBackendInstances(call?: CallOptions): Promise<BackendInstanceInfo[]> {
    const res = await this.t.unary(AD_INSTANCES, {}, co(call));
    return (res.backends as pb.v1.IBackendInstanceInfo[]).map(toInstanceInfo);
  }

  /**
   * A namespace's migration (its `migration:` block): `status`, or a step —
   * `start`, `advance` (next phase / cutover step), `rollback` (traffic back to
   * `from`), `finish` (bind the slot to `to` for good). Resolves to the status.
   * The third argument is the rollback's reason, or `{ reason, dryRun }`
   * (`start` with `dryRun: true`: dual-write and shadow reads, never served from `to`).
   */
  async migration(
    namespace: string,
    op: "status" | "start" | "advance" | "rollback" | "finish" = "status",
    reason: string | { reason?: string; dryRun?: boolean } = "",
    call?: CallOptions,
  ): Promise<Record<string, unknown>> {
    const method = { status: "MigrationStatus", start: "StartMigration", advance: "AdvanceMigration", rollback: "RollbackMigration", finish: "FinishMigration" }[op];
    const info = m(`Admin/${method}`);
    const o = typeof reason === "string" ? { reason } : reason;
    const res = await this.t.unary(info, { namespace, reason: o.reason ?? "", dryRun: !!o.dryRun }, co(call));
    return info.responseType.toObject(res, { longs: Number, defaults: true }) as Record<string, unknown>;
  }

  async listPatterns(call?: CallOptions): Promise<PatternInfo[]> {
    const res = await this.t.unary(AD_PATTERNS, {}, co(call));
    return (res.patterns as pb.v1.IPatternInfo[]).map((p) => ({
      name: p.name ?? "",
      description: p.description ?? "",
      serves: [...(p.serves ?? [])],
      slots: (p.slots ?? []).map((s) => ({
        name: s.name ?? "",
        description: s.description ?? "",
        requires: [...(s.requires ?? [])],
        optional: [...(s.optional ?? [])],
        recommended: [...(s.recommended ?? [])],
      })),
    }));
  }

  async listBackends(call?: CallOptions): Promise<{ type: string; interfaces: string[]; description: string }[]> {
    const res = await this.t.unary(AD_BACKENDS, {}, co(call));
    return (res.backends as pb.v1.IBackendInfo[]).map((b) => ({
      type: b.type ?? "",
      interfaces: [...(b.interfaces ?? [])],
      description: b.description ?? "",
    }));
  }

  async health(call?: CallOptions): Promise<Health> {
    const res = await this.t.unary(AD_HEALTH, {}, co(call));
    return {
      status: res.status,
      backends: (res.backends as pb.v1.IBackendHealth[]).map((b) => ({
        namespace: b.namespace ?? "",
        backendType: b.backendType ?? "",
        ok: !!b.ok,
        latencyMs: Number(b.latencyMs ?? 0),
        message: b.message ?? "",
      })),
      version: res.version,
      workers: num(res.workers),
    };
  }
}

// ---------------------------------------------------------------- Prism

/** A connection to a Prism gateway. Create with {@link connect}; close with {@link Prism.close}. */
export class Prism {
  /** Control-plane calls (namespaces, backends, health). */
  readonly admin: Admin;
  private readonly cache = new Map<string, KeyValue | PubSub | Queue | Stream | MulticastRegistry | ClaimCheck>();

  /** @internal `transfers`: the address and credentials {@link Prism.claimCheck} streams with. */
  constructor(
    private readonly t: HealingChannel,
    private readonly transfers?: { address: string; options: ClaimCheckOptions },
  ) {
    this.admin = new Admin(t);
  }

  /** The connection state now: `ready`, `reconnecting` (calls wait, subscriptions are resumed after) or `closed`. */
  get state(): ConnectionState {
    return this.t.state;
  }

  /**
   * Connection state changes: `reconnecting` when the connection dropped,
   * `ready` when it is back, `closed` after {@link Prism.close} (or a drop with `reconnect: false`).
   */
  on(event: "state", fn: Listener<[ConnectionState]>): this {
    this.t.events.on(event, fn);
    return this;
  }

  off(event: "state", fn: Listener<[ConnectionState]>): this {
    this.t.events.off(event, fn);
    return this;
  }

  private client<C extends KeyValue | PubSub | Queue | Stream | MulticastRegistry | ClaimCheck>(kind: string, ns: string, make: () => C): C {
    const k = `${kind}\0${ns}`;
    let c = this.cache.get(k) as C | undefined;
    if (!c) this.cache.set(k, (c = make()));
    return c;
  }

  /** Key-value calls on namespace `ns`. */
  kv(ns: string): KeyValue {
    return this.client("kv", ns, () => new KeyValue(this.t, ns));
  }
  /** Publish/subscribe on namespace `ns`. */
  pubsub(ns: string): PubSub {
    return this.client("ps", ns, () => new PubSub(this.t, ns));
  }
  /** Work queues on namespace `ns`. */
  queue(ns: string): Queue {
    return this.client("q", ns, () => new Queue(this.t, ns));
  }
  /** The members of a multicast-registry namespace `ns`. */
  registry(ns: string): MulticastRegistry {
    return this.client("reg", ns, () => new MulticastRegistry(this.t, ns));
  }
  /** Append-only streams on namespace `ns`. */
  stream(ns: string): Stream {
    return this.client("st", ns, () => new Stream(this.t, ns));
  }
  /**
   * Streamed payloads (putStream / getStream) of the claim-check namespace `ns`,
   * with this connection's address and credentials (`token`, `apiKey`,
   * `priority`). Over ws(s):// and http(s):// they travel as HTTP PUT / GET
   * on the same origin (the WebSocket shares the HTTP port), over grpc:// as
   * the ClaimCheck streaming calls. Closed with the client.
   */
  claimCheck(ns: string): ClaimCheck {
    if (!this.transfers) throw new PrismError(Code.FAILED_PRECONDITION, "claimCheck: this client was not made by connect(): use claimCheck(address, namespace, options)");
    const { address, options } = this.transfers;
    return this.client("cc", ns, () => new ClaimCheck(address, ns, options));
  }

  /**
   * Low-level: any unary method by name, with a proto-shaped request object
   * (camelCase fields, bytes as Uint8Array). Resolves to the response as a
   * plain object with every field (defaults included), 64-bit ints as numbers
   * and bytes as Uint8Array: the same on every transport.
   * @example await prism.call("KeyValue", "Get", { namespace: "default", key: "k" })
   */
  async call(service: string, method: string, request: Record<string, unknown> = {}, opts?: CallOptions): Promise<Record<string, unknown>> {
    const info = methodInfo(service, method);
    if (!info || info.streaming) {
      throw new PrismError(Code.UNIMPLEMENTED, `unknown unary method ${service}/${method}`, "PRISM_ERR_UNKNOWN_METHOD");
    }
    let req: unknown;
    try {
      req = info.requestType.fromObject(request);
    } catch (e) {
      throw new PrismError(Code.INVALID_ARGUMENT, `${service}/${method}: ${(e as Error).message}`, "PRISM_ERR_MALFORMED");
    }
    const res = await this.t.unary(info, req as object, co(opts));
    return toPlain(info.responseType, res);
  }

  /** Closes the connection for good (no reconnect): pending calls reject with UNAVAILABLE, subscriptions end with it. Idempotent. */
  close(): Promise<void> {
    for (const c of this.cache.values()) if (c instanceof ClaimCheck) c.close();
    return this.t.close();
  }
}
