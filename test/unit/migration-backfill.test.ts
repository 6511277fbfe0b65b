/**
 * The backfill never overwrites a newer value (src/migrations/backfill.ts,
 * keyvalue.ts backfillKey): a client write that slips in while the backfill's
 * copy of the same key is on its way to `to` must not be undone by it.
 *
 * The race (before the fix, the backfill wrote `to` outside the key's
 * write-behind line): the backfill copies V0 if-absent, re-reads `from` and
 * gets V1 (a client wrote it meanwhile), then sets `to` to V1; a client writes
 * V2 and its copy lands on `to` before that set does: `to` keeps V1 for good
 * (and the same with a delete: the backfill deletes the key on `to` after a
 * client set it again).
 *
 * Deterministic, no timing: memstore `from` and `to` behind proxies. The
 * client's writes carry a TTL, so their copies reach `to` as Sets with ttlMs
 * (or batchDelete), while the backfill's writes carry none (a Scan has no
 * TTL) or are single Deletes: the `to` proxy tells them apart and, on the
 * backfill's second write of the key, holds it while the client writes again
 * and that write's copy is given the chance to land. The `from` proxy makes
 * the client write before the backfill's first read of the key.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { ManualClock } from "../../src/core/clock.js";
import { DEFAULT_LIMITS } from "../../src/config/schema.js";
import type { Bytes, KeyValueStore, SetOptions } from "../../src/backends/driver.js";
import { driver as memstore } from "../../src/backends/memstore/index.js";
import { MigratingKeyValueStore } from "../../src/migrations/keyvalue.js";
import type { BackfillCursor, MigrationHost, MigrationSettings } from "../../src/migrations/types.js";

const enc = (s: string) => Buffer.from(s);
const text = (r: { value: Bytes } | null) => (r === null ? null : Buffer.from(r.value).toString());
/** Every microtask, the write-behind batch linger (1 ms) and one more turn. */
const settle = () => new Promise<void>((r) => setTimeout(() => setImmediate(r), 10));
const TTL = 3_600_000;

function settings(): MigrationSettings {
  return { slot: "keyvalue", from: "old", to: "new", backfillRps: 100_000, shadowReadPct: 0, cutoverSteps: [100], rollbackOn: { errorRate: 1, p99Ms: 1e9, diffPct: 100 }, windowSeconds: 30, dryRun: false };
}

/** The control plane's part, in memory: the cursor; no repairs, leases or reconcile. */
function memoryHost(): MigrationHost & { cursor: BackfillCursor | null } {
  const h = {
    cursor: null as BackfillCursor | null,
    loadCursor: async () => h.cursor,
    saveCursor: async (_ns: string, c: BackfillCursor) => void (h.cursor = { ...c }),
    rollback: async () => undefined,
    loadRepairs: async () => null,
    writeRepairs: async () => {},
    writerLease: async () => {},
    loadReconcile: async () => null,
    saveReconcile: async () => {},
  };
  return h;
}

/** `from`: runs `beforeGet` (once) before the first get of `key`. */
function watchedFrom(inner: KeyValueStore, key: string, beforeGet: () => Promise<void>): KeyValueStore {
  let fired = false;
  return {
    get: async (k) => {
      if (k === key && !fired) {
        fired = true;
        await beforeGet();
      }
      return inner.get(k);
    },
    exists: (k) => inner.exists(k),
    scan: (p, c, l, ko) => inner.scan!(p, c, l, ko),
    set: (k, v, o) => inner.set(k, v, o),
    delete: (k) => inner.delete(k),
    batchSet: (e, t) => inner.batchSet!(e, t),
    batchDelete: (ks) => inner.batchDelete!(ks),
  };
}

/** `to`: the backfill's writes of `key` (Sets without TTL, single Deletes) are counted; the second waits for `onSecond`. */
function watchedTo(inner: KeyValueStore, key: string, onSecond: () => Promise<void>) {
  const log: string[] = [];
  let backfillWrites = 0;
  const backfillWrite = async (what: string) => {
    log.push(`backfill ${what}`);
    if (++backfillWrites === 2) await onSecond();
  };
  const store: KeyValueStore = {
    get: (k) => inner.get(k),
    exists: (k) => inner.exists(k),
    scan: (p, c, l, ko) => inner.scan!(p, c, l, ko),
    set: async (k: string, v: Bytes, o: SetOptions) => {
      if (k === key && !o.ttlMs) await backfillWrite(`set ${Buffer.from(v).toString()}${o.ifAbsent ? " if absent" : ""}`);
      else if (k === key) log.push(`client copy set ${Buffer.from(v).toString()}`);
      return inner.set(k, v, o);
    },
    delete: async (k: string) => {
      if (k === key) await backfillWrite("delete");
      return inner.delete(k);
    },
    batchDelete: async (ks: string[]) => {
      if (ks.includes(key)) log.push("client copy delete");
      return inner.batchDelete!(ks);
    },
  };
  return { store, log };
}

/** `from` and `to`: two memstore instances on one manual clock, closed when the test ends. */
function twoStores(t: { after(f: () => Promise<void>): void }, prefix: string) {
  const clock = new ManualClock(Date.now());
  const ns = `${prefix}-${randomUUID()}`;
  const fromInst = memstore.create({}, { clock, log: () => {} });
  const toInst = memstore.create({}, { clock, log: () => {} });
  t.after(async () => {
    await fromInst.close();
    await toInst.close();
  });
  return { clock, ns, from: fromInst.namespace(ns, DEFAULT_LIMITS).keyvalue!, to: toInst.namespace(ns, DEFAULT_LIMITS).keyvalue! };
}

async function race(t: { after(f: () => Promise<void>): void }, first: "set" | "delete") {
  const { clock, ns, from: fromInner, to: toInner } = twoStores(t, "bf");
  // Written before the migration started: only the backfill brings it over.
  await fromInner.set("k", enc("v0"), {});
  await fromInner.set("other", enc("o"), {});
  let mig!: MigratingKeyValueStore;
  const client = {
    // The client's first write: V1 (or a delete) before the backfill reads the key.
    first: () => (first === "set" ? mig.set("k", enc("v1"), { ttlMs: TTL }).then(() => {}) : mig.delete("k").then(() => {})),
    // Its second: V2, while the backfill's follow-up write of the key is held; its copy gets every chance to land.
    // (Without a follow-up write, as in the fixed backfill, it comes once the backfill is done.)
    secondDone: false,
    second: async () => {
      if (client.secondDone) return;
      client.secondDone = true;
      await mig.set("k", enc("v2"), { ttlMs: TTL });
      await settle();
    },
  };
  let firstDone = false;
  const from = watchedFrom(fromInner, "k", async () => {
    // The backfill's if-absent copy of V0 (the scanned value) already landed, or the backfill reads `from` now: either way the client writes first.
    await client.first();
    firstDone = true;
    await settle();
  });
  const to = watchedTo(toInner, "k", client.second);
  const host = memoryHost();
  mig = new MigratingKeyValueStore(ns, from, to.store, settings(), { phase: "backfill", step: 0, startedAtMs: clock.now() }, host, clock, () => {});
  t.after(() => mig.close());
  for (let i = 0; i < 500 && !host.cursor?.done; i++) await settle();
  assert.ok(host.cursor?.done, `the backfill finished (${JSON.stringify(host.cursor)})`);
  assert.ok(firstDone, "the client wrote before the backfill's read of the key");
  await client.second();
  await mig.flush();
  await settle();
  await mig.flush();
  const want = text(await fromInner.get("k"));
  assert.equal(want, "v2", "`from` holds the last acknowledged write");
  assert.equal(text(await toInner.get("k")), want, `\`to\` holds it too; writes of k on \`to\`: ${to.log.join(", ")}`);
  assert.equal(text(await toInner.get("other")), "o", "an untouched key is copied");
  assert.equal(mig.snapshot().dualWriteErrors, 0);
}

describe("migration backfill: a client write racing the backfill's copy of the same key", () => {
  test("a Set slipped in between the backfill's read of `from` and its write to `to` is not overwritten by the older value", async (t) => {
    await race(t, "set");
  });

  test("a key deleted then set again by a client is not deleted on `to` by the backfill", async (t) => {
    await race(t, "delete");
  });
});

describe("migration copies keep the key's TTL", () => {
  test("the backfill copies a key with its remaining TTL (it expires on `to` when it does on `from`), a key without TTL without one", async (t) => {
    const { clock, ns, from, to } = twoStores(t, "bft");
    await from.set("session", enc("s"), { ttlMs: 60_000 });
    await from.set("forever", enc("f"), {});
    clock.advance(10_000); // 50 s left
    const host = memoryHost();
    const mig = new MigratingKeyValueStore(ns, from, to, settings(), { phase: "backfill", step: 0, startedAtMs: clock.now() }, host, clock, () => {});
    t.after(() => mig.close());
    for (let i = 0; i < 500 && !host.cursor?.done; i++) await settle();
    assert.ok(host.cursor?.done, `the backfill finished (${JSON.stringify(host.cursor)})`);
    await mig.flush();
    assert.equal(text(await to.get("session")), "s");
    assert.deepEqual(await to.ttl!("session"), { ttlMs: 50_000 }, "the remaining TTL, not a fresh one and not none");
    assert.deepEqual(await to.ttl!("forever"), { ttlMs: null });
    clock.advance(50_001);
    assert.equal(await from.get("session"), null);
    assert.equal(await to.get("session"), null, "expired on `to` as on `from`");
    assert.equal(text(await to.get("forever")), "f");
  });
});

describe("migration backfill: stopping while the loop waits on the config store", () => {
  test("close() returns although the loop's cursor read is held (as by the sync that is applying the next runtime), and the loop writes nothing after it", { timeout: 15_000 }, async (t) => {
    const { clock, ns, from, to } = twoStores(t, "bfs");
    for (let i = 0; i < 5; i++) await from.set(`k${i}`, enc(`v${i}`), {});
    const host = memoryHost();
    const read = host.loadCursor;
    const save = host.saveCursor;
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let loads = 0;
    let saves = 0;
    // The third read is the one after the first page was copied: it waits like a read queued behind a sync that never ends while close() waits.
    host.loadCursor = async (n: string) => {
      if (++loads === 3) await held;
      return read(n);
    };
    host.saveCursor = async (n: string, c: BackfillCursor) => {
      saves++;
      return save(n, c);
    };
    const s = { ...settings(), backfillRps: 2 }; // pages of 2 keys
    const mig = new MigratingKeyValueStore(ns, from, to, s, { phase: "backfill", step: 0, startedAtMs: clock.now() }, host, clock, () => {});
    t.after(() => release());
    for (let i = 0; i < 500 && loads < 3; i++) await settle();
    assert.equal(loads, 3, "the loop is waiting on its third cursor read");
    const savesAtClose = saves;
    await mig.close(); // without the bound on stop(), this never returns
    release();
    for (let i = 0; i < 20; i++) await settle();
    assert.equal(saves, savesAtClose, "no cursor written by the stopped loop");
  });
});
