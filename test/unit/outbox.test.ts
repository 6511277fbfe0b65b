/**
 * keyvalue_outbox claims and the outbox pattern's configuration, plus the
 * relay's handling of a message the messaging backend refuses for good
 * (parked, not retried forever, the key's later messages go on): real parts,
 * a sqlite store and PostgreSQL pub/sub (which refuses NOTIFY payloads above
 * 8000 bytes).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
import pg from "pg";
import { loadAllDrivers } from "../../src/backends/registry.js";
import { INTERFACES, PATTERN_ONLY_INTERFACES } from "../../src/core/interfaces.js";
import { MemKeyValue } from "../../src/backends/memstore/keyvalue.js";
import { NatsKeyValue } from "../../src/backends/nats/keyvalue.js";
import { PgKeyValue } from "../../src/backends/postgres/keyvalue.js";
import { RedisKeyValue } from "../../src/backends/redis/keyvalue.js";
import { SqliteKeyValue } from "../../src/backends/sqlite/keyvalue.js";
import { patternByName } from "../../src/patterns/registry.js";
import { validateConfig } from "../../src/config/load.js";
import { startServer } from "../../src/server.js";
import { SUITES, UNCLAIMED } from "../acceptance/suites/index.js";
import { connect } from "@prism/client";

const KV_CLASSES: Record<string, { prototype: object }> = {
  memstore: MemKeyValue,
  nats: NatsKeyValue,
  postgres: PgKeyValue,
  redis: RedisKeyValue,
  sqlite: SqliteKeyValue,
};
const OUTBOX_METHODS = ["setWithMessage", "deleteWithMessage", "outboxRelay"];

async function configProblem(namespace: Record<string, unknown>): Promise<string> {
  try {
    await validateConfig({ server: { allowed_paths: [tmpdir()] }, namespaces: [{ name: "o", ...namespace }] }, "test");
  } catch (e) {
    return (e as Error).message;
  }
  return "";
}

describe("keyvalue_outbox claims", () => {
  it("a driver claims keyvalue_outbox exactly when its KeyValue store implements the outbox methods (postgres, sqlite)", async () => {
    assert.ok(INTERFACES.includes("keyvalue_outbox"));
    const claimers: string[] = [];
    for (const d of await loadAllDrivers()) {
      const claims = d.interfaces.includes("keyvalue_outbox");
      if (claims) claimers.push(d.type);
      const cls = KV_CLASSES[d.type];
      if (!d.interfaces.includes("keyvalue_basic")) {
        assert.equal(claims, false, `${d.type} has no KeyValue, so no outbox`);
        continue;
      }
      assert.ok(cls, `a KeyValue class for ${d.type}`);
      for (const m of OUTBOX_METHODS) {
        const has = typeof (cls.prototype as Record<string, unknown>)[m] === "function";
        assert.equal(has, claims, `${d.type}: ${m} ${has ? "implemented" : "missing"} but keyvalue_outbox ${claims ? "claimed" : "not claimed"}`);
      }
    }
    assert.deepEqual(claimers.sort(), ["postgres", "sqlite"]);
  });

  it("the acceptance harness has a suite and a refusal check for it; plain namespaces never serve it", () => {
    assert.equal(typeof SUITES.keyvalue_outbox, "function");
    assert.equal(typeof UNCLAIMED.keyvalue_outbox, "function");
    assert.ok(PATTERN_ONLY_INTERFACES.has("keyvalue_outbox"));
    const slots = patternByName("outbox")!.slots;
    assert.deepEqual(slots.find((s) => s.name === "store")!.requires, ["keyvalue_basic", "keyvalue_outbox"]);
    assert.ok(!patternByName("keyvalue")!.slots[0]!.optional.includes("keyvalue_outbox"), "the keyvalue pattern does not use it");
  });
});

describe("outbox configuration", () => {
  const sqlite = { type: "sqlite", path: join(tmpdir(), `prism-outbox-unit-${process.pid}.db`) };
  it("refuses a store without keyvalue_outbox, naming slot and interface", async () => {
    const msg = await configProblem({ pattern: "outbox", slots: { store: { type: "memstore" }, messaging: { type: "memstore" } } });
    assert.match(msg, /slots\.store: backend "memstore" does not implement keyvalue_outbox, required by pattern outbox/);
  });
  it("judges the messaging slot by deliver_to: pubsub needs pubsub_basic, queue needs queue_basic", async () => {
    assert.equal(await configProblem({ pattern: "outbox", slots: { store: sqlite, messaging: { type: "mqtt", url: "mqtt://127.0.0.1:1883" } } }), "");
    const q = await configProblem({ pattern: "outbox", slots: { store: sqlite, messaging: { type: "mqtt", url: "mqtt://127.0.0.1:1883" } }, options: { deliver_to: "queue" } });
    assert.match(q, /slots\.messaging: backend "mqtt" does not implement queue_basic, required by pattern outbox/);
  });
  it("validates options (deliver_to, poll_interval_ms, unknown keys)", async () => {
    assert.match(await configProblem({ pattern: "outbox", slots: { store: sqlite, messaging: { type: "memstore" } }, options: { deliver_to: "stream" } }), /options\.deliver_to/);
    assert.match(await configProblem({ pattern: "outbox", slots: { store: sqlite, messaging: { type: "memstore" } }, options: { poll_interval_ms: 0 } }), /options\.poll_interval_ms/);
    assert.match(await configProblem({ pattern: "outbox", slots: { store: sqlite, messaging: { type: "memstore" } }, options: { bogus: 1 } }), /options/);
    assert.match(await configProblem({ pattern: "outbox", primitives: ["keyvalue"], slots: { store: sqlite, messaging: { type: "memstore" } } }), /pattern outbox serves keyvalue, pubsub, queue/);
  });
});

describe("outbox relay: a message refused for good is parked", () => {
  it("a NOTIFY payload above 8000 bytes is parked (kept, counted), the key's next message goes out", async (t) => {
    const PG = process.env.POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
    const reachable = await new pg.Client({ connectionString: PG }).connect().then(
      (c) => (void c.end(), true),
      () => false,
    );
    if (!reachable) return t.skip(`no PostgreSQL at ${PG}`);
    const path = join(tmpdir(), `prism-outbox-park-${process.pid}-${randomBytes(3).toString("hex")}.db`);
    const schema = `prism_outbox_park_${process.pid}`;
    const config = await validateConfig(
      {
        server: { allowed_paths: [tmpdir()] },
        namespaces: [{ name: "park", pattern: "outbox", slots: { store: { type: "sqlite", path }, messaging: { type: "postgres", url: PG, schema } } }],
      },
      "test",
    );
    const srv = await startServer({ config, grpcPort: 0, httpPort: 0, log: () => {} });
    const client = await connect(`ws://127.0.0.1:${srv.httpPort}`);
    try {
      const sub = client.pubsub("park").subscribe("t");
      await sub.ready;
      const kv = client.kv("park");
      await kv.set("k", "big", { message: { topic: "t", payload: new Uint8Array(9000), attributes: { n: "1" } } });
      await kv.set("k", "small", { message: { topic: "t", payload: "after", attributes: { n: "2" } } });
      const it = (sub as AsyncIterable<{ payload: Uint8Array; attributes: Record<string, string> }>)[Symbol.asyncIterator]();
      const first = await Promise.race([it.next(), sleep(5000).then(() => undefined)]);
      assert.ok(first && !first.done, "the next message arrives");
      assert.equal(Buffer.from(first.value.payload).toString(), "after");
      const counters = srv.router.get("park")!.patternCounters!;
      assert.equal(counters.parked, 1);
      assert.equal(counters.published, 1);
      assert.equal(counters.pending, 0);
      await sub.close();
      const db = new Database(path, { readonly: true });
      const rows = db.prepare("SELECT id, sent_at, failed_at, error FROM prism_outbox WHERE ns = 'park' ORDER BY id").all() as { sent_at: number | null; failed_at: number | null; error: string | null }[];
      db.close();
      assert.equal(rows.length, 2);
      assert.ok(rows[0]!.failed_at !== null && rows[0]!.sent_at === null && /payload/.test(rows[0]!.error ?? ""), JSON.stringify(rows[0]));
      assert.ok(rows[1]!.sent_at !== null && rows[1]!.failed_at === null);
    } finally {
      await client.close().catch(() => {});
      await srv.close();
      ["", "-wal", "-shm"].forEach((s) => rmSync(path + s, { force: true }));
      const c = new pg.Client({ connectionString: PG });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await c.end();
    }
  });
});
