/**
 * The config store in PostgreSQL, shared by a fleet of Prism instances. Two
 * tables, `<table>_entries` (spec as jsonb, NULL for a tombstone) and
 * `<table>_revision` (one row), created on first use.
 *
 * A write is one transaction that first increments the revision row: its row
 * lock serialises writers until they commit, so each change set gets the
 * latest committed revision + 1 and revision order is commit order (a reader
 * that sees revision R has seen every change set up to R). It then writes the
 * entries and NOTIFYs channel `<table>` with the new revision. Reads are one
 * statement each, so revision and entries come from one snapshot.
 *
 * subscribe() keeps a dedicated connection LISTENing on `<table>`; when it
 * drops it reconnects with backoff and, once listening again, calls onChange
 * (notifications sent meanwhile were lost). Notifications of writes committed
 * before the first LISTEN completes are not seen: callers read after
 * subscribing and keep a periodic check.
 *
 * Creating the store never touches the network; a failed first use (server
 * down) is retried by the next call. pg.Pool replaces broken connections.
 */
import { redactSecrets } from "../core/redact.js";
import type { Client, ClientConfig, Notification, Pool, PoolClient } from "pg";
import { requireCjs } from "../core/require-cjs.js";
import type { ConfigStore, StoredEntry, WriteOp, WriteResult } from "./store.js";
import { checkRevision, encodeOps, storeError, type EncodedOp } from "./stores.js";

const pg = requireCjs("pg") as typeof import("pg");

const DEFAULT_TABLE = "prism_config";
const TABLE_RE = /^[a-z_][a-z0-9_]{0,40}$/;
const CONNECT_TIMEOUT_MS = 5_000;
const POOL_MAX = 4;
const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 10_000;

export interface PostgresConfigStoreOptions {
  url: string;
  /** Table name prefix (default "prism_config"): tables <table>_entries and <table>_revision, NOTIFY channel <table>. */
  table?: string;
}

/** The URL with its password (in the authority or a password= parameter) replaced by *** (src/core/redact.ts, every form). */
export function maskUrl(url: string): string {
  return redactSecrets(String(url));
}

interface EntryRow {
  kind: string | null;
  name: string | null;
  spec: unknown;
  revision: string | null;
  current: string;
}

function entriesOf(rows: EntryRow[]): { revision: number; entries: StoredEntry[] } {
  if (rows.length === 0) throw new Error("the revision row is missing");
  const entries: StoredEntry[] = [];
  for (const r of rows) {
    if (r.kind === null || r.name === null || r.revision === null) continue;
    entries.push({ kind: r.kind, name: r.name, spec: r.spec ?? null, revision: Number(r.revision) });
  }
  return { revision: Number(rows[0]!.current), entries };
}

export class PostgresConfigStore implements ConfigStore {
  readonly type = "postgres" as const;
  readonly description: string;
  readonly table: string;
  private readonly config: ClientConfig;
  private readonly pool: Pool;
  private readonly subs = new Set<Subscription>();
  private readonly sql: { ddl: string[]; current: string; snapshot: string; since: string; put: string; del: string; bump: string };
  private tables: Promise<void> | undefined;
  private closed = false;
  private closing: Promise<void> | undefined;

  constructor(opts: PostgresConfigStoreOptions) {
    const url = opts?.url;
    const table = opts?.table ?? DEFAULT_TABLE;
    this.description = typeof url === "string" ? maskUrl(url) : "postgres";
    if (table !== DEFAULT_TABLE) this.description += ` (table ${table})`;
    if (typeof url !== "string" || url === "") throw new Error(`config store ${this.description}: url must be a postgres:// URL`);
    if (typeof table !== "string" || !TABLE_RE.test(table)) {
      throw new Error(`config store ${this.description}: table ${JSON.stringify(table)} must match ${TABLE_RE.source}`);
    }
    this.table = table;
    const E = `"${table}_entries"`;
    const R = `"${table}_revision"`;
    this.sql = {
      ddl: [
        `CREATE TABLE IF NOT EXISTS ${E} (
          kind text COLLATE "C" NOT NULL,
          name text COLLATE "C" NOT NULL,
          spec jsonb NULL,
          revision bigint NOT NULL,
          PRIMARY KEY (kind, name)
        )`,
        `CREATE INDEX IF NOT EXISTS "${table}_entries_revision" ON ${E} (revision)`,
        `CREATE TABLE IF NOT EXISTS ${R} (
          id integer PRIMARY KEY CHECK (id = 1),
          revision bigint NOT NULL
        )`,
        `INSERT INTO ${R} (id, revision) VALUES (1, 0) ON CONFLICT (id) DO NOTHING`,
      ],
      current: `SELECT revision FROM ${R} WHERE id = 1`,
      // One statement: the revision and the entries come from one snapshot.
      snapshot: `WITH cur AS (SELECT revision FROM ${R} WHERE id = 1)
        SELECT cur.revision AS current, e.kind, e.name, e.spec, e.revision
        FROM cur LEFT JOIN ${E} e ON e.spec IS NOT NULL
        ORDER BY e.kind, e.name`,
      since: `WITH cur AS (SELECT revision FROM ${R} WHERE id = 1)
        SELECT cur.revision AS current, e.kind, e.name, e.spec, e.revision
        FROM cur LEFT JOIN ${E} e ON e.revision > $1::bigint
        ORDER BY e.revision, e.kind, e.name`,
      put: `INSERT INTO ${E} (kind, name, spec, revision) VALUES ($1, $2, $3::jsonb, $4)
        ON CONFLICT (kind, name) DO UPDATE SET spec = EXCLUDED.spec, revision = EXCLUDED.revision`,
      del: `UPDATE ${E} SET spec = NULL, revision = $1 WHERE kind = $2 AND name = $3 AND spec IS NOT NULL`,
      bump: `UPDATE ${R} SET revision = revision + 1 WHERE id = 1 RETURNING revision`,
    };
    this.config = { connectionString: url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, application_name: "prism-config" };
    this.pool = new pg.Pool({ ...this.config, max: POOL_MAX, idleTimeoutMillis: 10_000 });
    // An idle pooled connection dropped by the server: the pool discards it; the next query opens another.
    this.pool.on("error", () => {});
  }

  private check(): void {
    if (this.closed) throw new Error(`config store ${this.description}: closed`);
  }

  /**
   * Creates the tables once; a failure is retried by the next call. The DDL
   * runs only when they are missing: CREATE INDEX IF NOT EXISTS takes a SHARE
   * lock on the table even when the index exists, which blocks (and can
   * deadlock with) other processes' writes. Processes starting together take
   * turns on a session advisory lock; the check after it runs in a new
   * transaction, which sees what the previous holder created (a check in the
   * transaction that waited would answer from a stale catalog cache).
   */
  private ready(): Promise<void> {
    if (!this.tables) {
      this.tables = this.withClient(async (c) => {
        if (await this.tablesExist(c)) return;
        const key = `prism-config:${this.table}`;
        await c.query("SELECT pg_advisory_lock(hashtextextended($1, 0))", [key]);
        let failed = false;
        try {
          if (await this.tablesExist(c)) return;
          await c.query("BEGIN");
          try {
            for (const ddl of this.sql.ddl) await c.query(ddl);
            await c.query("COMMIT");
          } catch (e) {
            await c.query("ROLLBACK").catch(() => {});
            throw e;
          }
        } catch (e) {
          failed = true;
          throw e;
        } finally {
          // Not unlocked: withClient discards the connection after an error, and the lock goes with the session.
          if (!failed) await c.query("SELECT pg_advisory_unlock(hashtextextended($1, 0))", [key]);
        }
      }).catch((e: unknown) => {
        this.tables = undefined;
        throw e;
      });
    }
    return this.tables;
  }

  /** Whether both tables and the index exist (they are created in one transaction, the revision row with them). */
  private async tablesExist(c: PoolClient): Promise<boolean> {
    const t = this.table;
    const r = await c.query<{ n: number }>("SELECT (to_regclass($1) IS NOT NULL)::int + (to_regclass($2) IS NOT NULL)::int + (to_regclass($3) IS NOT NULL)::int AS n", [
      `"${t}_entries"`,
      `"${t}_revision"`,
      `"${t}_entries_revision"`,
    ]);
    return r.rows[0]?.n === 3;
  }

  async snapshot(): Promise<{ revision: number; entries: StoredEntry[] }> {
    this.check();
    try {
      await this.ready();
      return entriesOf((await this.pool.query<EntryRow>(this.sql.snapshot)).rows);
    } catch (e) {
      throw storeError(this.description, e);
    }
  }

  async changesSince(revision: number): Promise<{ revision: number; changes: StoredEntry[] }> {
    this.check();
    const since = checkRevision(revision, this.description);
    try {
      await this.ready();
      const { revision: current, entries } = entriesOf((await this.pool.query<EntryRow>(this.sql.since, [String(since)])).rows);
      return { revision: current, changes: entries };
    } catch (e) {
      throw storeError(this.description, e);
    }
  }

  async write(ops: WriteOp[]): Promise<WriteResult> {
    this.check();
    const encoded = encodeOps(ops, this.description);
    try {
      await this.ready();
      if (encoded.length === 0) {
        const r = await this.pool.query<{ revision: string }>(this.sql.current);
        if (!r.rows[0]) throw new Error("the revision row is missing");
        return { revision: Number(r.rows[0].revision), written: [] };
      }
      return await this.withClient((c) => this.commit(c, encoded));
    } catch (e) {
      throw storeError(this.description, e);
    }
  }

  /**
   * Runs fn on a pooled connection of its own. A checked-out pg client emits
   * 'error' when its connection fails (a crash with no listener): listened to
   * here. After a failure the connection is discarded: it may be broken, or
   * left mid-transaction.
   */
  private async withClient<T>(fn: (c: PoolClient) => Promise<T>): Promise<T> {
    const c = await this.pool.connect();
    let broken: Error | undefined;
    const onError = (e: Error): void => {
      broken ??= e;
    };
    c.on("error", onError);
    try {
      return await fn(c);
    } catch (e) {
      broken ??= e instanceof Error ? e : new Error(String(e));
      throw e;
    } finally {
      c.removeListener("error", onError);
      // A discarded connection may still report its socket's end: never to nobody.
      if (broken) c.on("error", () => {});
      c.release(broken);
    }
  }

  private async commit(c: PoolClient, ops: EncodedOp[]): Promise<WriteResult> {
    await c.query("BEGIN");
    try {
      const bumped = await c.query<{ revision: string }>(this.sql.bump);
      if (!bumped.rows[0]) throw new Error("the revision row is missing");
      const next = Number(bumped.rows[0].revision);
      const written: boolean[] = [];
      for (const op of ops) {
        if (op.json === null) written.push(((await c.query(this.sql.del, [next, op.kind, op.name])).rowCount ?? 0) > 0);
        else {
          await c.query(this.sql.put, [op.kind, op.name, op.json, next]);
          written.push(true);
        }
      }
      if (!written.includes(true)) {
        // Nothing to write: no new revision either.
        await c.query("ROLLBACK");
        return { revision: next - 1, written };
      }
      await c.query("SELECT pg_notify($1, $2)", [this.table, String(next)]);
      await c.query("COMMIT");
      return { revision: next, written };
    } catch (e) {
      await c.query("ROLLBACK").catch(() => {});
      throw e;
    }
  }

  subscribe(onChange: () => void): () => void {
    if (this.closed) return () => {};
    const sub = new Subscription({ ...this.config, keepAlive: true, keepAliveInitialDelayMillis: 10_000 }, this.table, onChange);
    this.subs.add(sub);
    sub.start();
    return () => {
      this.subs.delete(sub);
      void sub.stop();
    };
  }

  close(): Promise<void> {
    if (!this.closing) {
      this.closed = true;
      this.closing = (async () => {
        const subs = [...this.subs];
        this.subs.clear();
        await Promise.all(subs.map((s) => s.stop()));
        await this.pool.end().catch(() => {});
      })();
    }
    return this.closing;
  }
}

/** One LISTEN connection for one subscribe() call, reconnecting with backoff until stopped. */
class Subscription {
  private client: Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private attempt = 0;
  private listened = false;
  private stopped = false;
  private ended: Promise<void> | undefined;

  constructor(
    private readonly config: ClientConfig,
    private readonly channel: string,
    private readonly onChange: () => void,
  ) {}

  start(): void {
    void this.connect();
  }

  private async connect(): Promise<void> {
    this.timer = undefined;
    if (this.stopped) return;
    let c: Client;
    try {
      c = new pg.Client(this.config);
    } catch {
      // A connection string pg cannot parse: keep trying quietly (the store's calls report it).
      this.retry();
      return;
    }
    this.client = c;
    let gone = false;
    const lost = (): void => {
      if (gone) return;
      gone = true;
      c.removeAllListeners("notification");
      void c.end().catch(() => {});
      if (this.client === c) this.client = undefined;
      this.retry();
    };
    // Every failure of this connection ends up here: never an unhandled 'error' event.
    c.on("error", lost);
    c.on("end", lost);
    c.on("notification", (n: Notification) => {
      if (n.channel === this.channel) this.fire();
    });
    try {
      await c.connect();
      await c.query(`LISTEN "${this.channel}"`);
    } catch {
      lost();
      return;
    }
    if (gone || this.stopped) return;
    this.attempt = 0;
    // Back after a drop: changes committed meanwhile sent notifications nobody heard.
    if (this.listened) this.fire();
    this.listened = true;
  }

  private retry(): void {
    if (this.stopped || this.timer) return;
    const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** this.attempt++);
    this.timer = setTimeout(() => void this.connect(), ceiling / 2 + (Math.random() * ceiling) / 2);
    this.timer.unref();
  }

  private fire(): void {
    if (this.stopped) return;
    try {
      const r = this.onChange() as unknown;
      // An async callback's rejection is its own business, never an unhandled rejection here.
      if (r instanceof Promise) r.catch(() => {});
    } catch {
      // A throwing callback must not break the listen connection.
    }
  }

  stop(): Promise<void> {
    if (!this.ended) {
      this.stopped = true;
      clearTimeout(this.timer);
      this.timer = undefined;
      const c = this.client;
      this.client = undefined;
      this.ended = c
        ? c
            .query(`UNLISTEN "${this.channel}"`)
            .catch(() => {})
            .then(() => c.end())
            .catch(() => {})
        : Promise.resolve();
    }
    return this.ended;
  }
}
