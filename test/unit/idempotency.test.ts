/**
 * Idempotency keys below the wire: the token (scope, request hash, limits),
 * the in-memory records (memstore), the SQLite records (rolled back with a
 * failed write, swept when expired), and the backend-kept records of
 * PostgreSQL and Redis seen by two separate instances at once, as two Prism
 * processes on one database would be: 20 concurrent duplicates split over
 * both run the write once.
 */
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createConnection } from "node:net";
import pg from "pg";
import Database from "better-sqlite3";
import { Redis } from "ioredis";
import { ManualClock, systemClock } from "../../src/core/clock.js";
import { PrismError } from "../../src/core/errors.js";
import type { BackendInstance, IdempotencyToken, NamespaceLimits, NamespaceStores } from "../../src/backends/driver.js";
import { DEFAULT_LIMITS } from "../../src/config/defaults.js";
import { idempotencyToken, onceResult } from "../../src/primitives/idempotency.js";
import { MemIdempotency } from "../../src/backends/common/idempotency-memory.js";
import { loadDriver } from "../../src/backends/registry.js";
import { deleteRedisPrefix } from "../helpers/redis-cleanup.js";
import type { NamespaceRuntime } from "../../src/router/router.js";

const run = `${process.pid}_${randomBytes(3).toString("hex")}`;
const PG = process.env.POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const REDIS = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const limits: NamespaceLimits = { ...DEFAULT_LIMITS };

/** Just enough of a namespace runtime for idempotencyToken (claims and limits). */
function fakeNs(claims: string[], window?: number): NamespaceRuntime {
  return { name: "n", interfaces: new Set(claims), limits: { ...limits, idempotencyWindowSeconds: window }, slots: [], backendType: "memstore" } as unknown as NamespaceRuntime;
}

function reachable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: "127.0.0.1", port }, () => (s.destroy(), resolve(true)));
    s.on("error", () => resolve(false));
  });
}

describe("idempotencyToken", () => {
  const ns = fakeNs(["queue_idempotent", "keyvalue_idempotent"], 60);
  test("no key: no token; a key: scoped by operation and target, window from the namespace", () => {
    assert.equal(idempotencyToken(ns, "queue_idempotent", "enqueue", "q", "", []), undefined);
    const a = idempotencyToken(ns, "queue_idempotent", "enqueue", "q", "k", [new Uint8Array([1])])!;
    const b = idempotencyToken(ns, "queue_idempotent", "enqueue", "q2", "k", [new Uint8Array([1])])!;
    assert.notEqual(a.key, b.key, "another queue is another scope");
    assert.equal(a.windowMs, 60_000);
    assert.equal(idempotencyToken(fakeNs(["queue_idempotent"]), "queue_idempotent", "enqueue", "q", "k", [])!.windowMs, 86_400_000, "default 24 h");
  });
  test("the hash covers the request; attribute order does not count; parts do not run together", () => {
    const h = (parts: Parameters<typeof idempotencyToken>[5]) => idempotencyToken(ns, "queue_idempotent", "enqueue", "q", "k", parts)!.requestHash;
    assert.equal(h([new Uint8Array([1, 2]), { a: "1", b: "2" }, 0]), h([new Uint8Array([1, 2]), { b: "2", a: "1" }, 0]));
    assert.notEqual(h([new Uint8Array([1, 2]), {}, 0]), h([new Uint8Array([1, 2]), {}, 5]));
    assert.notEqual(h(["ab", "c"]), h(["a", "bc"]));
    assert.notEqual(h([undefined]), h([""]), "absent and empty differ by tag");
  });
  test("a key over 255 bytes → INVALID_ARGUMENT; an unclaimed interface → FAILED_PRECONDITION", () => {
    assert.throws(() => idempotencyToken(ns, "queue_idempotent", "enqueue", "q", "é".repeat(128), []), (e: PrismError) => e.code === 3 && /idempotency_key/.test(e.message));
    assert.throws(() => idempotencyToken(ns, "stream_idempotent", "append", "s", "k", []), (e: PrismError) => e.code === 9 && /stream_idempotent/.test(e.message));
  });
  test("a replay with another hash is refused, naming the key", () => {
    const t = idempotencyToken(ns, "queue_idempotent", "enqueue", "q", "order-1", ["x"])!;
    assert.equal(onceResult({ result: "1", replayedHash: t.requestHash }, t), "1");
    assert.throws(() => onceResult({ result: "1", replayedHash: "other" }, t), (e: PrismError) => e.code === 9 && e.reason === "PRISM_ERR_IDEMPOTENCY_KEY_REUSED" && /order-1/.test(e.message));
  });
});

describe("MemIdempotency", () => {
  const token = (key: string, windowMs = 1000): IdempotencyToken => ({ key, requestHash: "h", windowMs });
  test("concurrent duplicates run once; a failed write records nothing; expiry and sweep", async () => {
    const clock = new ManualClock();
    const m = new MemIdempotency(clock);
    let runs = 0;
    const effect = async () => {
      await new Promise((r) => setTimeout(r, 5));
      return ++runs;
    };
    const all = await Promise.all(Array.from({ length: 20 }, () => m.run(token("a"), effect)));
    assert.equal(runs, 1);
    assert.deepEqual(new Set(all.map((o) => o.result)), new Set([1]));
    assert.equal(all.filter((o) => o.replayedHash === undefined).length, 1, "one fresh answer, 19 replays");
    await assert.rejects(m.run(token("b"), async () => Promise.reject(new Error("down"))));
    assert.equal((await m.run(token("b"), effect)).replayedHash, undefined, "the failure left no record");
    clock.advance(1000);
    assert.equal(m.sweep(clock.now(), 100), 2);
    assert.equal((await m.run(token("a"), effect)).result, 3, "expired: runs again");
  });
});

async function stores(type: string, options: Record<string, unknown>, clock = systemClock): Promise<{ inst: BackendInstance; ns: (n: string) => NamespaceStores }> {
  const d = await loadDriver(type);
  const inst = d.create(options as never, { clock, log: () => {} });
  return { inst, ns: (n) => inst.namespace(n, limits) };
}

describe("sqlite records", () => {
  const dir = mkdtempSync(join(tmpdir(), `prism-idem-${run}-`));
  after(() => rmSync(dir, { recursive: true, force: true }));
  test("a refused write (CAS) rolls its record back; expired records are swept", async () => {
    const clock = new ManualClock();
    const { inst, ns } = await stores("sqlite", { path: join(dir, "a.db"), busy_timeout_ms: 5000, synchronous: "full" }, clock);
    try {
      const kv = ns("n").keyvalue!;
      const t: IdempotencyToken = { key: "set:k", requestHash: "h", windowMs: 1000 };
      await assert.rejects(kv.setOnce!("k", new Uint8Array([1]), { expectedVersion: 7 }, t), (e: PrismError) => e.reason === "PRISM_ERR_CAS_CONFLICT");
      const first = await kv.setOnce!("k", new Uint8Array([1]), {}, t);
      assert.equal(first.replayedHash, undefined, "the refusal recorded nothing");
      assert.deepEqual(await kv.setOnce!("k", new Uint8Array([2]), {}, t), { result: first.result, replayedHash: "h" });
      const records = () => {
        const db = new Database(join(dir, "a.db"), { readonly: true });
        try {
          return (db.prepare("SELECT count(*) AS n FROM prism_idempotency").get() as { n: number }).n;
        } finally {
          db.close();
        }
      };
      assert.equal(records(), 1);
      clock.advance(1000);
      (inst as unknown as { sweep(): number }).sweep();
      assert.equal(records(), 0, "the sweep deleted the expired record");
      const again = await kv.setOnce!("k", new Uint8Array([3]), {}, t);
      assert.equal(again.replayedHash, undefined, "expired and swept: a first call again");
      assert.ok(again.result > first.result);
    } finally {
      await inst.close();
    }
  });
});

describe("records kept in the backend, seen by two instances (two Prism processes)", async () => {
  const pgUp = await reachable(5432);
  const redisUp = await reachable(6379);
  const schema = `prism_idem_${run}`;
  const prefix = `prism-idem-${run}`;
  after(async () => {
    if (pgUp) {
      const c = new pg.Client({ connectionString: PG });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await c.end();
    }
    if (redisUp) {
      const r = new Redis(REDIS);
      await deleteRedisPrefix(r, prefix);
      r.disconnect();
    }
  });

  const cases: [string, boolean, Record<string, unknown>][] = [
    ["postgres", pgUp, { url: PG, schema, pool_max: 8 }],
    ["redis", redisUp, { url: REDIS, key_prefix: prefix }],
  ];
  for (const [type, up, options] of cases) {
    test(`${type}: 20 concurrent keyed enqueues over two instances → one message`, { skip: up ? undefined : `no ${type}` }, async () => {
      const a = await stores(type, options);
      const b = await stores(type, options);
      try {
        const qa = a.ns("n").queue!;
        const qb = b.ns("n").queue!;
        const t: IdempotencyToken = { key: `enqueue:jobs:${run}`, requestHash: "h", windowMs: 60_000 };
        const outs = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? qa : qb).enqueueOnce!("jobs", new Uint8Array([7]), {}, 0, t)));
        assert.equal(new Set(outs.map((o) => o.result)).size, 1);
        assert.equal(outs.filter((o) => o.replayedHash === undefined).length, 1);
        const got = await qa.dequeue("jobs", { maxMessages: 10, visibilityTimeoutMs: 30_000, waitMs: 0 });
        assert.equal(got.length, 1, "one message");
        assert.equal(got[0]!.messageId, outs[0]!.result);
      } finally {
        await a.inst.close();
        await b.inst.close();
      }
    });
  }
});
