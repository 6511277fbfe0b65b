/**
 * One PostgreSQL database + schema: a pg.Pool for queries, one dedicated
 * listen connection (Listener) for NOTIFY wake-ups and PubSub, a TTL sweeper,
 * and the stores of every namespace configured with these settings (rows
 * carry the namespace). Creating it never touches the network: the schema is
 * created/migrated on the first call, and retried on the next call while
 * PostgreSQL is down (those calls fail with UNAVAILABLE). pg.Pool discards
 * broken connections and opens new ones on demand, so the instance recovers
 * by itself when the server returns.
 */
import { createHash } from "node:crypto";
import pg from "pg";
import { errors } from "../../core/errors.js";
import type { BackendHealth, BackendInstance, DriverContext, NamespaceLimits, NamespaceStores } from "../driver.js";
import { KvSql, PgKeyValue } from "./keyvalue.js";
import { Listener } from "./listener.js";
import { PgPubSub, pubsubChannel } from "./pubsub.js";
import { PgQueue, QueueSql } from "./queue.js";
import { ident, mapError, migrate, types } from "./sql.js";
import { PgStream, StreamSql } from "./stream.js";
import { RelayLocks } from "./relay-lock.js";
import { sweepOnce } from "./idempotency.js";
import { Waiters } from "./waiters.js";

const SWEEP_EVERY_MS = 5_000;
const SWEEP_BATCH = 1_000;

export interface PgOptions {
  url: string;
  schema: string;
  poolMax: number;
  connectTimeoutMs: number;
}

interface SharedPubSub {
  store: PgPubSub;
  /** Live NamespaceStores using it: a re-applied namespace keeps its subscribers. */
  refs: number;
}

/** "postgres host:port/db schema" without credentials, for messages and logs. */
function labelOf(url: string, schema: string): string {
  try {
    const u = new URL(url);
    return `postgres ${u.hostname}:${u.port || 5432}${u.pathname} schema ${schema}`;
  } catch {
    return `postgres schema ${schema}`;
  }
}

export class PgInstance implements BackendInstance {
  readonly pool: pg.Pool;
  readonly listener: Listener;
  /** Outbox relay locks of this process (one dedicated connection, opened on first use). */
  readonly relayLocks: RelayLocks;
  /** Outbox relay passes running in this process, by lock key (one at a time per namespace). */
  readonly relaying = new Set<string>();
  readonly waiters: Waiters;
  /** NOTIFY channel for long-poll wake-ups, shared by every Prism process on this schema. */
  readonly wakeChannel: string;
  readonly kvSql: KvSql;
  readonly queueSql: QueueSql;
  readonly streamSql: StreamSql;
  readonly label: string;
  private migrated = false;
  private migrating: Promise<void> | undefined;
  private closed = false;
  private sweepFailing = false;
  private readonly sweeper: NodeJS.Timeout;
  private readonly pubsubs = new Map<string, SharedPubSub>();

  constructor(
    private readonly opts: PgOptions,
    private readonly ctx: DriverContext,
  ) {
    this.label = labelOf(opts.url, opts.schema);
    const config: pg.PoolConfig = {
      connectionString: opts.url,
      connectionTimeoutMillis: opts.connectTimeoutMs,
      types,
      application_name: "prism",
    };
    this.pool = new pg.Pool({ ...config, max: opts.poolMax, idleTimeoutMillis: 10_000 });
    // An idle connection dropped by the server: the pool discards it; say so once.
    this.pool.on("error", (e) => ctx.log("warn", `${this.label}: idle connection lost: ${e.message}`));
    this.listener = new Listener(config, this.label, ctx.log);
    this.relayLocks = new RelayLocks(config, this.label, ctx.log);
    this.wakeChannel = `prism_w_${createHash("sha256").update(opts.schema).digest("hex").slice(0, 40)}`;
    this.waiters = new Waiters(this.listener, this.wakeChannel, ctx.clock);
    const S = ident(opts.schema);
    this.kvSql = new KvSql(S);
    this.queueSql = new QueueSql(S);
    this.streamSql = new StreamSql(S);
    this.sweeper = setInterval(() => void this.sweep(), SWEEP_EVERY_MS);
    this.sweeper.unref();
  }

  /** The configured schema's name (advisory lock keys). */
  get schema(): string {
    return this.opts.schema;
  }

  /** Creates/migrates the schema once; a failure is retried by the next call. */
  private ensureSchema(): Promise<void> {
    if (this.closed) return Promise.reject(errors.unavailable(`${this.label}: closed`));
    if (!this.migrating) {
      this.migrating = (async () => {
        const c = await this.pool.connect();
        let broken: Error | undefined;
        try {
          await migrate(c, this.opts.schema);
        } catch (e) {
          broken = e as Error;
          throw e;
        } finally {
          c.release(broken);
        }
        this.migrated = true;
      })().catch((e) => {
        this.migrating = undefined;
        throw mapError(e, this.label);
      });
    }
    return this.migrating;
  }

  /** One statement on a pooled connection, prepared once per connection under `name`. */
  async query<R extends object = Record<string, unknown>>(name: string, text: string, values: unknown[]): Promise<pg.QueryResult<R>> {
    if (!this.migrated) await this.ensureSchema();
    try {
      return await this.pool.query<R>({ name, text, values });
    } catch (e) {
      throw mapError(e, this.label);
    }
  }

  /** fn inside BEGIN/COMMIT on one pooled connection; rolled back when it throws. */
  async tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    if (!this.migrated) await this.ensureSchema();
    let c: pg.PoolClient;
    try {
      c = await this.pool.connect();
    } catch (e) {
      throw mapError(e, this.label);
    }
    let broken: Error | undefined;
    try {
      await c.query("BEGIN");
      const out = await fn(c);
      await c.query("COMMIT");
      return out;
    } catch (e) {
      await c.query("ROLLBACK").catch((re: Error) => (broken = re));
      throw mapError(e, this.label);
    } finally {
      c.release(broken);
    }
  }

  /** Deletes expired keys in bounded batches (reads already hide them). */
  async sweep(): Promise<number> {
    if (!this.migrated || this.closed) return 0;
    let total = 0;
    try {
      const now = this.ctx.clock.now();
      for (let i = 0; i < 20; i++) {
        const n = (await this.pool.query({ name: "kv_sweep", text: this.kvSql.sweep, values: [now, SWEEP_BATCH] })).rowCount ?? 0;
        total += n;
        if (n < SWEEP_BATCH) break;
      }
      const q = (name: string, text: string, values: unknown[]) => this.pool.query({ name, text, values });
      for (let i = 0; i < 20 && (await sweepOnce(q, this.opts.schema, now, SWEEP_BATCH)) === SWEEP_BATCH; i++);
      if (this.sweepFailing) this.ctx.log("info", `${this.label}: TTL sweep works again`);
      this.sweepFailing = false;
    } catch (e) {
      if (!this.sweepFailing) this.ctx.log("warn", `${this.label}: TTL sweep failed: ${(e as Error).message}`);
      this.sweepFailing = true;
    }
    return total;
  }

  namespace(name: string, limits: NamespaceLimits): NamespaceStores {
    const clock = this.ctx.clock;
    let shared = this.pubsubs.get(name);
    if (!shared) this.pubsubs.set(name, (shared = { store: new PgPubSub(this, clock, pubsubChannel(this.opts.schema, name)), refs: 0 }));
    shared.refs++;
    const ref = shared;
    let released = false;
    const kv = new PgKeyValue(name, this, clock);
    return {
      keyvalue: kv,
      pubsub: ref.store,
      queue: new PgQueue(name, this, clock, limits),
      stream: new PgStream(name, this, clock, limits),
      close: async () => {
        if (released) return;
        released = true;
        kv.releaseRelay();
        if (--ref.refs === 0 && this.pubsubs.get(name) === ref) {
          this.pubsubs.delete(name);
          ref.store.closeAll(new Error(`namespace "${name}" closed`));
        }
      },
    };
  }

  async health(): Promise<BackendHealth> {
    const t0 = performance.now();
    try {
      await this.pool.query("SELECT 1");
      return { ok: true, latencyMs: performance.now() - t0, message: this.label };
    } catch (e) {
      return { ok: false, latencyMs: performance.now() - t0, message: (mapError(e, this.label) as Error).message };
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    this.waiters.close();
    for (const p of this.pubsubs.values()) p.store.closeAll(errors.unavailable(`${this.label}: closed`));
    this.pubsubs.clear();
    await this.listener.close();
    await this.relayLocks.close();
    await this.pool.end().catch(() => {});
  }
}
