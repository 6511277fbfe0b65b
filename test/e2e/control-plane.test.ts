/**
 * The control plane end to end: Admin over HTTP (as curl would send it) with
 * structured entries and dry runs, named backend instances shared by
 * namespaces, optional interfaces on a slot, in-flight calls across a change,
 * restart durability on the default SQLite store (SIGKILL), and two Prism
 * processes converging through one PostgreSQL store.
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { startServer, type RunningServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { freePort, startPrism, type PrismProcess } from "./serve-process.js";
import { TcpProxy } from "../unit/tcp-proxy.js";

const PG_URL = process.env.POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const NATS = process.env.NATS_URL ?? "nats://127.0.0.1:4222";

async function call(port: number, method: string, body: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(`http://127.0.0.1:${port}/v1/${method}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : {} };
}

const b64 = (s: string) => Buffer.from(s).toString("base64");

describe("Admin: structured entries, dry runs, backend instances, patterns (HTTP, in-process)", () => {
  let srv: RunningServer;
  const dir = mkdtempSync(join(tmpdir(), "prism-cp-"));
  before(async () => {
    const config = await validateConfig(
      {
        server: { data_dir: dir },
        backends: { shared: { type: "memstore" }, events: { type: "nats", servers: NATS, prefix: `cp${process.pid}` } },
        namespaces: [
          { name: "one", pattern: "keyvalue", backend: "shared" },
          { name: "two", primitives: ["keyvalue", "queue"], backend: "shared" },
        ],
      },
      "control-plane-test",
    );
    srv = await startServer({ config, grpcPort: 0, httpPort: 0, log: () => {} });
  });
  after(async () => {
    await srv?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("namespaces naming one instance share its pool and its breaker", () => {
    assert.equal(srv.router.instanceCount, 1);
    assert.ok(srv.router.breakerOf("one"));
    assert.equal(srv.router.breakerOf("one"), srv.router.breakerOf("two"));
    assert.equal(srv.router.instanceOf("one"), srv.router.instanceOf("two"));
  });

  it("a dry run validates and explains the automatic choice without applying; the real apply stores a revision", async () => {
    const entry = { name: "auto-kv", pattern: "keyvalue", backend: { auto: true }, needs: { ttl: "required" } };
    const dry = await call(srv.httpPort, "Admin/ApplyNamespace", { namespace: entry, dry_run: true });
    assert.equal(dry.status, 200, JSON.stringify(dry.json));
    assert.equal(dry.json.applied, false);
    assert.equal(dry.json.namespace.slots[0].instance, "shared");
    assert.match(dry.json.namespace.explanation[0], /^slot keyvalue: chose backend "shared" \(memstore\)/);
    assert.ok(dry.json.namespace.explanation.some((l: string) => /^rejected backend "events" \(nats\): ttl: required, but nats does not implement keyvalue_ttl/.test(l)));
    assert.equal((await call(srv.httpPort, "Admin/GetNamespace", { name: "auto-kv" })).status, 404);

    const real = await call(srv.httpPort, "Admin/ApplyNamespace", { namespace: entry });
    assert.equal(real.status, 200, JSON.stringify(real.json));
    assert.equal(real.json.applied, true);
    assert.equal(real.json.created, true);
    assert.ok(real.json.revision > 0);
    const got = await call(srv.httpPort, "Admin/GetNamespace", { name: "auto-kv" });
    assert.equal(got.json.revision, real.json.revision);
    assert.deepEqual(got.json.slots.map((s: any) => [s.slot, s.instance, s.backend_type ?? s.backendType, s.auto]), [["keyvalue", "shared", "memstore", true]]);
    assert.equal((await call(srv.httpPort, "KeyValue/Set", { namespace: "auto-kv", key: "k", value: b64("v"), ttl_seconds: 60 })).status, 200);
    const v = await call(srv.httpPort, "KeyValue/Get", { namespace: "auto-kv", key: "k" });
    assert.equal(Buffer.from(v.json.value, "base64").toString(), "v");
  });

  it("bad entries are refused with INVALID_ARGUMENT naming the field; the older YAML `config` still works", async () => {
    const bad = await call(srv.httpPort, "Admin/ApplyNamespace", { namespace: { name: "x", pattern: "keyvalue", slots: { keyvalue: "events" }, needs: { persistence: "required", ttl: "required" } } });
    assert.equal(bad.status, 400);
    assert.match(bad.json.error.message, /^namespace: needs: backend "events" \(nats\) for slot "keyvalue": ttl: required, but nats does not implement keyvalue_ttl/);
    const none = await call(srv.httpPort, "Admin/ApplyNamespace", {});
    assert.equal(none.status, 400);
    assert.match(none.json.error.message, /^namespace: must hold the namespace entry/);
    const yaml = await call(srv.httpPort, "Admin/ApplyNamespace", { config: "name: y\nprimitives: [queue]\nbackend: shared\n" });
    assert.equal(yaml.status, 200, JSON.stringify(yaml.json));
    assert.deepEqual(yaml.json.namespace.primitives, ["queue"]);
  });

  it("an optional interface the slot's backend lacks → FAILED_PRECONDITION naming the slot's backend", async () => {
    const r = await call(srv.httpPort, "Admin/ApplyNamespace", { namespace: { name: "on-nats", pattern: "keyvalue", slots: { keyvalue: "events" } } });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal((await call(srv.httpPort, "KeyValue/Set", { namespace: "on-nats", key: "a", value: b64("1") })).status, 200);
    const ttl = await call(srv.httpPort, "KeyValue/Set", { namespace: "on-nats", key: "a", value: b64("1"), ttl_seconds: 5 });
    assert.equal(ttl.status, 412);
    assert.equal(ttl.json.error.status, "FAILED_PRECONDITION");
    assert.match(ttl.json.error.message, /namespace "on-nats": backend "events" \(nats\) in slot "keyvalue" does not implement keyvalue_ttl/);
    await call(srv.httpPort, "Admin/DeleteNamespace", { name: "on-nats" });
  });

  it("backend instances: apply, list with their namespaces, delete refused while used, then allowed", async () => {
    const put = await call(srv.httpPort, "Admin/ApplyBackend", { name: "lite", backend: { type: "sqlite", path: "lite.db" } });
    assert.equal(put.status, 200, JSON.stringify(put.json));
    assert.equal(put.json.created, true);
    await call(srv.httpPort, "Admin/ApplyNamespace", { namespace: { name: "on-lite", primitives: ["keyvalue"], backend: "lite" } });
    const list = await call(srv.httpPort, "Admin/ListBackendInstances", {});
    const lite = list.json.backends.find((b: any) => b.name === "lite");
    assert.deepEqual(lite.namespaces, ["on-lite"]);
    assert.equal(JSON.parse(lite.options_json ?? lite.optionsJson).path, join(dir, "lite.db"));
    const refused = await call(srv.httpPort, "Admin/DeleteBackend", { name: "lite" });
    assert.equal(refused.status, 412);
    assert.match(refused.json.error.message, /backend "lite" is used by namespace "on-lite"/);
    // Changing the instance so that a namespace using it no longer resolves is refused too.
    const incompatible = await call(srv.httpPort, "Admin/ApplyBackend", { name: "lite", backend: { type: "mqtt" } });
    assert.equal(incompatible.status, 412);
    assert.match(incompatible.json.error.message, /namespace "on-lite": .*lacks keyvalue_basic/);
    await call(srv.httpPort, "Admin/DeleteNamespace", { name: "on-lite" });
    const del = await call(srv.httpPort, "Admin/DeleteBackend", { name: "lite" });
    assert.equal(del.status, 200, JSON.stringify(del.json));
    assert.equal(del.json.deleted, true);
    assert.ok(!(await call(srv.httpPort, "Admin/ListBackendInstances", {})).json.backends.some((b: any) => b.name === "lite"));
  });

  it("ListPatterns lists each pattern, its slots and their interface requirements", async () => {
    const r = await call(srv.httpPort, "Admin/ListPatterns", {});
    assert.equal(r.status, 200);
    const kv = r.json.patterns.find((p: any) => p.name === "keyvalue");
    assert.deepEqual(kv.slots[0].requires, ["keyvalue_basic"]);
    assert.deepEqual(kv.slots[0].optional, ["keyvalue_ttl", "keyvalue_scan", "keyvalue_batch", "keyvalue_cas"]);
    assert.deepEqual(r.json.patterns.map((p: any) => p.name), ["keyvalue", "pubsub", "queue", "stream", "cache-aside", "multicast-registry", "outbox", "claim-check"]);
  });

  it("a call in flight when its namespace moves to another backend finishes on the backend it started on", async () => {
    await call(srv.httpPort, "Admin/ApplyNamespace", { namespace: { name: "moving", primitives: ["queue"], backend: { type: "sqlite", path: "moving-a.db" } } });
    const started = Date.now();
    const poll = call(srv.httpPort, "Queue/Dequeue", { namespace: "moving", queue: "q", wait_seconds: 2 });
    await sleep(300);
    const moved = await call(srv.httpPort, "Admin/ApplyNamespace", { namespace: { name: "moving", primitives: ["queue"], backend: { type: "sqlite", path: "moving-b.db" } } });
    assert.equal(moved.status, 200);
    const r = await poll;
    // The old file stays open for the poll: it ends by its wait (empty), not with an error from a closed database.
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.deepEqual(r.json.messages ?? [], []);
    assert.ok(Date.now() - started >= 1500);
  });
});

describe("restart durability on the default SQLite config store", () => {
  for (const workers of ["1", "2"]) it(`ApplyNamespace, SIGKILL, restart on the same data directory: the namespace serves with its data (--workers ${workers})`, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "prism-restart-"));
    const env = { PRISM_DATA_DIR: dataDir };
    let p: PrismProcess | undefined;
    try {
      p = await startPrism(["--workers", workers, "--grpc-port", String(await freePort()), "--http-port", String(await freePort())], { env, cwd: dataDir });
      const applied = await call(p.httpPort, "Admin/ApplyNamespace", { namespace: { name: "kept", primitives: ["keyvalue"], backend: { type: "sqlite", path: "kept.db" } } });
      assert.equal(applied.status, 200, JSON.stringify(applied.json));
      assert.equal((await call(p.httpPort, "KeyValue/Set", { namespace: "kept", key: "k", value: b64("survives") })).status, 200);
      // With workers, only the primary is killed; its workers see the IPC channel close and exit.
      p.child.kill("SIGKILL");
      await new Promise((r) => p!.child.once("exit", r));
      p = await startPrism(["--workers", workers, "--grpc-port", String(await freePort()), "--http-port", String(await freePort())], { env, cwd: dataDir });
      const got = await call(p.httpPort, "KeyValue/Get", { namespace: "kept", key: "k" });
      assert.equal(got.status, 200, JSON.stringify(got.json));
      assert.equal(Buffer.from(got.json.value, "base64").toString(), "survives");
      const ns = await call(p.httpPort, "Admin/GetNamespace", { name: "kept" });
      assert.equal(ns.json.revision, applied.json.revision);
    } finally {
      await p?.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe("two Prism processes sharing a PostgreSQL config store", () => {
  const table = `prism_cfg_t${process.pid}_${randomUUID().slice(0, 6)}`;
  const dir = mkdtempSync(join(tmpdir(), "prism-fleet-"));
  let a: PrismProcess | undefined;
  let b: PrismProcess | undefined;
  before(async () => {
    const cfg = join(dir, "prism.yaml");
    writeFileSync(cfg, `server:\n  config_store: { type: postgres, url: ${JSON.stringify(PG_URL)}, table: ${table} }\nbackends:\n  cache: { type: redis, key_prefix: fleet${process.pid} }\nnamespaces: []\n`);
    a = await startPrism(["--workers", "1", "--config", cfg, "--grpc-port", "0", "--http-port", "0"]);
    b = await startPrism(["--workers", "1", "--config", cfg, "--grpc-port", "0", "--http-port", "0"]);
  });
  after(async () => {
    await a?.stop();
    await b?.stop();
    const c = new pg.Client({ connectionString: PG_URL });
    await c.connect();
    await c.query(`DROP TABLE IF EXISTS ${table}_entries, ${table}_revision`);
    await c.end();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Polls until `f` holds, for at most `ms`; returns how long it took. */
  async function within(ms: number, f: () => Promise<boolean>): Promise<number> {
    const t0 = Date.now();
    for (;;) {
      if (await f()) return Date.now() - t0;
      if (Date.now() - t0 > ms) throw new Error(`not within ${ms} ms`);
      await sleep(25);
    }
  }

  it("apply through one, call through the other within 2 s; delete through the other, NOT_FOUND through the first", async () => {
    const r = await call(a!.httpPort, "Admin/ApplyNamespace", { namespace: { name: "fleet-kv", pattern: "keyvalue", backend: "cache" } });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    await within(2000, async () => (await call(b!.httpPort, "KeyValue/Set", { namespace: "fleet-kv", key: "k", value: b64("from-b") })).status === 200);
    const got = await call(a!.httpPort, "KeyValue/Get", { namespace: "fleet-kv", key: "k" });
    assert.equal(Buffer.from(got.json.value, "base64").toString(), "from-b");
    assert.equal((await call(b!.httpPort, "Admin/DeleteNamespace", { name: "fleet-kv" })).json.deleted, true);
    await within(2000, async () => (await call(a!.httpPort, "KeyValue/Get", { namespace: "fleet-kv", key: "k" })).status === 404);
  });

  it("conflicting concurrent applies: both instances end on the later revision", async () => {
    const [ra, rb] = await Promise.all([
      call(a!.httpPort, "Admin/ApplyNamespace", { namespace: { name: "race", primitives: ["keyvalue"], backend: "cache", limits: { max_value_bytes: 111 } } }),
      call(b!.httpPort, "Admin/ApplyNamespace", { namespace: { name: "race", primitives: ["keyvalue"], backend: "cache", limits: { max_value_bytes: 222 } } }),
    ]);
    assert.equal(ra.status, 200);
    assert.equal(rb.status, 200);
    assert.notEqual(ra.json.revision, rb.json.revision);
    const winner = ra.json.revision > rb.json.revision ? 111 : 222;
    const latest = Math.max(ra.json.revision, rb.json.revision);
    for (const p of [a!, b!]) {
      await within(2000, async () => (await call(p.httpPort, "Admin/GetNamespace", { name: "race" })).json.revision === latest);
      const ns = await call(p.httpPort, "Admin/GetNamespace", { name: "race" });
      assert.equal(JSON.parse(ns.json.config_json ?? ns.json.configJson).limits.max_value_bytes, winner);
    }
  });
});

describe("a config store that goes away", () => {
  it("Admin changes answer UNAVAILABLE naming the store, data calls keep serving, and changes work again once it is back", async () => {
    const table = `prism_cfg_o${process.pid}_${randomUUID().slice(0, 6)}`;
    const proxy = new TcpProxy("127.0.0.1", Number(new URL(PG_URL).port || 5432));
    const port = await proxy.start();
    const url = new URL(PG_URL);
    url.port = String(port);
    const config = await validateConfig(
      { server: { config_store: { type: "postgres", url: url.toString(), table } }, namespaces: [{ name: "steady", primitives: ["keyvalue"], backend: { type: "memstore" } }] },
      "outage-test",
    );
    const srv = await startServer({ config, grpcPort: 0, httpPort: 0, log: () => {} });
    try {
      await proxy.cut();
      const r = await call(srv.httpPort, "Admin/ApplyNamespace", { namespace: { name: "later", primitives: ["keyvalue"], backend: { type: "memstore" } } });
      assert.equal(r.status, 503, JSON.stringify(r.json));
      assert.equal(r.json.error.status, "UNAVAILABLE");
      assert.match(r.json.error.message, new RegExp(`config store postgres://postgres@127\\.0\\.0\\.1:${port}/test \\(table ${table}\\)`));
      // The namespaces already applied keep serving from their own backend.
      assert.equal((await call(srv.httpPort, "KeyValue/Set", { namespace: "steady", key: "k", value: b64("v") })).status, 200);
      assert.equal((await call(srv.httpPort, "Admin/GetNamespace", { name: "later" })).status, 404);
      await proxy.restore();
      let ok = { status: 0, json: {} as any };
      for (let i = 0; i < 100 && ok.status !== 200; i++) {
        ok = await call(srv.httpPort, "Admin/ApplyNamespace", { namespace: { name: "later", primitives: ["keyvalue"], backend: { type: "memstore" } } });
        if (ok.status !== 200) await sleep(100);
      }
      assert.equal(ok.status, 200, JSON.stringify(ok.json));
      // The new namespace serves (an unknown one would be 404).
      assert.equal((await call(srv.httpPort, "KeyValue/Get", { namespace: "later", key: "nothing" })).status, 200);
    } finally {
      await srv.close();
      await proxy.close();
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`DROP TABLE IF EXISTS ${table}_entries, ${table}_revision`);
      await c.end();
    }
  });
});
