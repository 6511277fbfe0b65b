/**
 * One SQLite file: one connection, statements prepared once, shared by every
 * namespace configured with this file (rows carry the namespace). Opening
 * never throws: a file that cannot be opened is reported by health() and by
 * UNAVAILABLE errors, and opening is retried on use (at most once a second).
 */
import { errors } from "../../core/errors.js";
import type { BackendHealth, BackendInstance, DriverContext, NamespaceLimits, NamespaceStores, PubSubStore } from "../driver.js";
import { OnceStatements, STR } from "./idempotency.js";
import { LocalPubSub } from "../common/local-pubsub.js";
import { mapError, openDb, type Db, type OpenOptions } from "./db.js";
import { KvStatements, SqliteKeyValue } from "./keyvalue.js";
import { QueueStatements, SqliteQueue } from "./queue.js";
import { SqliteStream, StreamStatements } from "./stream.js";
import { Waiters } from "./waiters.js";

const SWEEP_EVERY_MS = 5_000;
const SWEEP_BATCH = 1_000;
const REOPEN_AFTER_MS = 1_000;

interface Conn {
  db: Db;
  ping: { get(): unknown };
  kv: KvStatements;
  queue: QueueStatements;
  stream: StreamStatements;
}

interface SharedPubSub {
  bus: LocalPubSub;
  /** Live NamespaceStores using it: a re-applied namespace keeps its subscribers. */
  refs: number;
}

export class SqliteInstance implements BackendInstance {
  private conn: Conn | undefined;
  private openError: Error | undefined;
  private lastOpenAttempt = 0;
  private closed = false;
  private readonly waiters: Waiters;
  private readonly pubsubs = new Map<string, SharedPubSub>();
  private readonly sweeper: NodeJS.Timeout;
  private readonly kvS = (): KvStatements => this.use().kv;
  private readonly queueS = (): QueueStatements => this.use().queue;
  private readonly streamS = (): StreamStatements => this.use().stream;

  constructor(
    private readonly opts: OpenOptions,
    private readonly ctx: DriverContext,
  ) {
    this.waiters = new Waiters(ctx.clock);
    this.tryOpen();
    this.sweeper = setInterval(() => this.sweep(), SWEEP_EVERY_MS);
    this.sweeper.unref();
  }

  private tryOpen(): void {
    this.lastOpenAttempt = Date.now();
    try {
      const db = openDb(this.opts);
      this.conn = { db, ping: db.prepare("SELECT 1"), kv: new KvStatements(db), queue: new QueueStatements(db), stream: new StreamStatements(db) };
      if (this.openError) this.ctx.log("info", `sqlite ${this.opts.path}: open`);
      this.openError = undefined;
    } catch (e) {
      if (!this.openError) this.ctx.log("error", `sqlite ${this.opts.path}: cannot open: ${(e as Error).message}`);
      this.openError = e as Error;
    }
  }

  /** The open connection, or an UNAVAILABLE error. */
  private use(): Conn {
    if (this.conn) return this.conn;
    if (this.closed) throw errors.unavailable(`sqlite ${this.opts.path}: closed`);
    if (Date.now() - this.lastOpenAttempt >= REOPEN_AFTER_MS) this.tryOpen();
    if (this.conn) return this.conn;
    throw errors.unavailable(`sqlite ${this.opts.path}: cannot open`, this.openError);
  }

  /** Deletes expired keys in bounded batches (reads already hide them). */
  sweep(): number {
    if (!this.conn) return 0;
    try {
      let total = 0;
      const now = this.ctx.clock.now();
      for (let i = 0; i < 100; i++) {
        const n = this.conn.kv.sweep.run({ now, limit: SWEEP_BATCH }).changes;
        total += n;
        if (n < SWEEP_BATCH) break;
      }
      const once = OnceStatements.of(this.conn.db);
      for (let i = 0; i < 100 && once.sweep(now, SWEEP_BATCH) === SWEEP_BATCH; i++);
      return total;
    } catch (e) {
      this.ctx.log("warn", `sqlite ${this.opts.path}: TTL sweep failed: ${(e as Error).message}`);
      return 0;
    }
  }

  namespace(name: string, limits: NamespaceLimits): NamespaceStores {
    const clock = this.ctx.clock;
    let shared = this.pubsubs.get(name);
    if (!shared) this.pubsubs.set(name, (shared = { bus: new LocalPubSub(clock), refs: 0 }));
    shared.refs++;
    const pubsubRef = shared;
    let released = false;
    return {
      keyvalue: guard(new SqliteKeyValue(name, this.kvS, clock), this.opts.path),
      pubsub: this.pubsubView(name, pubsubRef.bus),
      queue: guard(new SqliteQueue(name, this.queueS, clock, limits, this.waiters), this.opts.path),
      stream: guard(new SqliteStream(name, this.streamS, clock, limits, this.waiters), this.opts.path),
      close: async () => {
        if (released) return;
        released = true;
        if (--pubsubRef.refs === 0 && this.pubsubs.get(name) === pubsubRef) {
          this.pubsubs.delete(name);
          pubsubRef.bus.closeAll(new Error(`namespace "${name}" closed`));
        }
      },
    };
  }

  /**
   * The namespace's in-process bus, plus pubsub_idempotent: the idempotency
   * record is kept in the file, written in the transaction the message is
   * delivered in (delivery is synchronous, to this process's subscribers).
   */
  private pubsubView(ns: string, bus: LocalPubSub): PubSubStore {
    return {
      publish: (topic, payload, attributes) => bus.publish(topic, payload, attributes),
      subscribe: (pattern, sink) => bus.subscribe(pattern, sink),
      publishOnce: async (topic, payload, attributes, token) => {
        try {
          const once = OnceStatements.of(this.use().db);
          return once.run(ns, token, this.ctx.clock.now(), STR, () => bus.publishNow(topic, payload, attributes));
        } catch (e) {
          throw mapError(e, this.opts.path);
        }
      },
    };
  }

  async health(): Promise<BackendHealth> {
    const t0 = performance.now();
    try {
      this.use().ping.get();
      return { ok: true, latencyMs: performance.now() - t0, message: `sqlite ${this.opts.path}` };
    } catch (e) {
      return { ok: false, latencyMs: performance.now() - t0, message: (mapError(e, this.opts.path) as Error).message };
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    this.waiters.close();
    for (const p of this.pubsubs.values()) p.bus.closeAll(errors.unavailable(`sqlite ${this.opts.path}: closed`));
    this.pubsubs.clear();
    const conn = this.conn;
    this.conn = undefined;
    conn?.db.close();
  }
}

/**
 * Wraps a store so SQLite failures (busy, I/O, closed file) reach callers as
 * Prism errors. Built once per namespace; each call costs one extra promise hop.
 */
function guard<T extends object>(store: T, path: string): T {
  const out = Object.create(null) as Record<string, unknown>;
  let proto: object | null = Object.getPrototypeOf(store);
  const names = new Set<string>();
  while (proto && proto !== Object.prototype) {
    for (const n of Object.getOwnPropertyNames(proto)) if (n !== "constructor") names.add(n);
    proto = Object.getPrototypeOf(proto);
  }
  const onError = (e: unknown): never => {
    throw mapError(e, path);
  };
  for (const n of names) {
    const fn = (store as Record<string, unknown>)[n];
    if (typeof fn !== "function") continue;
    out[n] = (...args: unknown[]) => {
      try {
        return (fn as (...a: unknown[]) => Promise<unknown>).apply(store, args).catch(onError);
      } catch (e) {
        return Promise.reject(mapError(e, path));
      }
    };
  }
  return out as T;
}
