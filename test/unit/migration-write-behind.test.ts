/**
 * MigratingKeyValueStore's write-behind (src/migrations/write-behind.ts):
 * the caller is answered once the key's primary has the write, the copy to
 * the other side follows, per key in order and coalesced, bounded, flushed on
 * close, and seen as pending by reads and shadow reads, also by a store
 * re-created on a phase change. Real stores (memstore → memstore, memstore →
 * SQLite); `to` is wrapped in a Gate that holds chosen calls until the test
 * releases them (in the order it picks) or makes them fail.
 *
 * No durations are asserted: "not answered yet" is checked after the event
 * loop ran everything it could (a timer after the batch linger, then setImmediate).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { ManualClock } from "../../src/core/clock.js";
import { errors } from "../../src/core/errors.js";
import { DEFAULT_LIMITS } from "../../src/config/schema.js";
import type { Bytes, IdempotencyToken, KeyValueStore, KvRecord, Once, SetOptions } from "../../src/backends/driver.js";
import { driver as memstore } from "../../src/backends/memstore/index.js";
import { driver as sqlite } from "../../src/backends/sqlite/index.js";
import { optionsSchema as sqliteOptions } from "../../src/backends/sqlite/options.js";
import { MigratingKeyValueStore } from "../../src/migrations/keyvalue.js";
import type { MigrationPhase, MigrationSettings } from "../../src/migrations/types.js";

const enc = (s: string) => Buffer.from(s);
const text = (r: KvRecord | null) => (r === null ? null : Buffer.from(r.value).toString());
/** After every microtask the calls so far queued, and one macrotask turn. */
// Batched copies start LINGER_MS (1 ms) after they are ready: a 10 ms timer created after them fires after
// theirs (Node orders timers by expiry), then setImmediate lets their calls' microtasks run.
const settle = () => new Promise<void>((r) => setTimeout(() => setImmediate(r), 10));

interface Held {
  method: string;
  key: string;
  value: string | undefined;
  release(): void;
  fail(): void;
}

/** A real store whose writes matching `hold` wait for the test (release or fail); records what landed, in order. */
class Gate implements KeyValueStore {
  hold: (method: string, key: string, value: string | undefined) => boolean = () => false;
  readonly held: Held[] = [];
  /** `method key=value` of each write, when it started and when it landed on the real store. */
  readonly started: string[] = [];
  readonly landed: string[] = [];
  readonly gets: string[] = [];
  inFlight = 0;
  maxInFlight = 0;
  setOnce?: (key: string, value: Bytes, opts: SetOptions, token: IdempotencyToken) => Promise<Once<number>>;
  deleteOnce?: (key: string, token: IdempotencyToken) => Promise<Once<boolean>>;

  constructor(readonly inner: KeyValueStore) {
    if (inner.setOnce) this.setOnce = (k, v, o, t) => this.call("setOnce", k, Buffer.from(v).toString(), () => inner.setOnce!(k, v, o, t));
    if (inner.deleteOnce) this.deleteOnce = (k, t) => this.call("deleteOnce", k, undefined, () => inner.deleteOnce!(k, t));
  }

  /** Entries per batch call (batchSet / batchDelete). */
  readonly batches: number[] = [];

  private call<T>(method: string, key: string, value: string | undefined, f: () => Promise<T>): Promise<T> {
    return this.calls(method, [[key, value]], f);
  }

  /** One call to the real store writing `entries` ([key, value]): recorded per entry, held when any entry matches. */
  private async calls<T>(method: string, entries: [string, string | undefined][], f: () => Promise<T>): Promise<T> {
    const what = entries.map(([key, value]) => `${method} ${key}${value === undefined ? "" : `=${value}`}`);
    this.started.push(...what);
    this.maxInFlight = Math.max(this.maxInFlight, ++this.inFlight);
    try {
      const [key, value] = entries.find(([k, v]) => this.hold(method, k, v)) ?? [];
      if (key !== undefined) {
        await new Promise<void>((resolve, reject) => this.held.push({ method, key, value, release: resolve, fail: () => reject(errors.unavailable("gate: failed on purpose")) }));
      }
      const r = await f();
      this.landed.push(...what);
      return r;
    } finally {
      this.inFlight--;
    }
  }

  batchSet(entries: { key: string; value: Bytes }[], ttlMs: number | undefined) {
    this.batches.push(entries.length);
    return this.calls(
      "set",
      entries.map((e) => [e.key, Buffer.from(e.value).toString()]),
      () => this.inner.batchSet!(entries, ttlMs),
    );
  }
  batchDelete(keys: string[]) {
    this.batches.push(keys.length);
    return this.calls(
      "delete",
      keys.map((k) => [k, undefined]),
      () => this.inner.batchDelete!(keys),
    );
  }

  /** Releases every held call, newest first, until none is held any more (calls queued behind them are held in turn if they match). */
  async releaseAll(order: "newest" | "oldest" = "newest"): Promise<void> {
    for (let turns = 0; turns < 100; turns++) {
      await settle();
      if (this.held.length === 0) return;
      const batch = this.held.splice(0);
      if (order === "newest") batch.reverse();
      for (const h of batch) {
        h.release();
        await settle();
      }
    }
    throw new Error("calls kept being held");
  }

  get(key: string) {
    this.gets.push(key);
    return this.inner.get(key);
  }
  set(key: string, value: Bytes, opts: SetOptions) {
    return this.call("set", key, Buffer.from(value).toString(), () => this.inner.set(key, value, opts));
  }
  delete(key: string) {
    return this.call("delete", key, undefined, () => this.inner.delete(key));
  }
  exists(key: string) {
    return this.inner.exists(key);
  }
}

function settings(over: Partial<MigrationSettings> = {}): MigrationSettings {
  return {
    slot: "keyvalue",
    from: "old",
    to: "new",
    backfillRps: 1000,
    shadowReadPct: 0,
    cutoverSteps: [50, 100],
    rollbackOn: { errorRate: 1, p99Ms: 1e9, diffPct: 100 },
    windowSeconds: 30,
    dryRun: false,
    ...over,
  };
}

type Ctx = { after(fn: () => Promise<void> | void): void };

/** memstore `from`, `to` memstore or SQLite behind a Gate, and a factory for the migrating store (one namespace name per test). */
function setup(t: Ctx, toType: "memstore" | "sqlite" = "memstore") {
  const clock = new ManualClock(Date.now());
  const ns = `wb-${randomUUID()}`;
  const fromInst = memstore.create({}, { clock, log: () => {} });
  const from = fromInst.namespace(ns, DEFAULT_LIMITS).keyvalue!;
  let toInst;
  if (toType === "sqlite") {
    const dir = mkdtempSync(join(tmpdir(), "prism-wb-"));
    toInst = sqlite.create(sqliteOptions.parse({ path: join(dir, "to.sqlite") }), { clock, log: () => {} });
    t.after(() => rmSync(dir, { recursive: true, force: true }));
  } else toInst = memstore.create({}, { clock, log: () => {} });
  const inner = toInst.namespace(ns, DEFAULT_LIMITS).keyvalue!;
  const to = new Gate(inner);
  const stores: MigratingKeyValueStore[] = [];
  const logs: string[] = [];
  const open = (phase: MigrationPhase = "dual_write", over: Partial<MigrationSettings> = {}, step = 0) => {
    const s = new MigratingKeyValueStore(ns, from, to, settings(over), { phase, step, startedAtMs: clock.now() }, undefined, clock, (l, m) => logs.push(`${l} ${m}`));
    stores.push(s);
    return s;
  };
  t.after(async () => {
    to.hold = () => false;
    await to.releaseAll("oldest");
    for (const s of stores) await s.close();
    await fromInst.close();
    await toInst.close();
  });
  return { clock, from, to, inner, open, logs };
}

/** Tracks whether a promise settled (without awaiting it). */
function track<T>(p: Promise<T>) {
  const s = { done: false, value: undefined as T | undefined, error: undefined as unknown };
  p.then(
    (v) => ((s.done = true), (s.value = v)),
    (e) => ((s.done = true), (s.error = e)),
  );
  return s;
}

describe("migration write-behind (dual_write, memstore → memstore and → SQLite)", () => {
  for (const toType of ["memstore", "sqlite"] as const) {
    test(`→ ${toType}: the caller is answered once \`from\` has the write; \`to\` gets it afterwards, TTL shortened by the wait`, async (t) => {
      const { clock, from, to, inner, open } = setup(t, toType);
      const mig = open();
      to.hold = () => true;
      const ack = track(mig.set("k", enc("v1"), {}));
      await settle();
      assert.ok(ack.done && ack.error === undefined, "answered while the write to `to` is held");
      assert.equal(text(await from.get("k")), "v1");
      assert.equal(text(await inner.get("k")), null, "`to` does not have it yet");
      assert.deepEqual(to.started, ["set k=v1"]);
      // A second write waits behind the first; its TTL runs from its answer, not from when `to` gets it.
      await mig.set("k", enc("v2"), { ttlMs: 10_000 });
      clock.advance(4000);
      await to.releaseAll();
      await mig.flush();
      assert.deepEqual(to.landed, ["set k=v1", "set k=v2"]);
      assert.equal(text(await inner.get("k")), "v2");
      assert.deepEqual(await inner.ttl!("k"), { ttlMs: 6000 }, "`to` expires the key when `from` does");
      assert.deepEqual(await from.ttl!("k"), { ttlMs: 6000 });
      assert.equal(mig.snapshot().writeBehindPending, 0);
    });
  }

  test("per key: one write to `to` in flight, later writes coalesce into one pending write, applied in order (deletes too)", async (t) => {
    const { from, to, inner, open } = setup(t);
    const mig = open();
    to.hold = () => true;
    const acks = [1, 2, 3, 4, 5].map((i) => track(mig.set("hot", enc(`v${i}`), {})));
    const other = track(mig.set("cold", enc("c1"), {}));
    await settle();
    assert.ok(acks.every((a) => a.done) && other.done, "every write answered while `to` holds them");
    assert.equal(text(await from.get("hot")), "v5");
    // Released newest first: without the per-key order, v1 would land last and win.
    await to.releaseAll("newest");
    await mig.flush();
    assert.deepEqual(
      to.landed.filter((w) => w.includes("hot")),
      ["set hot=v1", "set hot=v5"],
      "the one in flight, then only the newest",
    );
    assert.equal(text(await inner.get("hot")), "v5");
    assert.equal(text(await inner.get("cold")), "c1");
    // A delete replaces a pending set (and a set a pending delete).
    to.landed.length = 0;
    const d = [track(mig.set("hot", enc("v6"), {})), track(mig.set("hot", enc("v7"), {})), track(mig.delete("hot"))];
    await settle();
    assert.ok(d.every((a) => a.done));
    await to.releaseAll("newest");
    await mig.flush();
    assert.deepEqual(to.landed, ["set hot=v6", "delete hot"]);
    assert.equal(await inner.get("hot"), null);
    assert.equal(await from.get("hot"), null);
    assert.equal(mig.snapshot().dualWriteErrors, 0);
  });

  test("copies of different keys ready at once share one batchSet / batchDelete call on `to`; a Set with a TTL goes alone", async (t) => {
    const { to, inner, open } = setup(t, "sqlite");
    const mig = open();
    to.hold = () => true;
    await Promise.all(["a", "b", "c"].map((k) => mig.set(k, enc(k), {})));
    await mig.set("t", enc("t"), { ttlMs: 60_000 });
    await settle();
    assert.deepEqual(to.batches, [3], "one call for a, b and c");
    await to.releaseAll("oldest");
    await mig.flush();
    await Promise.all(["a", "b"].map((k) => mig.delete(k)));
    await settle();
    assert.deepEqual(to.batches, [3, 2]);
    await to.releaseAll("oldest");
    await mig.flush();
    assert.deepEqual(to.landed.slice().sort(), ["delete a", "delete b", "set a=a", "set b=b", "set c=c", "set t=t"]);
    assert.equal(await inner.get("a"), null);
    assert.equal(text(await inner.get("c")), "c");
    assert.ok(((await inner.ttl!("t"))?.ttlMs ?? 0) > 0, "the TTL reached `to`");
  });

  test("keyed (idempotent) writes are never coalesced: each token reaches `to`, in order; the third waits (one in flight + one pending)", async (t) => {
    const { to, inner, open } = setup(t);
    const mig = open();
    assert.ok(mig.setOnce, "both sides are keyvalue_idempotent");
    const token = (i: number): IdempotencyToken => ({ key: `set::tok-${i}`, requestHash: `h${i}`, windowMs: 60_000 });
    to.hold = () => true;
    const acks = [1, 2, 3].map((i) => track(mig.setOnce!("k", enc(`v${i}`), {}, token(i))));
    await settle();
    assert.deepEqual(
      acks.map((a) => a.done),
      [true, true, false],
      "two answered; the third waits for `to` (a keyed copy cannot be replaced)",
    );
    await to.releaseAll("newest");
    await mig.flush();
    assert.ok(acks[2]!.done && acks[2]!.error === undefined);
    assert.deepEqual(to.landed, ["setOnce k=v1", "setOnce k=v2", "setOnce k=v3"]);
    assert.equal(text(await inner.get("k")), "v3");
    // `to` holds each token's record: a retry there is a replay.
    for (const i of [1, 2, 3]) assert.equal((await inner.setOnce!("k", enc("x"), {}, token(i))).replayedHash, `h${i}`);
    assert.equal(text(await inner.get("k")), "v3");
  });

  test("bounded: past writeBehindMaxKeys keys (or writeBehindMaxBytes) pending, a write waits for `to`; 0 keys makes every write wait", async (t) => {
    const { to, inner, open } = setup(t);
    const mig = open("dual_write", { writeBehindMaxKeys: 2 });
    to.hold = () => true;
    const acks = ["a", "b", "c"].map((k) => track(mig.set(k, enc(k), {})));
    await settle();
    assert.deepEqual(
      acks.map((a) => a.done),
      [true, true, false],
    );
    assert.equal(mig.snapshot().writeBehindPending, 3);
    // A key already pending still coalesces (no new key): answered.
    const again = track(mig.set("a", enc("a2"), {}));
    await settle();
    assert.ok(again.done);
    await to.releaseAll("oldest");
    await mig.flush();
    assert.ok(acks[2]!.done);
    assert.equal(text(await inner.get("a")), "a2");
    assert.equal(text(await inner.get("c")), "c");
    await mig.close();

    // The bytes the pending writes hold are bounded too (key + value).
    const small = open("dual_write", { writeBehindMaxBytes: 20 });
    to.hold = () => true;
    const big = [track(small.set("x", enc("12345678"), {})), track(small.set("y", enc("12345678"), {})), track(small.set("z", enc("12345678"), {}))];
    await settle();
    assert.deepEqual(
      big.map((a) => a.done),
      [true, true, false],
      "9 + 9 bytes pending fit in 20, 27 do not",
    );
    await to.releaseAll("oldest");
    await small.flush();
    assert.ok(big[2]!.done);
    await small.close();

    const sync = open("dual_write", { writeBehindMaxKeys: 0 });
    to.hold = () => true;
    const s = track(sync.set("z", enc("z"), {}));
    await settle();
    assert.equal(s.done, false, "0: the write waits for its secondary");
    await to.releaseAll();
    await sync.flush();
    assert.ok(s.done);
  });

  test("close() waits for the pending writes to `to`", async (t) => {
    const { to, inner, open } = setup(t, "sqlite");
    const mig = open();
    to.hold = () => true;
    await mig.set("k1", enc("v1"), {});
    await mig.set("k2", enc("v2"), {});
    const closing = track(mig.close());
    await settle();
    assert.equal(closing.done, false, "close() is still waiting for `to`");
    await to.releaseAll("oldest");
    await settle();
    assert.ok(closing.done);
    assert.equal(text(await inner.get("k1")), "v1");
    assert.equal(text(await inner.get("k2")), "v2");
  });

  test("a failed write to `to` (after the answer) is recorded for repair and repaired from `from`", async (t) => {
    const { to, inner, open } = setup(t);
    const mig = open();
    to.hold = () => true;
    await mig.set("k", enc("v1"), {});
    assert.equal(mig.snapshot().repairsPending, 0, "answered before `to` was tried");
    await settle();
    const h = to.held.splice(0);
    assert.equal(h.length, 1);
    h[0]!.fail();
    await mig.flush();
    assert.equal(mig.snapshot().dualWriteErrors, 1);
    assert.equal(mig.snapshot().repairsPending, 1);
    to.hold = () => false;
    // The repair loop runs twice a second.
    for (let i = 0; i < 100 && mig.snapshot().repairsPending > 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(mig.snapshot().repairsPending, 0);
    assert.equal(text(await inner.get("k")), "v1");
  });
});

describe("migration write-behind across a phase change (the store re-created, same namespace)", () => {
  test("cutover: a key whose write to `to` is pending is read from `from`; a write to it on `to` waits for the older one; shadow reads skip it", async (t) => {
    const { from, to, inner, open } = setup(t);
    await from.set("k", enc("v0"), {});
    await inner.set("k", enc("v0"), {});
    await from.set("same", enc("s"), {});
    await inner.set("same", enc("s"), {});
    const dual = open("dual_write");
    to.hold = (_m, _k, v) => v === "v1";
    await dual.set("k", enc("v1"), {});
    assert.equal(text(await inner.get("k")), "v0", "the write to `to` is held");
    // The phase changes: a new store (every key served by `to`, every read shadowed) while the old one still holds a pending write.
    const cut = open("cutover", { shadowReadPct: 100 }, 1);
    assert.equal(cut.cutoverPct, 100);
    to.gets.length = 0;
    assert.equal(text(await cut.get("k")), "v1", "served from `from`, which has the write");
    assert.ok(!to.gets.includes("k"), "no shadow read of a key with a write pending");
    assert.equal(text(await cut.get("same")), "s");
    await settle();
    assert.equal(cut.snapshot().shadowReads, 1, "shadow reads run for other keys");
    const w = track(cut.set("k", enc("v2"), {}));
    await settle();
    assert.equal(w.done, false, "the write to `to` (its primary now) waits for the older one still to land there");
    const closing = track(dual.close());
    await to.releaseAll();
    await cut.flush();
    await settle();
    assert.ok(w.done && w.error === undefined);
    assert.ok(closing.done, "the old store's close() waited for its pending write");
    assert.deepEqual(to.landed.filter((x) => x.startsWith("set k")), ["set k=v1", "set k=v2"]);
    assert.equal(text(await inner.get("k")), "v2");
    assert.equal(text(await from.get("k")), "v2", "and `from` got the copy");
    assert.equal(text(await cut.get("k")), "v2");
    assert.equal(cut.snapshot().shadowMismatches, 0);
  });
});
