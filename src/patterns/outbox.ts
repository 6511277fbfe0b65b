/**
 * Outbox (transactional messaging): the KeyValue API over a `store` that can
 * commit a value and an outbox row in one local transaction (keyvalue_outbox:
 * postgres, sqlite), and a relay that delivers the committed messages to the
 * `messaging` slot: published (options.deliver_to: pubsub, the default) or
 * enqueued (deliver_to: queue; the message's topic is the queue name).
 *
 * - A Set or Delete that carries a `message` commits the value and the message
 *   together; a write refused (CAS) or failed commits neither, so no message
 *   goes out for it. A Delete sends its message only when it deleted a key.
 * - The relay hands out committed messages in outbox id order, which is
 *   commit order per key; per key one at a time, keys side by side. A message
 *   is marked sent only after the messaging backend acknowledged it (publish
 *   or enqueue resolved), so a crash in between sends it again after the
 *   restart: at least once, never lost, never invented.
 * - While messaging fails the relay backs off (100 ms doubling to 2 s) and
 *   messages wait in the store; they go out, in order, when it answers again.
 *   A message the messaging backend refuses for good (INVALID_ARGUMENT, e.g.
 *   a PostgreSQL NOTIFY payload above 8000 bytes) is parked: kept in the table
 *   with the error, counted (`parked`), logged, and the key's later messages go on.
 * - Its own commits wake the relay at once; commits of other Prism processes
 *   on the same database are found by a poll every options.poll_interval_ms.
 *   On PostgreSQL one relay per namespace works at a time (advisory lock), so
 *   several processes do not publish the same messages twice.
 * - The namespace also serves PubSub and Queue from the messaging slot (the
 *   messages are published in this namespace), so consumers subscribe or
 *   dequeue through it.
 */
import type { Attributes, Bytes, KeyValueStore, KvRecord, NamespaceStores, OutboxMessage, OutboxOutcome, OutboxRecord, ScanPage, SetOptions } from "../backends/driver.js";
import { Code, errors, PrismError } from "../core/errors.js";
import type { InterfaceName } from "../core/interfaces.js";
import type { ComposeContext, PatternDef, PatternRuntime } from "./registry.js";

export interface OutboxOptions {
  deliverTo: "pubsub" | "queue";
  pollIntervalMs: number;
  keepSentSeconds: number;
  /** Adds the outbox id as this attribute to each delivered message (unset: exactly the caller's attributes). */
  idAttribute?: string;
}

export const OUTBOX_DEFAULTS: OutboxOptions = { deliverTo: "pubsub", pollIntervalMs: 500, keepSentSeconds: 3600 };

/** Messages handed out per relay pass. */
const BATCH = 100;
/** Keys delivered side by side within a pass (one message at a time per key). */
const KEYS_IN_FLIGHT = 16;
/** A publish or enqueue that has not answered by then counts as failed (it is retried: at least once). */
const DELIVER_TIMEOUT_MS = 10_000;
const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 2_000;

export type OutboxCounter = "published" | "pending" | "publish_errors" | "parked" | "store_errors";

const QUEUE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,254}$/;

/** The topic of a message, checked against where it goes, before it is committed (a bad one could never be delivered). */
function checkTopic(deliverTo: OutboxOptions["deliverTo"], topic: string): void {
  const field = "message.topic";
  if (deliverTo === "queue") {
    if (!QUEUE_NAME.test(topic)) throw errors.invalidArgument(field, `"${topic}" must be a queue name: 1-255 of A-Z a-z 0-9 _ . : @ - (not starting with . : @ -)`);
    return;
  }
  if (topic.length > 255) throw errors.invalidArgument(field, "must be at most 255 characters");
  for (const t of topic.split(".")) {
    if (!t) throw errors.invalidArgument(field, `"${topic}" has an empty token`);
    if (/[\s*>]/.test(t)) throw errors.invalidArgument(field, `"${topic}": a topic to publish to has no whitespace and no wildcards (* >)`);
  }
}

function isPermanent(e: unknown): boolean {
  return e instanceof PrismError && e.code === Code.INVALID_ARGUMENT;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(errors.unavailable(`messaging did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/**
 * The background loop that delivers committed messages: one pass at a time
 * (store.outboxRelay), then at once again while messages remain, else asleep
 * until a commit wakes it or the poll interval passes; backing off while the
 * store or the messaging backend fails.
 */
export class OutboxRelay {
  readonly counters: Record<OutboxCounter, number> = { published: 0, pending: 0, publish_errors: 0, parked: 0, store_errors: 0 };
  private closed = false;
  private loop: Promise<void> | undefined;
  private woken = false;
  private wakeSleep: (() => void) | undefined;
  private backoffMs = 0;
  private failing: "" | "store" | "messaging" = "";

  constructor(
    private readonly store: KeyValueStore,
    private readonly deliver: (rec: OutboxRecord) => Promise<unknown>,
    private readonly opts: OutboxOptions,
    private readonly log: (level: "info" | "warn" | "error", msg: string) => void,
  ) {}

  start(): void {
    this.loop ??= this.run();
  }

  /** A commit happened: run a pass now (unless backing off: a failing backend is not hammered at the write rate). */
  wake(): void {
    this.woken = true;
    if (this.backoffMs === 0) this.wakeSleep?.();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wakeSleep?.();
    // A pass waiting on a messaging backend that does not answer is not waited for long: its messages stay unsent.
    if (this.loop) await Promise.race([this.loop, new Promise((r) => setTimeout(r, 2_000).unref())]);
  }

  private sleep(ms: number, wakeable: boolean): Promise<void> {
    if (ms <= 0 || this.closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const t = setTimeout(done, ms);
      t.unref();
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wakeSleep = wakeable ? done : () => (this.closed ? done() : undefined);
    }).finally(() => (this.wakeSleep = undefined));
  }

  private backoff(): number {
    this.backoffMs = this.backoffMs === 0 ? BACKOFF_MIN_MS : Math.min(BACKOFF_MAX_MS, this.backoffMs * 2);
    return this.backoffMs;
  }

  private recovered(): void {
    if (this.failing) this.log("info", `${this.failing} answers again; ${this.counters.pending} message(s) pending`);
    this.failing = "";
    this.backoffMs = 0;
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      this.woken = false;
      let next = this.opts.pollIntervalMs;
      let wakeable = true;
      try {
        let deliverFailed: unknown;
        const pass = await this.store.outboxRelay!({ limit: BATCH, keepSentMs: this.opts.keepSentSeconds * 1000 }, async (batch) => {
          const r = await this.deliverBatch(batch);
          deliverFailed = r.error;
          return r.outcome;
        });
        if (pass.locked) this.counters.pending = pass.pending;
        if (deliverFailed !== undefined) {
          if (this.failing !== "messaging") {
            this.log("warn", `messaging failed, ${pass.pending} message(s) wait in the outbox; retrying with backoff: ${(deliverFailed as Error).message}`);
          }
          this.failing = "messaging";
          next = this.backoff();
          wakeable = false;
        } else {
          this.recovered();
          if (pass.locked && pass.pending > 0) next = 0;
          else if (this.woken) next = 0;
        }
      } catch (e) {
        this.counters.store_errors++;
        if (this.failing !== "store") this.log("warn", `the outbox store failed; retrying with backoff: ${(e as Error).message}`);
        this.failing = "store";
        next = this.backoff();
        wakeable = false;
      }
      if (next > 0 && !this.closed) await this.sleep(next, wakeable);
    }
  }

  /** Delivers a batch: per key in id order, one at a time; a key stops at its first transient failure, the batch soon after. */
  private async deliverBatch(batch: OutboxRecord[]): Promise<{ outcome: OutboxOutcome; error?: unknown }> {
    const byKey = new Map<string, OutboxRecord[]>();
    for (const r of batch) {
      const list = byKey.get(r.key);
      if (list) list.push(r);
      else byKey.set(r.key, [r]);
    }
    const chains = [...byKey.values()];
    const outcome: OutboxOutcome = { sent: [], failed: [] };
    let error: unknown;
    let next = 0;
    const worker = async () => {
      while (error === undefined && !this.closed && next < chains.length) {
        for (const rec of chains[next++]!) {
          if (error !== undefined || this.closed) return;
          try {
            await withTimeout(this.deliver(rec), DELIVER_TIMEOUT_MS);
            outcome.sent.push(rec.id);
            this.counters.published++;
          } catch (e) {
            if (isPermanent(e)) {
              outcome.failed.push({ id: rec.id, error: (e as Error).message });
              this.counters.parked++;
              this.log("error", `message ${rec.id} (key "${rec.key}", topic "${rec.topic}") refused by messaging, parked in the outbox: ${(e as Error).message}`);
              continue;
            }
            this.counters.publish_errors++;
            error ??= e;
            break; // this key's later messages wait behind this one
          }
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(KEYS_IN_FLIGHT, chains.length) }, worker));
    return { outcome, error };
  }
}

/** The namespace's KeyValue store: everything forwarded to the store slot; writes with a message wake the relay. */
export class OutboxStore implements KeyValueStore {
  batchGet?: (keys: string[]) => Promise<(KvRecord | null)[]>;
  batchSet?: (entries: { key: string; value: Bytes }[], ttlMs: number | undefined) => Promise<number[]>;
  batchDelete?: (keys: string[]) => Promise<number>;
  scan?: (prefix: string, cursor: string, limit: number, keysOnly: boolean) => Promise<ScanPage>;
  expire?: (key: string, ttlMs: number) => Promise<boolean>;
  ttl?: (key: string) => Promise<{ ttlMs: number | null } | null>;
  persist?: (key: string) => Promise<boolean>;
  // keyvalue_idempotent (writes without a message: a keyed write with one is refused above the store)
  setOnce?: KeyValueStore["setOnce"];
  deleteOnce?: KeyValueStore["deleteOnce"];

  constructor(
    private readonly inner: KeyValueStore,
    private readonly relay: OutboxRelay,
    private readonly deliverTo: OutboxOptions["deliverTo"],
  ) {
    const self = this as unknown as Record<string, unknown>;
    const src = inner as unknown as Record<string, unknown>;
    for (const m of ["batchGet", "batchSet", "batchDelete", "scan", "expire", "ttl", "persist", "setOnce", "deleteOnce"]) {
      const fn = src[m];
      if (typeof fn === "function") self[m] = (fn as (...a: unknown[]) => unknown).bind(inner);
    }
  }

  get(key: string): Promise<KvRecord | null> {
    return this.inner.get(key);
  }

  set(key: string, value: Bytes, opts: SetOptions): Promise<number> {
    return this.inner.set(key, value, opts);
  }

  delete(key: string): Promise<boolean> {
    return this.inner.delete(key);
  }

  exists(key: string): Promise<boolean> {
    return this.inner.exists(key);
  }

  async setWithMessage(key: string, value: Bytes, opts: SetOptions, msg: OutboxMessage): Promise<number> {
    checkTopic(this.deliverTo, msg.topic);
    const version = await this.inner.setWithMessage!(key, value, opts, msg);
    this.relay.wake();
    return version;
  }

  async deleteWithMessage(key: string, msg: OutboxMessage): Promise<boolean> {
    checkTopic(this.deliverTo, msg.topic);
    const deleted = await this.inner.deleteWithMessage!(key, msg);
    if (deleted) this.relay.wake();
    return deleted;
  }
}

export function outboxOptionsOf(raw: Readonly<Record<string, unknown>>): OutboxOptions {
  return {
    deliverTo: raw.deliver_to === "queue" ? "queue" : "pubsub",
    pollIntervalMs: typeof raw.poll_interval_ms === "number" ? raw.poll_interval_ms : OUTBOX_DEFAULTS.pollIntervalMs,
    keepSentSeconds: typeof raw.keep_sent_seconds === "number" ? raw.keep_sent_seconds : OUTBOX_DEFAULTS.keepSentSeconds,
    idAttribute: typeof raw.id_attribute === "string" ? raw.id_attribute : undefined,
  };
}

function compose(ctx: ComposeContext): PatternRuntime {
  const store = ctx.slots.get("store")!;
  const messaging = ctx.slots.get("messaging")!;
  const o = outboxOptionsOf(ctx.options);
  const attrs = (r: OutboxRecord): Attributes => (o.idAttribute ? { ...r.attributes, [o.idAttribute]: String(r.id) } : r.attributes);
  const m = messaging.stores;
  const deliver =
    o.deliverTo === "queue" ? (r: OutboxRecord) => m.queue!.enqueue(r.topic, r.payload, attrs(r), 0) : (r: OutboxRecord) => m.pubsub!.publish(r.topic, r.payload, attrs(r));
  const relay = new OutboxRelay(store.stores.keyvalue!, deliver, o, ctx.log);
  const stores: NamespaceStores = { keyvalue: new OutboxStore(store.stores.keyvalue!, relay, o.deliverTo), pubsub: m.pubsub, queue: m.queue };
  relay.start();
  return {
    stores,
    interfaces: claims(new Map([...ctx.slots].map(([k, v]) => [k, v.interfaces]))),
    counters: relay.counters,
    close: () => relay.close(),
  };
}

/** KeyValue as the store serves it (keyvalue_outbox included); PubSub and Queue as the messaging backend serves them. */
function claims(slots: ReadonlyMap<string, ReadonlySet<InterfaceName>>): InterfaceName[] {
  const store = slots.get("store") ?? new Set<InterfaceName>();
  const messaging = slots.get("messaging") ?? new Set<InterfaceName>();
  return [...[...store].filter((i) => i.startsWith("keyvalue_")), ...[...messaging].filter((i) => i.startsWith("pubsub_") || i.startsWith("queue_"))];
}

export const outbox: PatternDef = {
  name: "outbox",
  description:
    "transactional messaging: a KeyValue Set/Delete with a message commits both in one transaction; a relay delivers committed messages at least once, in commit order per key, to the messaging slot (pubsub or queue)",
  serves: ["keyvalue", "pubsub", "queue"],
  slots: [
    {
      name: "store",
      description: "holds the values and the outbox table (a value and its message commit in one local transaction)",
      primitive: "keyvalue",
      requires: ["keyvalue_basic", "keyvalue_outbox"],
      optional: ["keyvalue_ttl", "keyvalue_scan", "keyvalue_batch", "keyvalue_cas"],
      recommended: ["postgres", "sqlite"],
    },
    {
      name: "messaging",
      description: "where the relay delivers: publishes (options.deliver_to: pubsub, the default) or, with deliver_to: queue, enqueues (then it requires queue_basic)",
      primitive: "pubsub",
      requires: ["pubsub_basic"],
      optional: ["pubsub_wildcards"],
      recommended: ["nats", "redis", "rabbitmq", "kafka", "mqtt"],
      forOptions: (options) =>
        options.deliver_to === "queue"
          ? {
              description: "where the relay delivers: enqueues (options.deliver_to: queue; the message's topic is the queue name)",
              primitive: "queue",
              requires: ["queue_basic"],
              optional: ["queue_visibility", "queue_dead_letter", "queue_delayed"],
              recommended: ["rabbitmq", "redis", "postgres", "nats", "sqlite"],
            }
          : {},
    },
  ],
  compose,
  claims,
};
