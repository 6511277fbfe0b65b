/**
 * The reconcile pass of a KeyValue migration: after a Prism process died with
 * write-behind copies pending (acknowledged on the key's primary, not yet on
 * the other side; its writer lease expired, src/control/agent.ts), the other
 * side may hold an older value than the last acknowledged write, or a key the
 * primary deleted. The backfill copies absent keys only, so it cannot see
 * that; this pass compares values.
 *
 * It is the backfill's loop (./backfill.ts: Scan pages at most backfillRps
 * keys per second, cursor saved in the config store after each page, one
 * runner at a time with takeover after 10 s), run over `from` then over `to`
 * (pass 1 finds keys present on the other side only). For each key the
 * migrating store (./keyvalue.ts reconcileKey) reads both sides and, when they
 * differ, copies the key's primary to the other side, re-reading the primary
 * and copying again while it changed (converges once writes to the key pause).
 *
 * Every migrating store runs one, idle until a request (kind
 * "migration-reconcile") newer than the stored cursor appears; a request made
 * while a pass runs supersedes it (the next page save notices and the pass
 * starts over). finish and cutover advances are refused until the cursor of
 * the latest request is done.
 */
import type { KeyValueStore } from "../backends/driver.js";
import type { Clock } from "../core/clock.js";
import { Backfill, INSTANCE_ID } from "./backfill.js";
import type { BackfillCursor, MigrationHost, ReconcileCursor } from "./types.js";

/** A cursor at the start of pass 0; owner "" and heartbeat 0: free for any instance to take. */
function cursorOf(over: Partial<ReconcileCursor>): ReconcileCursor {
  return { cursor: "", copied: 0, skipped: 0, done: false, owner: "", heartbeatMs: 0, gen: 0, pass: 0, ...over };
}

export class Reconcile extends Backfill {
  protected override readonly what: string = "reconcile";
  protected override readonly persistent: boolean = true;

  constructor(
    namespace: string,
    from: KeyValueStore,
    to: KeyValueStore,
    rps: number,
    host: MigrationHost,
    clock: Clock,
    log: (level: "info" | "warn" | "error", msg: string) => void,
    /** Brings the key's other side up to date from its primary; true when it wrote. */
    private readonly reconcileKey: (key: string) => Promise<boolean>,
  ) {
    super(namespace, from, to, rps, host, clock, log, (k) => reconcileKey(k));
  }

  /** The cursor of the latest request; a fresh one (free to take) when that request has none yet; done when nothing is requested. */
  protected override async load(): Promise<BackfillCursor | null> {
    const r = await this.host.loadReconcile(this.namespace);
    if (r === null) return cursorOf({ done: true, gen: 0 });
    if (r.cursor && r.cursor.gen === r.request.gen) return r.cursor;
    this.log("warn", `migration ${this.namespace}: reconcile requested (${r.request.reason})`);
    return cursorOf({ gen: r.request.gen });
  }

  /** Saves the cursor, unless a newer request came meanwhile: then the pass starts over (the throw pauses it and the loop reloads). */
  protected override async save(c: BackfillCursor): Promise<void> {
    const cur = c as ReconcileCursor;
    const r = await this.host.loadReconcile(this.namespace);
    if (r === null) throw new Error("no reconcile requested any more (the migration finished or started over)");
    if (r.request.gen !== cur.gen) throw new Error(`superseded by reconcile request ${r.request.gen} (${r.request.reason}); starting over`);
    await this.host.saveReconcile(this.namespace, cur);
  }

  protected override fresh(now: number): BackfillCursor {
    return cursorOf({ owner: INSTANCE_ID, heartbeatMs: now });
  }

  protected override source(c: BackfillCursor): KeyValueStore {
    return (c as ReconcileCursor).pass === 1 ? this.to : this.from;
  }

  protected override visit(key: string): Promise<boolean> {
    return this.reconcileKey(key);
  }

  protected override ended(c: BackfillCursor): void {
    const cur = c as ReconcileCursor;
    if (cur.pass === 0) cur.pass = 1;
    else cur.done = true;
  }
}
