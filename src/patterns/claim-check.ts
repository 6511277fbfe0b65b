/**
 * Claim Check (large payloads): the bytes go to the `payloads` slot (an
 * object store: filesystem or s3) and a small claim travels in their place
 * through the `messages` slot, the KeyValue, Queue, Stream or PubSub backend
 * the namespace fronts (options.fronts, default queue).
 *
 * - Transparent: a Set, Enqueue, Append or Publish whose value is above
 *   options.threshold_bytes (1 MiB) stores the value as a payload and writes
 *   the claim instead; Get, Dequeue, Read, ReadGroup and subscriptions give the
 *   original bytes back, checked against the claim's SHA-256. A claim above
 *   options.inline_max_bytes is not inlined: KeyValue.Get answers
 *   FAILED_PRECONDITION naming the claim; messages arrive with an empty
 *   payload and the claim in the `prism-claim` attribute (JSON), to stream.
 * - Streamed: ClaimCheck.Put uploads any size (options.max_payload_bytes,
 *   5 GiB) chunk by chunk and writes the claim to a key, queue, topic or
 *   stream once the bytes are stored; ClaimCheck.Get streams it back, whole
 *   (digest checked at the end) or a range. Memory per transfer stays at a
 *   few chunks: every stage waits for the next (backpressure end to end).
 * - Orphans: an upload whose claim write fails is deleted at once; the
 *   sweeper (every options.sweep_interval_ms) deletes uploads that never
 *   completed, payloads past their expiry (messages: options.payload_ttl_seconds,
 *   7 days), and payloads of keys that no longer hold their claim (key
 *   deleted, overwritten or expired), each after options.orphan_grace_seconds.
 *   A payload this process is still uploading, or whose claim it has not
 *   written yet, is never swept (another process's: the grace period).
 *   An acked queue message's payload is deleted when this process leased it.
 *
 * KeyValue values are stored with a one-byte tag (0: inline bytes, 1: a
 * claim), so a claim is never mistaken for a value that looks like one.
 */
import { createHash, randomBytes } from "node:crypto";
import type {
  Attributes,
  Bytes,
  DequeueOptions,
  KeyValueStore,
  KvRecord,
  NamespaceStores,
  PayloadMeta,
  PayloadStore,
  PubSubMessage,
  PubSubStore,
  QueueMessage,
  QueueStore,
  ScanPage,
  SetOptions,
  StreamRecord,
  StreamStore,
  Subscription,
  SubscriptionSink,
} from "../backends/driver.js";
import type { Clock } from "../core/clock.js";
import { Code, errors, PrismError } from "../core/errors.js";
import type { InterfaceName } from "../core/interfaces.js";
import type { ComposeContext, PatternDef, PatternRuntime } from "./registry.js";

export type Fronts = "keyvalue" | "queue" | "stream" | "pubsub";

export interface ClaimCheckOptions {
  fronts: Fronts;
  thresholdBytes: number;
  inlineMaxBytes: number;
  maxPayloadBytes: number;
  payloadTtlSeconds: number;
  sweepIntervalMs: number;
  orphanGraceSeconds: number;
}

export const CLAIM_CHECK_DEFAULTS: ClaimCheckOptions = {
  fronts: "queue",
  thresholdBytes: 1024 * 1024,
  inlineMaxBytes: 8 * 1024 * 1024,
  maxPayloadBytes: 5 * 1024 * 1024 * 1024,
  payloadTtlSeconds: 7 * 24 * 3600,
  sweepIntervalMs: 60_000,
  orphanGraceSeconds: 300,
};

/** The attribute a claimed message carries (its value: the claim as JSON). */
export const CLAIM_ATTRIBUTE = "prism-claim";
const TAG_INLINE = 0;
const TAG_CLAIM = 1;
/** Payload label: the key whose value holds the claim (the sweeper checks it still does). */
const LABEL_KEY = "key";
/** Queue leases remembered to delete an acked message's payload. */
const MAX_LEASES = 100_000;

export interface Claim {
  id: string;
  size: number;
  sha256: string;
  contentType: string;
  createdAtMs: number;
  expiresAtMs: number;
}

export function claimOf(id: string, m: PayloadMeta): Claim {
  return { id, size: m.size, sha256: m.sha256, contentType: m.contentType, createdAtMs: m.createdAtMs, expiresAtMs: m.expiresAtMs };
}

export const claimErrors = {
  notFound: (what: string) => new PrismError(Code.NOT_FOUND, "PRISM_ERR_PAYLOAD_NOT_FOUND", `${what} not found (deleted, expired or never stored)`),
  corrupt: (id: string, why: string) => new PrismError(Code.DATA_LOSS, "PRISM_ERR_PAYLOAD_CORRUPT", `payload "${id}": ${why}`),
  tooLargeToInline: (what: string, c: Claim, ns: string) =>
    new PrismError(
      Code.FAILED_PRECONDITION,
      "PRISM_ERR_CLAIM_TOO_LARGE",
      `${what} holds a payload of ${c.size} bytes (claim ${c.id}), above options.inline_max_bytes: stream it with ClaimCheck.Get or GET /v1/ns/${ns}/payloads/${c.id}`,
    ),
};

function newId(): string {
  return randomBytes(16).toString("hex");
}

function encodeClaim(c: Claim): string {
  return JSON.stringify(c);
}

function decodeClaim(text: string): Claim | undefined {
  try {
    const c = JSON.parse(text) as Claim;
    return typeof c?.id === "string" && typeof c.size === "number" && typeof c.sha256 === "string" ? c : undefined;
  } catch {
    return undefined;
  }
}

/** Caller attributes may not pose as a claim. */
function checkAttributes(a: Attributes): void {
  if (Object.hasOwn(a, CLAIM_ATTRIBUTE)) throw errors.invalidArgument(`attributes.${CLAIM_ATTRIBUTE}`, "is reserved for claim checks (set by Prism)");
}

/**
 * Passes a body through, counting and hashing it, and refusing it past the
 * limit or, at the end, when it does not match the digest the caller announced.
 */
export class HashingBody implements AsyncIterable<Uint8Array> {
  size = 0;
  sha256 = "";
  private readonly hash = createHash("sha256");

  constructor(
    private readonly source: AsyncIterable<Uint8Array>,
    private readonly maxBytes: number,
    private readonly expected: string,
  ) {}

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    for await (const chunk of this.source) {
      if (chunk.length === 0) continue;
      this.size += chunk.length;
      if (this.size > this.maxBytes) throw errors.tooLarge("payload", this.size, this.maxBytes);
      this.hash.update(chunk);
      yield chunk;
    }
    this.sha256 = this.hash.digest("hex");
    if (this.expected && this.expected.toLowerCase() !== this.sha256) {
      throw errors.invalidArgument("sha256", `the payload's SHA-256 is ${this.sha256}, not ${this.expected}`);
    }
  }
}

/** A payload read whole, checked against its digest as the last chunk passes (DATA_LOSS on a mismatch). */
async function* verified(id: string, meta: PayloadMeta, body: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  // The last chunk is held back until the digest matches: a reader that already has its status line
  // (HTTP 200 with a Content-Length) then sees a short body, never every byte of a corrupt payload.
  const h = createHash("sha256");
  let n = 0;
  let held: Uint8Array | undefined;
  for await (const chunk of body) {
    h.update(chunk);
    n += chunk.length;
    if (held !== undefined) yield held;
    held = chunk;
  }
  if (n !== meta.size) throw claimErrors.corrupt(id, `read ${n} bytes, the claim says ${meta.size}`);
  const got = h.digest("hex");
  if (got !== meta.sha256) throw claimErrors.corrupt(id, `SHA-256 ${got} does not match the claim's ${meta.sha256}`);
  if (held !== undefined) yield held;
}

async function* once(b: Uint8Array): AsyncGenerator<Uint8Array> {
  yield b;
}

/** Where an upload's claim goes once the bytes are stored. */
export interface UploadTarget {
  key?: string;
  queue?: string;
  topic?: string;
  stream?: string;
  ttlSeconds: number;
  attributes: Attributes;
  contentType: string;
  sha256: string;
  ifAbsent: boolean;
}

export interface UploadResult {
  claim: Claim;
  version?: number;
  messageId?: string;
  offset?: number;
}

/** The pattern's service: uploads, downloads, the transparent stores and the sweeper. */
export class ClaimCheckService {
  readonly counters = { claimed: 0, inlined: 0, uploads: 0, downloads: 0, swept: 0, orphans_deleted: 0, sweep_errors: 0 };
  private readonly leases = new Map<string, string>();
  /**
   * Payloads this process is storing or has stored without its claim written
   * yet (an upload, then the claim's Set, Enqueue, Append or Publish): the
   * sweeper leaves them alone whatever their age, so it can never delete a
   * payload whose reference is about to be committed.
   */
  private readonly inFlight = new Set<string>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  private closed = false;

  constructor(
    readonly namespace: string,
    readonly payloads: PayloadStore,
    readonly fronted: NamespaceStores,
    /** The messages slot's own stores: where an upload's claim is written as is. */
    private readonly raw: NamespaceStores,
    readonly opts: ClaimCheckOptions,
    private readonly clock: Clock,
    private readonly log: (level: "info" | "warn" | "error", msg: string) => void,
  ) {}

  // ------------------------------------------------------------ payloads

  /**
   * Stores a body as a new payload; returns its claim. The payload stays in
   * flight (never swept) until settled(): the caller settles it once the claim
   * is written, or discards it.
   */
  async store(body: AsyncIterable<Uint8Array>, meta: { expiresAtMs: number; contentType: string; sha256: string; labels: Record<string, string> }, signal?: AbortSignal): Promise<Claim> {
    const id = newId();
    const hashing = new HashingBody(body, this.opts.maxPayloadBytes, meta.sha256);
    let stored: PayloadMeta | undefined;
    this.inFlight.add(id);
    try {
      await this.payloads.put(
        id,
        hashing,
        () =>
          (stored = {
            size: hashing.size,
            sha256: hashing.sha256,
            contentType: meta.contentType,
            createdAtMs: this.clock.now(),
            expiresAtMs: meta.expiresAtMs,
            labels: meta.labels,
          }),
        signal,
      );
    } catch (e) {
      this.inFlight.delete(id);
      throw e;
    }
    return claimOf(id, stored!);
  }

  /** The claim of a stored payload is written (or it was discarded): the sweeper judges it from now on. */
  settled(id: string): void {
    this.inFlight.delete(id);
  }

  /** Deletes a payload whose claim was not (or is no longer) written; failures are left to the sweeper. */
  discard(id: string): void {
    this.inFlight.delete(id);
    this.payloads.delete(id).then(
      (d) => void (d && this.counters.orphans_deleted++),
      () => {},
    );
  }

  private messageExpiry(ttlSeconds: number): number {
    const s = ttlSeconds > 0 ? ttlSeconds : this.opts.payloadTtlSeconds;
    return s > 0 ? this.clock.now() + s * 1000 : 0;
  }

  /** ClaimCheck.Put: the bytes first, then the claim where the target says; a failed claim write deletes the bytes. */
  async upload(t: UploadTarget, body: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<UploadResult> {
    this.counters.uploads++;
    checkAttributes(t.attributes);
    const isKey = t.key !== undefined;
    const claim = await this.store(
      body,
      { expiresAtMs: isKey ? 0 : this.messageExpiry(t.ttlSeconds), contentType: t.contentType, sha256: t.sha256, labels: isKey ? { [LABEL_KEY]: t.key! } : {} },
      signal,
    );
    try {
      const attrs = { ...t.attributes, [CLAIM_ATTRIBUTE]: encodeClaim(claim) };
      if (isKey) {
        const version = await this.kv().writeClaim(t.key!, claim, { ttlMs: t.ttlSeconds > 0 ? t.ttlSeconds * 1000 : undefined, ifAbsent: t.ifAbsent || undefined });
        return { claim, version };
      }
      if (t.queue !== undefined) return { claim, messageId: await this.need("queue").enqueue(t.queue, new Uint8Array(0), attrs, 0) };
      if (t.topic !== undefined) return { claim, messageId: await this.need("pubsub").publish(t.topic, new Uint8Array(0), attrs) };
      if (t.stream !== undefined) return { claim, offset: await this.need("stream").append(t.stream, new Uint8Array(0), attrs) };
      return { claim };
    } catch (e) {
      this.discard(claim.id);
      throw e;
    } finally {
      this.settled(claim.id);
    }
  }

  private need<K extends "queue" | "pubsub" | "stream">(k: K): NonNullable<NamespaceStores[K]> {
    const s = this.fronted[k] ? this.raw[k] : undefined;
    if (!s) throw errors.primitiveNotServed(this.namespace, `${k} (this claim-check namespace fronts ${this.opts.fronts})`);
    return s as NonNullable<NamespaceStores[K]>;
  }

  kv(): ClaimKeyValueStore {
    const s = this.fronted.keyvalue;
    if (!(s instanceof ClaimKeyValueStore)) throw errors.primitiveNotServed(this.namespace, `keyvalue (this claim-check namespace fronts ${this.opts.fronts})`);
    return s;
  }

  /** The claim a key holds (null: absent, or an inline value). */
  async claimOfKey(key: string): Promise<Claim | null> {
    return this.kv().claimOf(key);
  }

  /** ClaimCheck.Get: the payload's claim and its bytes (whole: digest-checked; a range: as stored). */
  async open(id: string, offset: number, length: number, signal?: AbortSignal): Promise<{ claim: Claim; body: AsyncIterable<Uint8Array>; start: number; count: number }> {
    const r = await this.payloads.get(id, offset, length, signal);
    if (!r) throw claimErrors.notFound(`payload "${id}"`);
    this.counters.downloads++;
    const claim = claimOf(id, r.meta);
    const start = Math.min(offset, r.meta.size);
    const count = length > 0 ? Math.min(length, r.meta.size - start) : r.meta.size - start;
    const whole = start === 0 && count === r.meta.size;
    return { claim, body: whole ? verified(id, r.meta, r.body) : r.body, start, count };
  }

  async head(id: string): Promise<Claim> {
    const m = await this.payloads.head(id);
    if (!m) throw claimErrors.notFound(`payload "${id}"`);
    return claimOf(id, m);
  }

  async remove(id: string): Promise<boolean> {
    return this.payloads.delete(id);
  }

  /** The bytes of a claim, whole and verified, for transparent reads (at most inline_max_bytes). */
  async inline(c: Claim, what: string): Promise<Uint8Array> {
    if (c.size > this.opts.inlineMaxBytes) throw claimErrors.tooLargeToInline(what, c, this.namespace);
    const { body } = await this.open(c.id, 0, 0);
    const parts: Uint8Array[] = [];
    for await (const p of body) parts.push(p);
    this.counters.inlined++;
    return Buffer.concat(parts);
  }

  /** A transparent write's value: stored as a payload when above the threshold. */
  async claimBytes(value: Bytes, expiresAtMs: number, labels: Record<string, string>): Promise<Claim | null> {
    if (value.length <= this.opts.thresholdBytes) return null;
    this.counters.claimed++;
    return this.store(once(value), { expiresAtMs, contentType: "", sha256: "", labels });
  }

  /** A message's attributes and payload as its consumer gets them: the claim resolved when small enough. */
  async resolveMessage(payload: Bytes, attributes: Attributes, what: string): Promise<{ payload: Bytes; attributes: Attributes }> {
    const raw = attributes[CLAIM_ATTRIBUTE];
    if (raw === undefined) return { payload, attributes };
    const c = decodeClaim(raw);
    if (!c || c.size > this.opts.inlineMaxBytes) return { payload, attributes };
    const { [CLAIM_ATTRIBUTE]: _, ...rest } = attributes;
    return { payload: await this.inline(c, what), attributes: rest };
  }

  /** A message about to be sent: its payload replaced by a claim above the threshold. */
  async claimMessage(payload: Bytes, attributes: Attributes): Promise<{ payload: Bytes; attributes: Attributes; claim: Claim | null }> {
    checkAttributes(attributes);
    const claim = await this.claimBytes(payload, this.messageExpiry(0), {});
    if (!claim) return { payload, attributes, claim };
    return { payload: new Uint8Array(0), attributes: { ...attributes, [CLAIM_ATTRIBUTE]: encodeClaim(claim) }, claim };
  }

  rememberLease(receipt: string, claimId: string): void {
    if (this.leases.size >= MAX_LEASES) this.leases.delete(this.leases.keys().next().value!);
    this.leases.set(receipt, claimId);
  }

  acked(receipt: string): void {
    const id = this.leases.get(receipt);
    if (id === undefined) return;
    this.leases.delete(receipt);
    this.discard(id);
  }

  // ------------------------------------------------------------ sweeper

  start(): void {
    if (this.opts.sweepIntervalMs <= 0) return;
    const tick = () => {
      if (this.closed) return;
      void this.sweep().finally(() => {
        if (!this.closed) this.sweepTimer = setTimeout(tick, this.opts.sweepIntervalMs).unref();
      });
    };
    this.sweepTimer = setTimeout(tick, this.opts.sweepIntervalMs).unref();
  }

  /** One pass over every payload: deletes incomplete uploads, expired payloads and keys' orphans past the grace period. Returns how many it deleted. */
  sweep(): Promise<void> {
    return (this.sweeping ??= this.sweepOnce().finally(() => (this.sweeping = undefined)));
  }

  private async sweepOnce(): Promise<void> {
    const now = this.clock.now();
    const grace = this.opts.orphanGraceSeconds * 1000;
    let cursor = "";
    try {
      do {
        const page = await this.payloads.list(cursor, 500);
        cursor = page.nextCursor;
        for (const item of page.items) {
          if (this.closed) return;
          // Checked before the key is read: a payload not in flight now had its claim written (or failed) already.
          if (this.inFlight.has(item.id)) continue;
          let orphan = false;
          if (!item.complete) orphan = now - item.createdAtMs > Math.max(grace, 60_000);
          else if (item.expiresAtMs !== 0 && item.expiresAtMs <= now) orphan = true;
          else if (item.labels?.[LABEL_KEY] !== undefined && now - item.createdAtMs > grace) {
            const holder = this.fronted.keyvalue instanceof ClaimKeyValueStore ? await this.fronted.keyvalue.claimOf(item.labels[LABEL_KEY]!) : null;
            orphan = holder?.id !== item.id;
          }
          if (orphan && (await this.payloads.delete(item.id))) this.counters.swept++;
        }
      } while (cursor !== "");
    } catch (e) {
      this.counters.sweep_errors++;
      this.log("warn", `sweeper: ${(e as Error).message}`);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.sweepTimer);
    await this.sweeping?.catch(() => {});
  }
}

// ------------------------------------------------------------ transparent stores

/** KeyValue over the fronted store: tagged values, claims above the threshold, resolved on read. */
export class ClaimKeyValueStore implements KeyValueStore {
  batchGet?: (keys: string[]) => Promise<(KvRecord | null)[]>;
  scan?: (prefix: string, cursor: string, limit: number, keysOnly: boolean) => Promise<ScanPage>;
  expire?: (key: string, ttlMs: number) => Promise<boolean>;
  ttl?: (key: string) => Promise<{ ttlMs: number | null } | null>;
  persist?: (key: string) => Promise<boolean>;
  service!: ClaimCheckService;

  constructor(private readonly inner: KeyValueStore) {
    const self = this as unknown as Record<string, unknown>;
    const src = inner as unknown as Record<string, unknown>;
    for (const m of ["expire", "ttl", "persist"]) {
      const fn = src[m];
      if (typeof fn === "function") self[m] = (fn as (...a: unknown[]) => unknown).bind(inner);
    }
    if (inner.batchGet) this.batchGet = async (keys) => Promise.all((await inner.batchGet!(keys)).map((r, i) => (r ? this.decode(keys[i]!, r) : null)));
    if (inner.scan) {
      this.scan = async (prefix, cursor, limit, keysOnly) => {
        const page = await inner.scan!(prefix, cursor, limit, keysOnly);
        if (keysOnly) return page;
        const items = await Promise.all(page.items.map(async (it) => (it.value ? { ...it, value: (await this.decode(it.key, { value: it.value, version: it.version })).value } : it)));
        return { items, nextCursor: page.nextCursor };
      };
    }
  }

  private static tagged(tag: number, body: Uint8Array): Uint8Array {
    const out = Buffer.allocUnsafe(body.length + 1);
    out[0] = tag;
    out.set(body, 1);
    return out;
  }

  /** The claim a stored value holds, if it is one. */
  private static claimIn(value: Bytes): Claim | undefined {
    if (value.length === 0 || value[0] !== TAG_CLAIM) return undefined;
    return decodeClaim(Buffer.from(value.buffer, value.byteOffset + 1, value.length - 1).toString("utf8"));
  }

  private async decode(key: string, r: KvRecord): Promise<KvRecord> {
    const v = r.value;
    if (v.length === 0) return r; // written around the pattern: taken as is
    if (v[0] === TAG_INLINE) return { value: v.subarray(1), version: r.version };
    const c = ClaimKeyValueStore.claimIn(v);
    if (!c) return r;
    return { value: await this.service.inline(c, `key "${key}"`), version: r.version };
  }

  async claimOf(key: string): Promise<Claim | null> {
    const r = await this.inner.get(key);
    return r ? (ClaimKeyValueStore.claimIn(r.value) ?? null) : null;
  }

  async get(key: string): Promise<KvRecord | null> {
    const r = await this.inner.get(key);
    return r ? this.decode(key, r) : null;
  }

  /** Writes a claim as the key's value; the payload the key held before is deleted. */
  async writeClaim(key: string, c: Claim, opts: SetOptions): Promise<number> {
    const before = await this.claimOf(key).catch(() => null);
    const version = await this.inner.set(key, ClaimKeyValueStore.tagged(TAG_CLAIM, Buffer.from(encodeClaim(c), "utf8")), opts);
    if (before && before.id !== c.id) this.service.discard(before.id);
    return version;
  }

  async set(key: string, value: Bytes, opts: SetOptions): Promise<number> {
    const claim = await this.service.claimBytes(value, 0, { [LABEL_KEY]: key });
    if (claim) {
      try {
        return await this.writeClaim(key, claim, opts);
      } catch (e) {
        this.service.discard(claim.id);
        throw e;
      } finally {
        this.service.settled(claim.id);
      }
    }
    const before = await this.claimOf(key).catch(() => null);
    const version = await this.inner.set(key, ClaimKeyValueStore.tagged(TAG_INLINE, value), opts);
    if (before) this.service.discard(before.id);
    return version;
  }

  async delete(key: string): Promise<boolean> {
    const before = await this.claimOf(key).catch(() => null);
    const deleted = await this.inner.delete(key);
    if (before) this.service.discard(before.id);
    return deleted;
  }

  exists(key: string): Promise<boolean> {
    return this.inner.exists(key);
  }
}

class ClaimQueueStore implements QueueStore {
  extendVisibility?: (queue: string, receipt: string, ms: number) => Promise<void>;

  constructor(
    private readonly inner: QueueStore,
    private readonly svc: () => ClaimCheckService,
  ) {
    if (inner.extendVisibility) this.extendVisibility = inner.extendVisibility.bind(inner);
  }

  async enqueue(queue: string, payload: Bytes, attributes: Attributes, delayMs: number): Promise<string> {
    const m = await this.svc().claimMessage(payload, attributes);
    try {
      return await this.inner.enqueue(queue, m.payload, m.attributes, delayMs);
    } catch (e) {
      if (m.claim) this.svc().discard(m.claim.id);
      throw e;
    } finally {
      if (m.claim) this.svc().settled(m.claim.id);
    }
  }

  async dequeue(queue: string, opts: DequeueOptions): Promise<QueueMessage[]> {
    const msgs = await this.inner.dequeue(queue, opts);
    return Promise.all(
      msgs.map(async (msg) => {
        const raw = msg.attributes[CLAIM_ATTRIBUTE];
        const c = raw !== undefined ? decodeClaim(raw) : undefined;
        if (c) this.svc().rememberLease(msg.receipt, c.id);
        const r = await this.svc().resolveMessage(msg.payload, msg.attributes, `message ${msg.messageId}`);
        return { ...msg, payload: r.payload, attributes: r.attributes };
      }),
    );
  }

  async ack(queue: string, receipt: string): Promise<void> {
    await this.inner.ack(queue, receipt);
    this.svc().acked(receipt);
  }

  nack(queue: string, receipt: string, delayMs: number): Promise<void> {
    return this.inner.nack(queue, receipt, delayMs);
  }
}

class ClaimStreamStore implements StreamStore {
  readGroup?: StreamStore["readGroup"];
  ackGroup?: StreamStore["ackGroup"];

  constructor(
    private readonly inner: StreamStore,
    private readonly svc: () => ClaimCheckService,
  ) {
    if (inner.readGroup) {
      this.readGroup = async (stream, group, consumer, count, blockMs, signal) => this.resolve(await inner.readGroup!(stream, group, consumer, count, blockMs, signal));
    }
    if (inner.ackGroup) this.ackGroup = inner.ackGroup.bind(inner);
  }

  private resolve(records: StreamRecord[]): Promise<StreamRecord[]> {
    return Promise.all(
      records.map(async (r) => {
        const m = await this.svc().resolveMessage(r.payload, r.attributes, `record ${r.offset}`);
        return { ...r, payload: m.payload, attributes: m.attributes };
      }),
    );
  }

  async append(stream: string, payload: Bytes, attributes: Attributes): Promise<number> {
    const m = await this.svc().claimMessage(payload, attributes);
    try {
      return await this.inner.append(stream, m.payload, m.attributes);
    } catch (e) {
      if (m.claim) this.svc().discard(m.claim.id);
      throw e;
    } finally {
      if (m.claim) this.svc().settled(m.claim.id);
    }
  }

  async read(stream: string, fromOffset: number, limit: number): Promise<StreamRecord[]> {
    return this.resolve(await this.inner.read(stream, fromOffset, limit));
  }
}

class ClaimPubSubStore implements PubSubStore {
  constructor(
    private readonly inner: PubSubStore,
    private readonly svc: () => ClaimCheckService,
  ) {}

  async publish(topic: string, payload: Bytes, attributes: Attributes): Promise<string> {
    const m = await this.svc().claimMessage(payload, attributes);
    try {
      return await this.inner.publish(topic, m.payload, m.attributes);
    } catch (e) {
      if (m.claim) this.svc().discard(m.claim.id);
      throw e;
    } finally {
      if (m.claim) this.svc().settled(m.claim.id);
    }
  }

  subscribe(pattern: string, sink: SubscriptionSink): Promise<Subscription> {
    // Claims are resolved one after another, so messages keep their order.
    let chain: Promise<void> = Promise.resolve();
    return this.inner.subscribe(pattern, {
      onMessage: (msg: PubSubMessage) => {
        if (msg.attributes[CLAIM_ATTRIBUTE] === undefined) {
          chain = chain.then(() => sink.onMessage(msg));
          return;
        }
        const resolved = this.svc().resolveMessage(msg.payload, msg.attributes, `message ${msg.messageId}`);
        chain = chain.then(async () => {
          try {
            const r = await resolved;
            sink.onMessage({ ...msg, payload: r.payload, attributes: r.attributes });
          } catch {
            sink.onMessage(msg); // the payload is gone or unreadable: the consumer still gets the claim
          }
        });
      },
      onError: (e) => void chain.then(() => sink.onError(e)),
    });
  }
}

// ------------------------------------------------------------ the pattern

export function claimCheckOptionsOf(raw: Readonly<Record<string, unknown>>): ClaimCheckOptions {
  const d = CLAIM_CHECK_DEFAULTS;
  const num = (k: string, def: number) => (typeof raw[k] === "number" ? (raw[k] as number) : def);
  return {
    fronts: typeof raw.fronts === "string" ? (raw.fronts as Fronts) : d.fronts,
    thresholdBytes: num("threshold_bytes", d.thresholdBytes),
    inlineMaxBytes: num("inline_max_bytes", d.inlineMaxBytes),
    maxPayloadBytes: num("max_payload_bytes", d.maxPayloadBytes),
    payloadTtlSeconds: num("payload_ttl_seconds", d.payloadTtlSeconds),
    sweepIntervalMs: num("sweep_interval_ms", d.sweepIntervalMs),
    orphanGraceSeconds: num("orphan_grace_seconds", d.orphanGraceSeconds),
  };
}

function compose(ctx: ComposeContext): PatternRuntime {
  const o = claimCheckOptionsOf(ctx.options);
  const payloads = ctx.slots.get("payloads")!.stores.payload!;
  const m = ctx.slots.get("messages")!.stores;
  let service: ClaimCheckService | undefined;
  const svc = () => service!;
  const fronted: NamespaceStores = {};
  if (o.fronts === "keyvalue" && m.keyvalue) fronted.keyvalue = new ClaimKeyValueStore(m.keyvalue);
  if (o.fronts === "queue" && m.queue) fronted.queue = new ClaimQueueStore(m.queue, svc);
  if (o.fronts === "stream" && m.stream) fronted.stream = new ClaimStreamStore(m.stream, svc);
  if (o.fronts === "pubsub" && m.pubsub) fronted.pubsub = new ClaimPubSubStore(m.pubsub, svc);
  service = new ClaimCheckService(ctx.namespace, payloads, fronted, m, o, ctx.clock, ctx.log);
  if (fronted.keyvalue instanceof ClaimKeyValueStore) fronted.keyvalue.service = service;
  service.start();
  return {
    stores: fronted,
    interfaces: claims(new Map([...ctx.slots].map(([k, v]) => [k, v.interfaces])), ctx.options),
    counters: service.counters,
    service,
    close: () => service!.close(),
  };
}

/** The fronted family's interfaces as the messages backend claims them (less what the claim stores do not forward). */
const NOT_FORWARDED: ReadonlySet<string> = new Set(["keyvalue_batch", "keyvalue_outbox", "keyvalue_idempotent", "queue_idempotent", "stream_idempotent", "pubsub_idempotent"]);
function claims(slots: ReadonlyMap<string, ReadonlySet<InterfaceName>>, options: Readonly<Record<string, unknown>> = {}): InterfaceName[] {
  const fronts = claimCheckOptionsOf(options).fronts;
  const messages = slots.get("messages") ?? new Set<InterfaceName>();
  return [...messages].filter((i) => i.startsWith(`${fronts}_`) && !NOT_FORWARDED.has(i));
}

const FRONTED: Record<Fronts, { requires: InterfaceName[]; optional: InterfaceName[]; recommended: string[] }> = {
  queue: { requires: ["queue_basic"], optional: ["queue_visibility", "queue_dead_letter", "queue_delayed"], recommended: ["rabbitmq", "redis", "postgres", "nats", "sqlite", "memstore"] },
  keyvalue: { requires: ["keyvalue_basic"], optional: ["keyvalue_ttl", "keyvalue_scan"], recommended: ["redis", "postgres", "sqlite", "memstore"] },
  stream: { requires: ["stream_basic"], optional: ["stream_consumer_groups", "stream_replay"], recommended: ["kafka", "nats", "redis", "postgres"] },
  pubsub: { requires: ["pubsub_basic"], optional: ["pubsub_wildcards"], recommended: ["nats", "redis", "mqtt", "kafka", "memstore"] },
};

export const claimCheck: PatternDef = {
  name: "claim-check",
  description:
    "large payloads: values and messages above options.threshold_bytes are stored in the payloads slot and a claim travels through the messages slot; reads hand the bytes back (SHA-256 checked); ClaimCheck.Put/Get stream payloads up to 5 GiB",
  serves: ["claim_check", "queue"],
  servesFor: (options) => ["claim_check", typeof options.fronts === "string" ? (options.fronts as Fronts) : CLAIM_CHECK_DEFAULTS.fronts],
  slots: [
    {
      name: "payloads",
      description: "stores the payloads (an object store: streamed put, ranged get, delete, expiry)",
      primitive: "payload",
      requires: ["payload_basic"],
      optional: ["payload_ttl"],
      recommended: ["filesystem", "s3"],
    },
    {
      name: "messages",
      description: "carries the claims: the queue (options.fronts: queue, the default), keyvalue, stream or pubsub backend the namespace serves",
      primitive: "queue",
      ...FRONTED.queue,
      forOptions: (options) => {
        const f = typeof options.fronts === "string" && options.fronts in FRONTED ? (options.fronts as Fronts) : "queue";
        return { primitive: f, ...FRONTED[f], description: `carries the claims: the ${f} backend the namespace serves (options.fronts: ${f})` };
      },
    },
  ],
  compose,
  claims,
};
