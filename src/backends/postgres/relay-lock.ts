/**
 * Which Prism process relays a namespace's outbox: the one holding a
 * session-level advisory lock on (schema, namespace). One dedicated connection
 * per instance holds this process's locks, so a relay never keeps a pooled
 * connection while it publishes (the messaging side may need the same pool),
 * and when the process dies the server ends the session and releases its
 * locks: another process takes over at its next poll, with no lease to expire
 * and no clock to trust. When the connection drops, every lock is presumed
 * lost and taken again (or not) by the next pass.
 *
 * Several holders in this process (a namespace re-applied: the new runtime's
 * relay starts before the old one stops) share the lock; it is released when
 * the last one lets go.
 */
import pg from "pg";
import { errors } from "../../core/errors.js";

const RETRY_AFTER_MS = 1_000;

export class RelayLocks {
  private client: pg.Client | undefined;
  private connecting: Promise<pg.Client> | undefined;
  private lastFailure = 0;
  private failure: Error | undefined;
  private closed = false;
  /** Lock key → the holders in this process. */
  private readonly held = new Map<string, Set<object>>();

  constructor(
    private readonly config: pg.ClientConfig,
    private readonly label: string,
    private readonly log: (level: "info" | "warn" | "error", msg: string) => void,
  ) {}

  /** True when this process holds (or now took) the lock for `holder`; false when another process holds it. */
  async hold(key: string, holder: object): Promise<boolean> {
    const holders = this.held.get(key);
    if (holders) {
      holders.add(holder);
      return true;
    }
    const c = await this.connect();
    const r = await c.query<{ ok: boolean }>("SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS ok", [key]).catch((e: Error) => {
      throw errors.unavailable(`${this.label}: relay lock`, e);
    });
    if (!r.rows[0]?.ok) return false;
    // Two passes may have asked at once: the lock is counted per session, keep one.
    const again = this.held.get(key);
    if (again) {
      again.add(holder);
      void c.query("SELECT pg_advisory_unlock(hashtextextended($1, 0))", [key]).catch(() => {});
    } else if (c === this.client) this.held.set(key, new Set([holder]));
    else return false;
    return true;
  }

  /** `holder` stops relaying; the last holder in this process releases the lock. */
  release(key: string, holder: object): void {
    const holders = this.held.get(key);
    if (!holders || !holders.delete(holder) || holders.size) return;
    this.held.delete(key);
    void this.client?.query("SELECT pg_advisory_unlock(hashtextextended($1, 0))", [key]).catch(() => {});
  }

  private connect(): Promise<pg.Client> {
    if (this.client) return Promise.resolve(this.client);
    if (this.closed) return Promise.reject(errors.unavailable(`${this.label}: closed`));
    if (this.connecting) return this.connecting;
    if (this.failure && Date.now() - this.lastFailure < RETRY_AFTER_MS) return Promise.reject(errors.unavailable(this.label, this.failure));
    this.connecting = this.open().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async open(): Promise<pg.Client> {
    const c = new pg.Client(this.config);
    c.on("error", (e) => this.lost(c, e));
    c.on("end", () => this.lost(c, new Error("relay lock connection ended")));
    try {
      await c.connect();
    } catch (e) {
      this.lastFailure = Date.now();
      this.failure = e as Error;
      c.removeAllListeners();
      c.on("error", () => {});
      void c.end().catch(() => {});
      throw errors.unavailable(this.label, e);
    }
    if (this.closed) {
      void c.end().catch(() => {});
      throw errors.unavailable(`${this.label}: closed`);
    }
    this.failure = undefined;
    this.client = c;
    return c;
  }

  private lost(c: pg.Client, err: Error): void {
    if (this.client !== c) return;
    this.client = undefined;
    this.lastFailure = Date.now();
    this.failure = err;
    if (!this.closed && this.held.size) this.log("warn", `${this.label}: relay lock connection lost (${this.held.size} outbox relay lock(s) released): ${err.message}`);
    this.held.clear();
    c.removeAllListeners();
    c.on("error", () => {});
    void c.end().catch(() => {});
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const c = this.client ?? (await this.connecting?.catch(() => undefined));
    if (c) {
      this.lost(c, errors.unavailable(`${this.label}: closed`));
    }
  }
}
