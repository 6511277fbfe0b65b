/**
 * The backfill: a resumable copy of every key from `from` to `to` through
 * Scan, at most backfillRps keys per second, its cursor saved in the config
 * store after each page (a restart resumes there; another Prism instance
 * takes over when the owner's heartbeat is 10 s old). Ownership is claimed
 * (written, then read back after CLAIM_SETTLE_MS: of instances starting
 * together the last claim stands, the others wait) and checked before each
 * page is saved, so two instances never both advance the cursor — one that
 * lost it could otherwise overwrite a done cursor with its older progress.
 *
 * A key written by a client meanwhile is never overwritten with an older
 * value: the migrating store (./keyvalue.ts backfillKey) queues each key's
 * copy on the key's write-behind line, like a client write's copy, so it is
 * ordered with the client writes of that key (one write of the key to `to` in
 * flight at a time); the copy reads `from` when it runs and writes it
 * if-absent (a client's copy got there first: it is newer).
 *
 * The reconcile (./reconcile.ts) reuses this loop through the protected hooks below.
 */
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import type { KeyValueStore } from "../backends/driver.js";
import type { Clock } from "../core/clock.js";
import type { BackfillCursor, MigrationHost } from "./types.js";

export const INSTANCE_ID = `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
const TAKEOVER_MS = 10_000;
/** How long a claim waits before reading the cursor back (the other claimants' writes land meanwhile). */
const CLAIM_SETTLE_MS = 300;
/**
 * How long stop() waits for the loop. Bounded because the loop may be waiting on the config store's
 * sync (loadCursor syncs first), and a sync may be what stops it: applying a rolled-back or advanced
 * migration closes the old runtime, whose close stops this loop, inside that very sync. Unbounded,
 * that was a deadlock (a `prism migrate rollback` hung for good, seen once under load). A loop still
 * running after it checks `stopped` before any further write.
 */
const STOP_WAIT_MS = 2000;
const PAGE = 100;

export class Backfill {
  progress: (BackfillCursor & { estimatedTotal: number }) | undefined;
  protected stopped = false;
  private running: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  /** What the log lines call it. */
  protected readonly what: string = "backfill";
  /** Keeps running once done, waiting for more work (the reconcile, ./reconcile.ts). */
  protected readonly persistent: boolean = false;

  constructor(
    protected readonly namespace: string,
    protected readonly from: KeyValueStore,
    protected readonly to: KeyValueStore,
    private readonly rps: number,
    protected readonly host: MigrationHost,
    protected readonly clock: Clock,
    protected readonly log: (level: "info" | "warn" | "error", msg: string) => void,
    /** Copies one key (its value as scanned) to `to` unless a client's write is there; true when it wrote. */
    private readonly copyKey: (key: string, value: Uint8Array) => Promise<boolean>,
  ) {}

  // Hooks (the reconcile overrides them): where the cursor lives, a fresh one, the side a page is scanned
  // on, what one key costs, and what comes after the last page.
  protected load(): Promise<BackfillCursor | null> {
    return this.host.loadCursor(this.namespace);
  }

  protected save(c: BackfillCursor): Promise<void> {
    return this.host.saveCursor(this.namespace, c);
  }

  protected fresh(now: number): BackfillCursor {
    return { cursor: "", copied: 0, skipped: 0, done: false, owner: INSTANCE_ID, heartbeatMs: now };
  }

  protected source(_c: BackfillCursor): KeyValueStore {
    return this.from;
  }

  /** One key of a page: true when it wrote. */
  protected visit(key: string, value: Uint8Array): Promise<boolean> {
    return this.copyKey(key, value);
  }

  /** The scan of the current side ended (its cursor is "" again): done, or the next side starts. */
  protected ended(c: BackfillCursor): void {
    c.done = true;
  }

  start(): void {
    this.running = this.run().catch((e) => this.log("error", `migration ${this.namespace}: ${this.what} stopped: ${(e as Error).message}`));
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((r) => {
      const t = setTimeout(r, ms);
      t.unref?.();
      this.wake = () => {
        clearTimeout(t);
        r();
      };
    });
  }

  private async count(): Promise<number> {
    let n = 0;
    let cursor = "";
    do {
      const page = await this.from.scan!("", cursor, 1000, true);
      n += page.items.length;
      cursor = page.nextCursor;
    } while (cursor !== "" && !this.stopped);
    return n;
  }

  private async run(): Promise<void> {
    let estimatedTotal = -1;
    while (!this.stopped) {
      let c: BackfillCursor | null;
      try {
        c = await this.load();
      } catch (e) {
        this.log("warn", `migration ${this.namespace}: ${this.what} waits for the config store: ${(e as Error).message}`);
        await this.sleep(1000);
        continue;
      }
      if (this.stopped) return;
      const now = this.clock.now();
      if (c?.done) {
        this.progress = { ...c, estimatedTotal: Math.max(estimatedTotal, c.copied + c.skipped) };
        if (!this.persistent) return;
        await this.sleep(1000); // nothing to do until the next request
        continue;
      }
      if (c && c.owner !== INSTANCE_ID && now - c.heartbeatMs < TAKEOVER_MS) {
        this.progress = { ...c, estimatedTotal };
        await this.sleep(2000); // another instance is copying
        continue;
      }
      let cur: BackfillCursor = c ? { ...c, owner: INSTANCE_ID, heartbeatMs: now } : this.fresh(now);
      if (c?.owner !== INSTANCE_ID) {
        try {
          await this.save(cur);
          await this.sleep(CLAIM_SETTLE_MS);
          const back = await this.load();
          if (this.stopped) return;
          if (back?.owner !== INSTANCE_ID) continue; // another instance's claim stands
          cur = { ...back, heartbeatMs: this.clock.now() };
        } catch (e) {
          this.log("warn", `migration ${this.namespace}: ${this.what} waits for the config store: ${(e as Error).message}`);
          await this.sleep(1000);
          continue;
        }
      }
      if (estimatedTotal < 0) estimatedTotal = await this.count().catch(() => 0);
      try {
        await this.copyFrom(cur, estimatedTotal);
      } catch (e) {
        this.log("warn", `migration ${this.namespace}: ${this.what} paused at cursor ${JSON.stringify(cur.cursor)}: ${(e as Error).message}`);
        await this.sleep(1000);
      }
    }
  }

  private async copyFrom(cur: BackfillCursor, estimatedTotal: number): Promise<void> {
    const perPage = Math.max(1, Math.min(PAGE, this.rps));
    while (!this.stopped) {
      const t0 = this.clock.now();
      const page = await this.source(cur).scan!("", cur.cursor, perPage, false);
      for (const item of page.items) {
        if (this.stopped) return;
        if (await this.visit(item.key, item.value ?? new Uint8Array(0))) cur.copied++;
        else cur.skipped++;
      }
      cur.cursor = page.nextCursor;
      if (page.nextCursor === "") this.ended(cur);
      cur.heartbeatMs = this.clock.now();
      const stored = await this.load();
      if (this.stopped) return; // closed meanwhile (the next runtime's loop carries on from the saved cursor)
      if (stored !== null && stored.owner !== INSTANCE_ID) {
        this.log("warn", `migration ${this.namespace}: ${this.what} taken over by ${stored.owner}; this instance stops copying`);
        return;
      }
      await this.save(cur);
      this.progress = { ...cur, estimatedTotal: Math.max(estimatedTotal, cur.copied + cur.skipped) };
      if (cur.done) {
        this.log("info", `migration ${this.namespace}: ${this.what} done (${cur.copied} copied, ${cur.skipped} already there)`);
        if (!this.persistent) this.stopped = true;
        return;
      }
      // Rate: perPage keys per (perPage / rps) seconds.
      const spent = this.clock.now() - t0;
      const budget = (1000 * page.items.length) / this.rps;
      if (budget > spent) await this.sleep(budget - spent);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    let t: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.running, new Promise<void>((r) => (t = setTimeout(r, STOP_WAIT_MS)))]);
    clearTimeout(t);
  }
}
