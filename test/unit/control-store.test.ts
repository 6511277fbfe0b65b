// The config store contract (src/control/store.ts): one suite, run unchanged
// against the memory, sqlite (files in a fresh temp dir) and postgres (the
// real PostgreSQL on 127.0.0.1:5432, POSTGRES_URL to change it; skipped when
// not reachable; one table set per test, dropped at the end) implementations,
// then what only one of them does (postgres LISTEN/NOTIFY and a server that
// is down, sqlite writers on other threads, lazy loading).
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import pg from "pg";
import type { ConfigStore, StoredEntry, WriteResult } from "../../src/control/store.js";
import { MemoryConfigStore } from "../../src/control/store-memory.js";
import { SqliteConfigStore } from "../../src/control/store-sqlite.js";
import { maskUrl, PostgresConfigStore } from "../../src/control/store-postgres.js";
import { openConfigStore } from "../../src/control/stores.js";

const PG_URL = process.env.POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const run = `${process.pid}_${randomBytes(3).toString("hex")}`;

const dir = mkdtempSync(join(tmpdir(), "prism-config-store-test-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let fileSeq = 0;
const newPath = (): string => join(dir, `sub-${++fileSeq}`, "config.sqlite");

// ---- PostgreSQL: reachability and clean-up ----------------------------------

let sql: pg.Client | undefined;
let pgSkip: string | undefined;
const tables: string[] = [];
let tableSeq = 0;
const newTable = (): string => {
  const t = `prism_cfgtest_${run}_${++tableSeq}`;
  tables.push(t);
  return t;
};

before(async () => {
  const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 2000 });
  c.on("error", () => {});
  try {
    await c.connect();
    sql = c;
  } catch (e) {
    pgSkip = `no PostgreSQL at ${PG_URL}: ${(e as Error).message}`;
  }
});

after(async () => {
  if (!sql) return;
  for (const t of tables) await sql.query(`DROP TABLE IF EXISTS "${t}_entries", "${t}_revision"`);
  await sql.end();
});

// ---- The harnesses ----------------------------------------------------------

interface Harness {
  name: string;
  /** Why this implementation cannot run here, if it cannot. */
  skip(): string | undefined;
  /** A new, empty store. */
  open(): Promise<ConfigStore>;
  /** Another store object on the same data as `of` (reopening the file / the table); undefined when nothing outlives an object. */
  reopen?(of: ConfigStore): Promise<ConfigStore>;
}

const sqlitePaths = new WeakMap<ConfigStore, string>();
const pgTables = new WeakMap<ConfigStore, string>();

const harnesses: Harness[] = [
  { name: "memory", skip: () => undefined, open: async () => new MemoryConfigStore() },
  {
    name: "sqlite",
    skip: () => undefined,
    open: async () => {
      const path = newPath();
      const s = new SqliteConfigStore({ path });
      sqlitePaths.set(s, path);
      return s;
    },
    reopen: async (of) => {
      const path = sqlitePaths.get(of)!;
      const s = new SqliteConfigStore({ path });
      sqlitePaths.set(s, path);
      return s;
    },
  },
  {
    name: "postgres",
    skip: () => pgSkip,
    open: async () => {
      const table = newTable();
      const s = new PostgresConfigStore({ url: PG_URL, table });
      pgTables.set(s, table);
      return s;
    },
    reopen: async (of) => {
      const table = pgTables.get(of)!;
      const s = new PostgresConfigStore({ url: PG_URL, table });
      pgTables.set(s, table);
      return s;
    },
  },
];

type T = { after: (fn: () => Promise<void>) => void; skip: (why?: string) => void };

/** Opens a store closed after the test; undefined (test skipped) when the implementation cannot run. */
async function fresh(h: Harness, t: T): Promise<ConfigStore | undefined> {
  const why = h.skip();
  if (why) {
    t.skip(why);
    return undefined;
  }
  const s = await h.open();
  t.after(() => s.close());
  return s;
}

async function again(h: Harness, t: T, of: ConfigStore): Promise<ConfigStore> {
  const s = await h.reopen!(of);
  t.after(() => s.close());
  return s;
}

const put = (kind: string, name: string, spec: unknown) => ({ kind, name, spec });
const del = (kind: string, name: string) => ({ kind, name, spec: null });
const e = (kind: string, name: string, spec: unknown, revision: number): StoredEntry => ({ kind, name, spec, revision });

/** A spec with every JSON shape: nested objects and arrays, numbers of every kind, booleans, null, unicode. */
const RICH = {
  name: "orders",
  backends: [{ instance: "pg-main", interfaces: ["keyvalue", "queue"], weight: 0.25 }, { instance: "redis", interfaces: [] }],
  limits: { maxKeyBytes: 1024, ratio: -1.5e-7, big: 1e21, max: Number.MAX_SAFE_INTEGER, tiny: 5e-324, zero: 0 },
  flags: { enabled: true, draft: false, note: null },
  empty: { obj: {}, arr: [] as unknown[], str: "" },
  text: "héllo \"quoted\" \\ / \n\t 😀 ＡＢ",
  matrix: [[1, 2], [null, [true, { deep: ["x"] }]]],
};

// ---- The contract, identical for every implementation --------------------

function configStoreSuite(h: Harness): void {
  describe(`config store contract: ${h.name}`, () => {
    test("a new store is empty at revision 0; an empty write creates no revision", async (t) => {
      const s = await fresh(h, t);
      if (!s) return;
      assert.equal(s.type, h.name);
      assert.equal(typeof s.description, "string");
      assert.deepEqual(await s.snapshot(), { revision: 0, entries: [] });
      assert.deepEqual(await s.changesSince(0), { revision: 0, changes: [] });
      assert.deepEqual(await s.write([]), { revision: 0, written: [] });
      assert.deepEqual(await s.snapshot(), { revision: 0, entries: [] });
      await s.write([put("namespace", "a", { x: 1 })]);
      assert.deepEqual(await s.write([]), { revision: 1, written: [] }, "an empty write reports the current revision");
      assert.equal((await s.snapshot()).revision, 1);
    });

    test("put then snapshot round-trips the spec exactly", async (t) => {
      const s = await fresh(h, t);
      if (!s) return;
      const spec = structuredClone(RICH);
      const scalars: unknown[] = ["just a string", 42, -0.5, true, false, [], [1, "two", null], {}];
      const w = await s.write([put("namespace", "orders", spec), ...scalars.map((v, i) => put("scalar", `s${i}`, v))]);
      assert.deepEqual(w, { revision: 1, written: Array(scalars.length + 1).fill(true) });
      // The caller's object is not the store's: mutating it afterwards changes nothing.
      spec.limits.maxKeyBytes = 1;
      (spec.backends as unknown[]).push("junk");
      const snap = await s.snapshot();
      assert.equal(snap.revision, 1);
      assert.deepStrictEqual(snap.entries, [
        e("namespace", "orders", RICH, 1),
        ...scalars.map((v, i) => e("scalar", `s${i}`, v, 1)).sort((a, b) => (a.name < b.name ? -1 : 1)),
      ]);
      // Nor is a read object: mutating it does not change the next read.
      (snap.entries[0]!.spec as { name: string }).name = "mutated";
      assert.deepStrictEqual((await s.snapshot()).entries[0]!.spec, RICH);
      assert.deepStrictEqual((await s.changesSince(0)).changes.find((c) => c.name === "orders")?.spec, RICH);
    });

    test("revisions strictly increase and the ops of one change set share one", async (t) => {
      const s = await fresh(h, t);
      if (!s) return;
      const w1 = await s.write([put("namespace", "a", { v: 1 }), put("namespace", "b", { v: 1 }), put("backend", "pg", { url: "x" })]);
      assert.deepEqual(w1, { revision: 1, written: [true, true, true] });
      const w2 = await s.write([put("namespace", "a", { v: 2 })]);
      assert.deepEqual(w2, { revision: 2, written: [true] });
      // A put always writes, even with an identical spec.
      const w3 = await s.write([put("namespace", "a", { v: 2 })]);
      assert.deepEqual(w3, { revision: 3, written: [true] });
      assert.deepEqual(await s.snapshot(), {
        revision: 3,
        entries: [e("backend", "pg", { url: "x" }, 1), e("namespace", "a", { v: 2 }, 3), e("namespace", "b", { v: 1 }, 1)],
      });
      assert.deepEqual(await s.changesSince(1), { revision: 3, changes: [e("namespace", "a", { v: 2 }, 3)] });
      assert.deepEqual(await s.changesSince(3), { revision: 3, changes: [] });
      assert.deepEqual(await s.changesSince(99), { revision: 3, changes: [] });
    });

    test("a delete writes a tombstone: in changesSince, not in snapshot; a later put revives the entry", async (t) => {
      const s = await fresh(h, t);
      if (!s) return;
      await s.write([put("namespace", "a", { v: 1 }), put("namespace", "b", { v: 1 })]);
      assert.deepEqual(await s.write([del("namespace", "a")]), { revision: 2, written: [true] });
      assert.deepEqual(await s.snapshot(), { revision: 2, entries: [e("namespace", "b", { v: 1 }, 1)] });
      assert.deepEqual(await s.changesSince(0), { revision: 2, changes: [e("namespace", "b", { v: 1 }, 1), e("namespace", "a", null, 2)] });
      assert.deepEqual(await s.changesSince(1), { revision: 2, changes: [e("namespace", "a", null, 2)] });
      assert.deepEqual(await s.write([put("namespace", "a", { v: 3 })]), { revision: 3, written: [true] });
      assert.deepEqual((await s.snapshot()).entries, [e("namespace", "a", { v: 3 }, 3), e("namespace", "b", { v: 1 }, 1)]);
    });

    test("deleting a missing or already deleted entry writes nothing and creates no revision", async (t) => {
      const s = await fresh(h, t);
      if (!s) return;
      assert.deepEqual(await s.write([del("namespace", "ghost")]), { revision: 0, written: [false] });
      assert.deepEqual(await s.changesSince(0), { revision: 0, changes: [] });
      await s.write([put("namespace", "a", { v: 1 })]);
      await s.write([del("namespace", "a")]);
      const before = await s.changesSince(0);
      assert.deepEqual(before, { revision: 2, changes: [e("namespace", "a", null, 2)] });
      assert.deepEqual(await s.write([del("namespace", "a"), del("namespace", "ghost")]), { revision: 2, written: [false, false] });
      assert.deepEqual(await s.changesSince(0), before, "the tombstone keeps its revision, no tombstone for ghost");
      // Mixed with a write: the set gets a revision, the missing delete still writes nothing.
      assert.deepEqual(await s.write([del("namespace", "ghost"), put("namespace", "b", 1)]), { revision: 3, written: [false, true] });
      assert.deepEqual(await s.changesSince(2), { revision: 3, changes: [e("namespace", "b", 1, 3)] });
      assert.deepEqual(await s.changesSince(0), { revision: 3, changes: [e("namespace", "a", null, 2), e("namespace", "b", 1, 3)] });
    });

    test("the ops of one change set apply in order", async (t) => {
      const s = await fresh(h, t);
      if (!s) return;
      // put then delete of one entry: a tombstone; delete (of nothing) then put: live.
      const w = await s.write([put("k", "x", 1), del("k", "x"), del("k", "y"), put("k", "y", 2), put("k", "z", 1), put("k", "z", 2)]);
      assert.deepEqual(w, { revision: 1, written: [true, true, false, true, true, true] });
      assert.deepEqual(await s.changesSince(0), { revision: 1, changes: [e("k", "x", null, 1), e("k", "y", 2, 1), e("k", "z", 2, 1)] });
      assert.deepEqual((await s.snapshot()).entries, [e("k", "y", 2, 1), e("k", "z", 2, 1)]);
    });

    test("snapshot orders by kind then name, changesSince by revision then kind, name (code point order)", async (t) => {
      const s = await fresh(h, t);
      if (!s) return;
      // Code point order (= UTF-8 byte order): "B" < "a" < "b" < "é" < U+FF21 "Ａ" < U+1F600 "😀"
      // (UTF-16 code units would put "😀" before "Ａ"; a locale collation "a" before "B").
      const names = ["😀", "b", "Ａ", "B", "é", "a"];
      const sorted = ["B", "a", "b", "é", "Ａ", "😀"];
      await s.write(names.map((n, i) => put("zeta", n, i)));
      await s.write([put("alpha", "m", 1), put("Zeta", "m", 1)]);
      await s.write([put("zeta", "b", "again"), put("alpha", "a", 0)]);
      const snap = await s.snapshot();
      assert.deepEqual(
        snap.entries.map((x) => `${x.kind}/${x.name}`),
        ["Zeta/m", "alpha/a", "alpha/m", ...sorted.map((n) => `zeta/${n}`)],
      );
      assert.deepEqual(
        (await s.changesSince(0)).changes.map((x) => `${x.revision} ${x.kind}/${x.name}`),
        [...sorted.filter((n) => n !== "b").map((n) => `1 zeta/${n}`), "2 Zeta/m", "2 alpha/m", "3 alpha/a", "3 zeta/b"],
      );
      assert.deepEqual(
        (await s.changesSince(1)).changes.map((x) => `${x.revision} ${x.kind}/${x.name}`),
        ["2 Zeta/m", "2 alpha/m", "3 alpha/a", "3 zeta/b"],
      );
    });

    test("a bad op is refused and nothing of its change set is written", async (t) => {
      const s = await fresh(h, t);
      if (!s) return;
      await assert.rejects(s.write([put("k", "ok", 1), put("k", "bad", undefined)]), /config store .*op 1.*not JSON/);
      const circular: Record<string, unknown> = {};
      circular.self = circular;
      await assert.rejects(s.write([put("k", "ok", 1), put("k", "loop", circular)]), /config store .*op 1.*not JSON/);
      await assert.rejects(s.write([put("", "x", 1)]), /kind must be a non-empty string/);
      await assert.rejects(s.changesSince(Number.NaN), /changesSince expects a revision number/);
      assert.deepEqual(await s.changesSince(0), { revision: 0, changes: [] });
    });

    test("durability: another store object on the same data sees everything, and revisions continue", async (t) => {
      const a = await fresh(h, t);
      if (!a) return;
      if (!h.reopen) {
        t.skip(`${h.name}: nothing outlives the store object`);
        return;
      }
      await a.write([put("namespace", "a", RICH), put("namespace", "b", { v: 1 })]);
      await a.write([del("namespace", "b")]);
      const b = await again(h, t, a);
      assert.deepEqual(await b.snapshot(), await a.snapshot());
      assert.deepEqual(await b.snapshot(), { revision: 2, entries: [e("namespace", "a", RICH, 1)] });
      assert.deepEqual(await b.changesSince(0), { revision: 2, changes: [e("namespace", "a", RICH, 1), e("namespace", "b", null, 2)] });
      // Writes through either object are seen by the other: nothing is cached per object.
      assert.deepEqual(await b.write([put("namespace", "c", [1])]), { revision: 3, written: [true] });
      assert.deepEqual(await a.changesSince(2), { revision: 3, changes: [e("namespace", "c", [1], 3)] });
      assert.deepEqual(await a.write([del("namespace", "c")]), { revision: 4, written: [true] }, "a deletes the entry b wrote");
      assert.deepEqual(await a.write([put("namespace", "d", true)]), { revision: 5, written: [true] });
      assert.deepEqual(await b.write([del("namespace", "c")]), { revision: 5, written: [false] }, "b sees a's tombstone");
      await a.close();
      await b.close();
      const c = await again(h, t, a);
      assert.deepEqual(await c.snapshot(), { revision: 5, entries: [e("namespace", "a", RICH, 1), e("namespace", "d", true, 5)] });
      assert.deepEqual(await c.changesSince(2), { revision: 5, changes: [e("namespace", "c", null, 4), e("namespace", "d", true, 5)] });
    });

    test("concurrency: two store objects each doing 20 concurrent writes to one entry", async (t) => {
      const a = await fresh(h, t);
      if (!a) return;
      // memory: nothing outlives the object, so both writers share it.
      const b = h.reopen ? await again(h, t, a) : a;
      const writes: { spec: { writer: string; i: number }; result: Promise<WriteResult> }[] = [];
      for (let i = 0; i < 20; i++) {
        for (const [writer, s] of [["a", a], ["b", b]] as const) {
          const spec = { writer, i };
          writes.push({ spec, result: s.write([put("namespace", "contended", spec)]) });
        }
      }
      const results = await Promise.all(writes.map((w) => w.result));
      for (const r of results) assert.deepEqual(r.written, [true]);
      const revisions = results.map((r) => r.revision).sort((x, y) => x - y);
      assert.deepEqual(revisions, Array.from({ length: 40 }, (_, i) => i + 1), "40 unique revisions 1..40");
      const last = writes[results.findIndex((r) => r.revision === 40)]!.spec;
      for (const s of [a, b]) {
        assert.deepEqual(await s.snapshot(), { revision: 40, entries: [e("namespace", "contended", last, 40)] });
        assert.deepEqual(await s.changesSince(39), { revision: 40, changes: [e("namespace", "contended", last, 40)] });
      }
    });

    test("a closed store refuses calls", async (t) => {
      const s = await fresh(h, t);
      if (!s) return;
      await s.close();
      await assert.rejects(s.snapshot(), /config store .*closed/);
      await assert.rejects(s.write([put("k", "x", 1)]), /config store .*closed/);
      await s.close();
    });
  });
}

for (const h of harnesses) configStoreSuite(h);

// ---- What only one implementation does ---------------------------------

/** Counts onChange calls; atLeast(n, ms) resolves once n calls were made, rejects after ms. */
function changeCounter() {
  let count = 0;
  const waiters: { n: number; resolve: () => void }[] = [];
  return {
    onChange: () => {
      count++;
      for (const w of waiters.filter((w) => count >= w.n)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    },
    get count() {
      return count;
    },
    atLeast(n: number, ms: number, what: string): Promise<void> {
      if (count >= n) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${what}: ${count} onChange calls after ${ms} ms, expected ${n}`)), ms);
        waiters.push({ n, resolve: () => (clearTimeout(timer), resolve()) });
      });
    },
  };
}

/** Polls cond (a readiness condition, not a timing assertion) until true or ms passed. */
async function until(cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The server pids of the connections LISTENing on the table's channel. */
async function listeners(table: string): Promise<number[]> {
  const r = await sql!.query<{ pid: number }>(
    "SELECT pid FROM pg_stat_activity WHERE application_name = 'prism-config' AND state = 'idle' AND query = $1",
    [`LISTEN "${table}"`],
  );
  return r.rows.map((x) => x.pid);
}

describe("config store: postgres specifics", () => {
  test("subscribe: onChange within 2 s of another store's write; survives a dropped connection; stops when unsubscribed", async (t) => {
    if (pgSkip) return t.skip(pgSkip);
    const table = newTable();
    const a = new PostgresConfigStore({ url: PG_URL, table });
    const b = new PostgresConfigStore({ url: PG_URL, table });
    t.after(() => a.close());
    t.after(() => b.close());
    await b.snapshot(); // creates the tables
    const c = changeCounter();
    const stop = b.subscribe(c.onChange);
    let stopped = false;
    t.after(async () => {
      if (!stopped) stop();
    });
    await until(async () => (await listeners(table)).length === 1, 5000, "the LISTEN connection");
    const [firstPid] = await listeners(table);
    assert.equal(c.count, 0, "no onChange before any write");

    await a.write([put("namespace", "x", { v: 1 })]);
    await c.atLeast(1, 2000, "after the first write");
    assert.deepEqual((await b.changesSince(0)).changes, [e("namespace", "x", { v: 1 }, 1)]);
    assert.equal(c.count, 1, "one write, one notification");
    // A set that writes nothing commits nothing and notifies nobody; the next real write does.
    await a.write([del("namespace", "missing")]);
    await a.write([put("namespace", "x", { v: 2 })]);
    await c.atLeast(2, 2000, "after the second write");
    assert.equal(c.count, 2);

    // The server drops the listen connection: it reconnects, says so with an onChange (notifications may have been lost), and notifications resume.
    await sql!.query("SELECT pg_terminate_backend($1)", [firstPid]);
    await c.atLeast(3, 5000, "after reconnecting");
    const now = await listeners(table);
    assert.equal(now.length, 1);
    assert.notEqual(now[0], firstPid);
    await a.write([put("namespace", "y", 1)]);
    await c.atLeast(4, 2000, "after a write once reconnected");

    stop();
    stopped = true;
    await until(async () => (await listeners(table)).length === 0, 5000, "the LISTEN connection to end");
    const before = c.count;
    await a.write([put("namespace", "z", 1)]);
    await assert.rejects(c.atLeast(before + 1, 500, "after unsubscribing"), /onChange calls after 500 ms/);
  });

  test("first use by several stores at once: the tables are created once, no deadlock, 20 unique revisions", async (t) => {
    if (pgSkip) return t.skip(pgSkip);
    const table = newTable();
    const stores = Array.from({ length: 4 }, () => new PostgresConfigStore({ url: PG_URL, table }));
    t.after(() => Promise.all(stores.map((s) => s.close())).then(() => {}));
    const results = await Promise.all(stores.flatMap((s, i) => Array.from({ length: 5 }, (_, j) => s.write([put("namespace", `n${j}`, { i, j }), put("backend", `b${i}`, j)]))));
    assert.deepEqual(
      results.map((r) => r.revision).sort((x, y) => x - y),
      Array.from({ length: 20 }, (_, i) => i + 1),
    );
    assert.equal((await stores[0]!.snapshot()).revision, 20);
  });

  test("PostgreSQL down: calls reject with the masked URL and the cause; subscribe retries quietly; nothing crashes", async (t) => {
    const unhandled: unknown[] = [];
    const onUnhandled = (r: unknown): void => void unhandled.push(r);
    process.on("unhandledRejection", onUnhandled);
    process.on("uncaughtException", onUnhandled);
    t.after(async () => {
      process.off("unhandledRejection", onUnhandled);
      process.off("uncaughtException", onUnhandled);
    });
    const url = "postgres://postgres:s3cret-pw@127.0.0.1:1/test";
    const s = new PostgresConfigStore({ url });
    assert.equal(s.description, "postgres://postgres:***@127.0.0.1:1/test");
    const c = changeCounter();
    const stop = s.subscribe(c.onChange);
    for (const call of [() => s.write([put("namespace", "a", 1)]), () => s.write([]), () => s.snapshot(), () => s.changesSince(0)]) {
      await assert.rejects(call(), (err: unknown) => {
        assert.ok(err instanceof Error);
        assert.match(err.message, /^config store postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:1\/test: .*ECONNREFUSED/);
        assert.doesNotMatch(err.message, /s3cret/);
        return true;
      });
    }
    // The listener keeps retrying in the background; give it a few attempts.
    await new Promise((r) => setTimeout(r, 800));
    stop();
    await s.close();
    assert.equal(c.count, 0);
    assert.deepEqual(unhandled, []);
  });

  test("options: the table name is validated; URLs are masked", () => {
    assert.throws(() => new PostgresConfigStore({ url: PG_URL, table: "Bad-Name" }), /table "Bad-Name" must match/);
    assert.throws(() => new PostgresConfigStore({ url: PG_URL, table: 'x"; DROP TABLE y; --' }), /must match/);
    assert.throws(() => new PostgresConfigStore({ url: PG_URL, table: "a".repeat(42) }), /must match/);
    assert.equal(maskUrl("postgres://u:p%40ss@db.example:5433/prism?sslmode=require"), "postgres://u:***@db.example:5433/prism?sslmode=require");
    assert.equal(maskUrl("postgres://u@h/db"), "postgres://u@h/db");
    assert.equal(maskUrl("postgres://h/db?user=u&password=secret"), "postgres://h/db?user=u&password=***");
    assert.doesNotMatch(maskUrl("not a url user:secret@host password=secret"), /secret/);
  });
});

describe("config store: sqlite specifics", () => {
  test("creates the parent directory; refuses a relative path", async () => {
    const path = join(dir, "nested", "deeper", "c.sqlite");
    const s = new SqliteConfigStore({ path });
    assert.equal(s.description, `sqlite ${path}`);
    await s.write([put("k", "v", 1)]);
    await s.close();
    assert.throws(() => new SqliteConfigStore({ path: "relative/c.sqlite" }), /absolute/);
  });

  test("two threads (connections of their own) writing one file concurrently: 40 unique revisions", async () => {
    const path = newPath();
    new SqliteConfigStore({ path }).close();
    const moduleUrl = new URL("../../src/control/store-sqlite.js", import.meta.url).href;
    const code = `
      const { parentPort, workerData } = require("node:worker_threads");
      import(workerData.moduleUrl).then(async ({ SqliteConfigStore }) => {
        const s = new SqliteConfigStore({ path: workerData.path });
        const revisions = [];
        for (let i = 0; i < 20; i++) revisions.push((await s.write([{ kind: "namespace", name: "contended", spec: { writer: workerData.writer, i } }])).revision);
        await s.close();
        parentPort.postMessage(revisions);
      });`;
    const runWorker = (writer: string) =>
      new Promise<number[]>((resolve, reject) => {
        const w = new Worker(code, { eval: true, workerData: { moduleUrl, path, writer } });
        w.once("message", resolve);
        w.once("error", reject);
        w.once("exit", (c) => c !== 0 && reject(new Error(`worker exited ${c}`)));
      });
    const [ra, rb] = await Promise.all([runWorker("a"), runWorker("b")]);
    const all = [...ra!, ...rb!].sort((x, y) => x - y);
    assert.deepEqual(all, Array.from({ length: 40 }, (_, i) => i + 1));
    const s = new SqliteConfigStore({ path });
    const snap = await s.snapshot();
    await s.close();
    const lastWriter = ra!.includes(40) ? "a" : "b";
    assert.deepEqual(snap, { revision: 40, entries: [e("namespace", "contended", { writer: lastWriter, i: 19 }, 40)] });
  });
});

describe("config store: openConfigStore", () => {
  test("opens each type", async (t) => {
    const m = await openConfigStore({ type: "memory" });
    assert.ok(m instanceof MemoryConfigStore);
    const path = newPath();
    const s = await openConfigStore({ type: "sqlite", path });
    assert.ok(s instanceof SqliteConfigStore);
    assert.equal(s.description, `sqlite ${path}`);
    const p = await openConfigStore({ type: "postgres", url: "postgres://u:pw@127.0.0.1:1/x", table: "my_cfg" });
    assert.ok(p instanceof PostgresConfigStore);
    assert.equal(p.description, "postgres://u:***@127.0.0.1:1/x (table my_cfg)");
    await Promise.all([m.close(), s.close(), p.close()]);
    await assert.rejects(openConfigStore({ type: "sqlite", path: "relative.sqlite" }), /config store sqlite relative\.sqlite: path must be an absolute/);
    await assert.rejects(openConfigStore({ type: "bogus" } as never), /unknown type "bogus"/);
    t.diagnostic("ok");
  });

  test("a process on the memory store loads neither pg nor better-sqlite3", () => {
    const storesUrl = new URL("../../src/control/stores.js", import.meta.url).href;
    const script = (type: string) => `
      import { createRequire } from "node:module";
      const { openConfigStore } = await import(${JSON.stringify(storesUrl)});
      const spec = ${type === "memory" ? `{ type: "memory" }` : `{ type: "sqlite", path: ${JSON.stringify(newPath())} }`};
      const s = await openConfigStore(spec);
      await s.write([{ kind: "k", name: "n", spec: 1 }]);
      await s.close();
      const loaded = Object.keys(createRequire(import.meta.url).cache).filter((f) => /node_modules[\\\\/](pg|better-sqlite3)[\\\\/]/.test(f));
      console.log(JSON.stringify(loaded.map((f) => f.includes("better-sqlite3") ? "better-sqlite3" : "pg")));`;
    const loadedBy = (type: string): string[] => {
      const r = spawnSync(process.execPath, ["--input-type=module", "-e", script(type)], { encoding: "utf8" });
      assert.equal(r.status, 0, r.stderr);
      return [...new Set(JSON.parse(r.stdout.trim()) as string[])];
    };
    assert.deepEqual(loadedBy("memory"), []);
    // The check can see a load: the sqlite store does load better-sqlite3 (and still not pg).
    assert.deepEqual(loadedBy("sqlite"), ["better-sqlite3"]);
  });
});
