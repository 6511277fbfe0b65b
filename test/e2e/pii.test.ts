// pii: encrypt (src/pii) against the real backends, and secrets from files
// and env (src/config/secrets.ts).
//
// - A value set through Prism on a Redis and on a PostgreSQL namespace is
//   ciphertext when read straight from Redis (ioredis) and PostgreSQL (pg),
//   never containing the plaintext; Get, Scan, Dequeue and Read through Prism
//   answer plaintext.
// - KEK rotation: a process whose security.kek is the new KEK, with the old
//   one in previous_keks, reads the old values; `prism keys rotate` re-wraps
//   the data keys (the data is not rewritten); then a second Prism process
//   (`prism serve`) sharing the PostgreSQL config store, holding only the new
//   KEK, reads every value.
// - Secrets: a PostgreSQL password from ${file:…} and a Redis password from
//   ${ENV} never show in Admin answers or the log; an unreadable file is a
//   config error naming the field; Admin entries may not read server files.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import pg from "pg";
import { connect } from "@prism/client";
import { startServer } from "../../src/server.js";
import { validateConfig, ConfigError } from "../../src/config/load.js";
import { PostgresConfigStore } from "../../src/control/store-postgres.js";
import { deleteRedisPrefix } from "../helpers/redis-cleanup.js";
import { runPrism, startPrism } from "./serve-process.js";

const PG = "postgres://postgres@127.0.0.1:5432/test";
const tag = randomUUID().replace(/-/g, "").slice(0, 10);
const PLAIN = `card 4111-1111-1111-1111 of alice ${tag}`;
const utf8 = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array | null | undefined) => (b ? Buffer.from(b).toString() : null);

test("pii: encrypt — ciphertext in Redis and PostgreSQL, plaintext through Prism, across KEK rotation and a second process", { timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "prism-pii-"));
  const prefix = `piit${tag}`;
  const schema = `pii_${tag}`;
  const table = `pii_cfg_${tag}`;
  const kek1 = join(dir, "kek1.hex");
  const kek2 = join(dir, "kek2.b64");
  writeFileSync(kek1, randomBytes(32).toString("hex") + "\n");
  writeFileSync(kek2, randomBytes(32).toString("base64"));
  const RKV = `pii-redis-${tag}`;
  const PKV = `pii-pg-${tag}`;
  const doc = (security: object) => ({
    server: { data_dir: dir, config_store: { type: "postgres", url: PG, table }, access_log_sample: 0, metrics: false },
    security,
    backends: {
      cache: { type: "redis", url: "redis://127.0.0.1:6379", key_prefix: prefix },
      main: { type: "postgres", url: PG, schema },
    },
    namespaces: [
      { name: RKV, primitives: ["keyvalue", "queue"], backend: "cache", pii: "encrypt" },
      { name: PKV, primitives: ["keyvalue", "stream"], backend: "main", pii: "encrypt" },
    ],
  });
  const OLD = { kek: { id: "k1", file: kek1 } };
  const BOTH = { kek: { id: "k2", file: kek2 }, previous_keks: [{ id: "k1", file: kek1 }] };
  const NEW = { kek: { id: "k2", file: kek2 } };
  const redis = new Redis("redis://127.0.0.1:6379", { lazyConnect: false });
  const db = new pg.Client({ connectionString: PG });
  await db.connect();
  try {
    // 1. Values written through Prism (KEK k1).
    const a = await startServer({ config: await validateConfig(doc(OLD), "pii-a"), host: "127.0.0.1", grpcPort: 0, httpPort: 0, grpc: false, log: () => {} });
    const c = await connect(`ws://127.0.0.1:${a.httpPort}`);
    try {
      for (const ns of [RKV, PKV]) {
        await c.kv(ns).set("card", utf8(PLAIN));
        await c.kv(ns).set("card2", utf8(`${PLAIN} 2`), { ttl: 3600 });
        assert.equal(text(await c.kv(ns).get("card")), PLAIN, "plaintext through Prism");
        const page = await c.kv(ns).scanPage({ prefix: "card" });
        assert.deepEqual(page.items.map((i) => text(i.value)).sort(), [PLAIN, `${PLAIN} 2`]);
      }
      await c.queue(RKV).enqueue("q", utf8(PLAIN));
      const msgs = await c.queue(RKV).dequeue("q", { max: 1 });
      assert.equal(text(msgs[0]!.payload), PLAIN);
      await c.stream(PKV).append("s", utf8(PLAIN));
      const recs = (await c.stream(PKV).read("s", { from: 1 })).records;
      assert.equal(text(recs[0]!.payload), PLAIN);
    } finally {
      await c.close();
      await a.close();
    }

    // 2. What the backends hold: ciphertext only.
    const plainBytes = Buffer.from(PLAIN);
    const blobs: Buffer[] = [];
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
      for (const k of keys) {
        const type = await redis.type(k);
        if (type === "string") blobs.push((await redis.getBuffer(k))!);
        else if (type === "hash") blobs.push(...Object.values(await redis.hgetallBuffer(k)));
        else if (type === "list") blobs.push(...(await redis.lrangeBuffer(k, 0, -1)));
        else if (type === "zset") blobs.push(...(await redis.zrangeBuffer(k, "0", "-1")));
        else if (type === "stream") for (const [, fields] of (await redis.xrangeBuffer(k, "-", "+")) as unknown as [Buffer, Buffer[]][]) blobs.push(...fields);
      }
      cursor = next;
    } while (cursor !== "0");
    assert.ok(blobs.length > 0, "the Redis namespace holds data");
    for (const b of blobs) assert.equal(b.includes(plainBytes), false, "no plaintext in Redis");
    const redisCipher = blobs.filter((b) => b.length === plainBytes.length + 37 && b[0] === 1);
    assert.ok(redisCipher.length >= 2, `Redis holds the envelope (version 1, +37 bytes): ${redisCipher.length}`);

    const kv = await db.query(`SELECT key, value FROM "${schema}".kv WHERE ns = $1 ORDER BY key`, [PKV]);
    assert.deepEqual(kv.rows.map((r) => r.key), ["card", "card2"]);
    const cardRow = kv.rows[0].value as Buffer;
    assert.equal(cardRow[0], 1);
    assert.equal(cardRow.length, plainBytes.length + 37);
    const tables = await db.query(`SELECT table_name FROM information_schema.tables WHERE table_schema = $1`, [schema]);
    for (const { table_name } of tables.rows) {
      for (const row of (await db.query(`SELECT * FROM "${schema}"."${table_name}"`)).rows) {
        for (const v of Object.values(row)) {
          if (Buffer.isBuffer(v)) assert.equal(v.includes(plainBytes), false, `no plaintext in ${table_name}`);
          else if (typeof v === "string") assert.equal(v.includes(PLAIN), false, `no plaintext in ${table_name}`);
        }
      }
    }
    // The data keys are in the config store, wrapped by k1.
    const store = new PostgresConfigStore({ url: PG, table });
    const keysOf = async () => (await store.snapshot()).entries.filter((e) => e.kind === "datakey").map((e) => e.spec as { namespace: string; kek: string });
    const before = await keysOf();
    assert.deepEqual(before.map((k) => [k.namespace, k.kek]).sort(), [[PKV, "k1"], [RKV, "k1"]]);

    // 3. New KEK current, old one still listed: old values read.
    const b = await startServer({ config: await validateConfig(doc(BOTH), "pii-b"), host: "127.0.0.1", grpcPort: 0, httpPort: 0, grpc: false, log: () => {} });
    const cb = await connect(`ws://127.0.0.1:${b.httpPort}`);
    try {
      for (const ns of [RKV, PKV]) assert.equal(text(await cb.kv(ns).get("card")), PLAIN);
    } finally {
      await cb.close();
      await b.close();
    }

    // 4. prism keys rotate: re-wraps, data untouched.
    const yaml = join(dir, "prism-rotate.yaml");
    writeFileSync(yaml, JSON.stringify(doc(BOTH)));
    const dry = await runPrism(["keys", "rotate", "--config", yaml, "--dry-run"]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /2 of 2 data key\(s\) to re-wrap/);
    assert.deepEqual((await keysOf()).map((k) => k.kek), ["k1", "k1"], "a dry run writes nothing");
    const rot = await runPrism(["keys", "rotate", "--config", yaml]);
    assert.equal(rot.code, 0, rot.stderr);
    assert.match(rot.stdout, /2 of 2 data key\(s\) re-wrapped/);
    assert.deepEqual((await keysOf()).map((k) => k.kek), ["k2", "k2"]);
    const after = await db.query(`SELECT value FROM "${schema}".kv WHERE ns = $1 AND key = 'card'`, [PKV]);
    assert.deepEqual(after.rows[0].value, cardRow, "the data was not rewritten");
    await store.close();

    // 5. A second Prism process on the shared config store, with only the new KEK.
    const yamlNew = join(dir, "prism-new.yaml");
    writeFileSync(yamlNew, JSON.stringify(doc(NEW)));
    const proc = await startPrism(["--config", yamlNew, "--workers", "1", "--grpc-port", "0", "--http-port", "0"]);
    const cp = await connect(`ws://127.0.0.1:${proc.httpPort}`);
    try {
      for (const ns of [RKV, PKV]) {
        assert.equal(text(await cp.kv(ns).get("card")), PLAIN);
        assert.equal(text(await cp.kv(ns).get("card2")), `${PLAIN} 2`);
      }
      assert.equal(text((await cp.stream(PKV).read("s", { from: 1 })).records[0]!.payload), PLAIN);
    } finally {
      await cp.close();
      await proc.stop();
    }
  } finally {
    await deleteRedisPrefix(redis, prefix).catch(() => {});
    redis.disconnect();
    await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
    await db.query(`DROP TABLE IF EXISTS "${table}_entries", "${table}_revision"`).catch(() => {});
    await db.end();
  }
});

test("secrets from ${file:…} and ${ENV} never show in Admin answers or logs; a missing file names the field", { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "prism-secrets-"));
  const PG_PW = `Pg-Fr0m-F1le-${tag}`;
  const REDIS_PW = `Rd-Fr0m-Env-${tag}`;
  const pwFile = join(dir, "pg_password");
  writeFileSync(pwFile, `${PG_PW}\n`);
  const env = { ...process.env, PRISM_TEST_REDIS_PW: REDIS_PW };
  const doc = {
    server: { data_dir: dir, access_log_sample: 0 },
    backends: {
      pg: { type: "postgres", url: `postgres://postgres:\${file:${pwFile}}@127.0.0.1:5432/test`, schema: `sec_${tag}` },
      rc: { type: "redis", url: "redis://:${PRISM_TEST_REDIS_PW}@127.0.0.1:6379", key_prefix: `sec${tag}` },
    },
    namespaces: [
      { name: "spg", primitives: ["keyvalue"], backend: "pg" },
      { name: "src", primitives: ["keyvalue"], backend: "rc" },
    ],
  };
  const config = await validateConfig(doc, "secrets-test", env);
  assert.equal(config.backends.pg!.url, `postgres://postgres:${PG_PW}@127.0.0.1:5432/test`, "the file's contents, trimmed");
  assert.equal(config.backends.rc!.url, `redis://:${REDIS_PW}@127.0.0.1:6379`);

  const logs: string[] = [];
  const server = await startServer({ config, host: "127.0.0.1", grpcPort: 0, httpPort: 0, grpc: false, log: (_l, m) => logs.push(m) });
  const call = async (method: string, body: object) => {
    const r = await fetch(`http://127.0.0.1:${server.httpPort}/v1/${method}`, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
    return { status: r.status, text: await r.text() };
  };
  const texts: string[] = [];
  try {
    // PostgreSQL trusts local connections, so the file's password is sent and ignored: the namespace serves.
    const set = await call("KeyValue/Set", { namespace: "spg", key: "k", value: Buffer.from("v").toString("base64") });
    assert.equal(set.status, 200, set.text);
    // Redis has no password here: whatever it answers, the caller never sees the env's.
    texts.push((await call("KeyValue/Set", { namespace: "src", key: "k", value: Buffer.from("v").toString("base64") })).text);
    for (const name of ["spg", "src"]) {
      const r = await call("Admin/GetNamespace", { name });
      assert.equal(r.status, 200, r.text);
      texts.push(r.text);
    }
    texts.push((await call("Admin/ListNamespaces", {})).text);
    const inst = await call("Admin/ListBackendInstances", {});
    assert.equal(inst.status, 200);
    assert.match(inst.text, /postgres:\*\*\*@127\.0\.0\.1/);
    texts.push(inst.text, (await call("Admin/Health", {})).text);
    // Admin entries may not read the server's files.
    const viaAdmin = await call("Admin/ApplyBackend", { name: "leak", backend: { type: "redis", url: "redis://127.0.0.1:6379", key_prefix: `\${file:${pwFile}}` } });
    assert.equal(viaAdmin.status, 400, viaAdmin.text);
    assert.match(viaAdmin.text, /allowed_paths/);
    texts.push(viaAdmin.text);
  } finally {
    await server.close();
    const db = new pg.Client({ connectionString: PG });
    await db.connect();
    await db.query(`DROP SCHEMA IF EXISTS "sec_${tag}" CASCADE`).catch(() => {});
    await db.end();
    const r = new Redis("redis://127.0.0.1:6379");
    await deleteRedisPrefix(r, `sec${tag}`).catch(() => {});
    r.disconnect();
  }
  for (const t of [...texts, logs.join("\n")]) {
    assert.ok(!t.includes(PG_PW), `the file's secret leaks: ${t}`);
    assert.ok(!t.includes(REDIS_PW), `the env secret leaks: ${t}`);
  }

  await assert.rejects(
    validateConfig({ ...doc, backends: { ...doc.backends, pg: { ...doc.backends.pg, url: `postgres://postgres:\${file:${join(dir, "missing")}}@127.0.0.1/test` } } }, "secrets-test", env),
    (e: unknown) => e instanceof ConfigError && /backends\.pg\.url: cannot read secret file .*missing.*ENOENT/.test(e.message),
  );
});
