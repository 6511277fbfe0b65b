/**
 * Credentials never leak (issue 19), through the ONE masking function
 * (src/core/redact.ts), with a password holding every delimiter: @ / : ? #.
 *
 * - Every connection-string form of the drivers: URL userinfo (raw @ and :,
 *   percent-encoded / ? #), query string password= / pass= / token= (raw and
 *   encoded), libpq keyword strings (quoted and bare), free text.
 * - Validation: a URL whose user or password holds a raw "/", "?" or "#" is
 *   refused with INVALID_ARGUMENT naming the field (it used to reach ioredis:
 *   INTERNAL "Invalid URL"); a raw "@" or ":" is accepted.
 * - For real: a private redis-server with `requirepass` holding @ and : serves
 *   a namespace whose URL carries that password unencoded; PostgreSQL serves
 *   namespaces given as a libpq keyword string (it used to fail with
 *   `getaddrinfo ENOTFOUND base`) and as a URL with ?password=. Admin
 *   GetNamespace / ListNamespaces / ListBackendInstances / Health, call errors
 *   and the log never show any part of the password.
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, mkdirSync, writeFileSync, chownSync, readFileSync } from "node:fs";
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { startServer, type RunningServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { redactSecrets, redactedJson, displayUrl, checkUrlCredentials } from "../../src/core/redact.js";
import { keywordStringToUrl } from "../../src/backends/postgres/options.js";
import { maskUrl } from "../../src/control/store-postgres.js";
import { errors } from "../../src/core/errors.js";
import { freePort, haveBinary, privateRedis, tcpOpen, type PrivateServer } from "../helpers/private-servers.js";
import { skipOrFail } from "../helpers/required-tools.js";

/** Every delimiter a connection string has. */
const PW = "Zq7@ss:w/o?r#d";
/** Pieces of PW that must never show (any two consecutive characters around a delimiter). */
const FRAGMENTS = ["Zq7", "7@s", "ss:w", "w/o", "o?r", "r#d", "%40ss", "Zq7%40"];
const enc = encodeURIComponent(PW);

function assertMasked(text: string, what: string): void {
  for (const f of FRAGMENTS) assert.ok(!text.includes(f), `${what} leaks ${JSON.stringify(f)}: ${text}`);
}

describe("redactSecrets: every connection-string form", () => {
  const forms: [string, string][] = [
    ["redis URL, raw @ and : in the password", `redis://:Zq7@ss:w@127.0.0.1:6379/0`],
    ["redis URL, user and raw password with every delimiter", `redis://app:${PW}@127.0.0.1:6379`],
    ["redis URL, encoded password", `redis://app:${enc}@127.0.0.1:6379`],
    ["postgres URL, encoded password", `postgres://u:${enc}@db.example:5432/test?sslmode=require`],
    ["postgres URL, raw password with every delimiter", `postgres://u:${PW}@db.example:5432/test`],
    ["postgres ?password= raw", `postgres://u@db.example/test?password=${PW}`],
    ["postgres ?password= encoded, more params", `postgres://u@db.example/test?sslmode=require&password=${enc}&application_name=x`],
    ["?pass= raw", `postgres://db.example/test?pass=${PW}`],
    ["?token= raw", `redis://127.0.0.1:6379?token=${PW}`],
    ["amqp URL", `amqp://guest:${PW}@127.0.0.1:5672/vhost`],
    ["mqtt URL", `mqtt://u:${PW}@127.0.0.1:1883`],
    ["nats URL", `nats://u:${PW}@127.0.0.1:4222`],
    ["libpq keywords, quoted", `host=127.0.0.1 port=5432 user=postgres password='${PW}' dbname=test`],
    ["libpq keywords, bare", `host=127.0.0.1 password=${PW} dbname=test`],
    ["libpq keywords, quoted with an escaped quote and spaces", `host=h password='Zq7@ss:w/o?r#d \\' x' dbname=test`],
    ["libpq keywords, sslpassword", `host=h sslpassword=${PW} dbname=test`],
    ["free text with a URL", `connect to postgres://u:${PW}@db:5432/x failed: ECONNREFUSED`],
    ["free text with keywords", `cannot connect (host=db password=${PW} dbname=x): timeout`],
    ["free text, user:password@host without a scheme", `auth failed for app:${PW.replace(/[/?#]/g, "")}@cache.internal`],
  ];
  for (const [name, s] of forms) {
    it(name, () => {
      const out = redactSecrets(s);
      assertMasked(out, name);
      assert.ok(out.includes("***"), `masked: ${out}`);
      assertMasked(displayUrl(s), `${name} (display)`);
    });
  }

  it("keeps what is not secret: host, port, database, user, other parameters", () => {
    assert.equal(redactSecrets(`postgres://u:${enc}@db.example:5433/prism?sslmode=require`), "postgres://u:***@db.example:5433/prism?sslmode=require");
    assert.equal(redactSecrets("postgres://h/db?user=u&password=secret"), "postgres://h/db?user=u&password=***");
    assert.equal(redactSecrets("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    assert.equal(displayUrl(`redis://:Zq7@ss:w@cache:6379/0`), "redis://cache:6379/0");
    assert.equal(redactSecrets("host=db port=5432 user=app password='x y' dbname=orders"), "host=db port=5432 user=app password=*** dbname=orders");
    assert.equal(maskUrl(`postgres://u:${enc}@h/db`), "postgres://u:***@h/db");
  });

  it("objects: secret-named keys whole, every string through the same function", () => {
    const json = redactedJson({ type: "kafka", brokers: ["k:9092"], sasl: { mechanism: "plain", username: "u", password: PW }, nats: { servers: [`nats://u:${PW}@h:4222`], pass: PW, token: PW }, url: `postgres://h/db?password=${PW}` });
    assertMasked(json, "redactedJson");
    assert.match(json, /"username":"u"/);
  });

  it("error messages built from a driver's error text are masked", () => {
    assertMasked(errors.unavailable("redis", new Error(`connect redis://:${PW}@h:1 ECONNREFUSED`)).message, "errors.unavailable");
    assertMasked(errors.internal(`bad url postgres://u:${PW}@h/db`).message, "errors.internal");
  });
});

describe("validation of credentials in URLs", () => {
  const ns = (backend: object) => ({ namespaces: [{ name: "c", backend }] });

  it("a raw / ? or # in a URL password is refused with INVALID_ARGUMENT naming the field (not INTERNAL \"Invalid URL\" later)", async () => {
    for (const url of [`redis://:pa/ss@127.0.0.1:6379`, `redis://:pa?ss@127.0.0.1:6379`, `redis://:pa#ss@127.0.0.1:6379`, `postgres://u:${PW}@127.0.0.1/test`, `amqp://g:a/b@h:5672`]) {
      const type = url.split(":")[0] === "postgres" ? "postgres" : url.startsWith("amqp") ? "rabbitmq" : "redis";
      await assert.rejects(validateConfig(ns({ type, url }), "t.yaml"), (e: any) => {
        assert.match(e.message, /namespaces\[0\]\.backend\.url: /);
        assert.match(e.message, /percent-encode/);
        assertMasked(e.message, "the validation error");
        assert.ok(!e.message.includes("pa/ss") && !e.message.includes("pa?ss") && !e.message.includes("a/b"), e.message);
        return true;
      }, url);
      assert.ok(checkUrlCredentials(url) !== undefined, url);
    }
  });

  it("a raw @ or : in a URL password is accepted (WHATWG URL reads it the way the mask does); encoded forms too", async () => {
    for (const url of [`redis://:Zq7@ss:w@127.0.0.1:6379`, `redis://app:${enc}@127.0.0.1:6379`, `postgres://u@127.0.0.1/test?password=${enc}`, `postgres://u@127.0.0.1/test?password=Zq7@ss:w/o?r`]) {
      const type = url.startsWith("postgres") ? "postgres" : "redis";
      const cfg = await validateConfig(ns({ type, url }), "t.yaml");
      assert.equal((cfg.namespaces[0]!.backend as any).url, url);
    }
  });

  it("a libpq keyword string becomes the equivalent postgres:// URL (user and password percent-encoded)", async () => {
    const kw = `host=127.0.0.1 port=5432 user=postgres password='${PW}' dbname=test sslmode=disable`;
    const url = keywordStringToUrl(kw);
    assert.equal(url, `postgres://postgres:${enc}@127.0.0.1:5432/test?sslmode=disable`);
    const cfg = await validateConfig(ns({ type: "postgres", url: kw }), "t.yaml");
    assert.equal((cfg.namespaces[0]!.backend as any).url, url);
    assert.equal(keywordStringToUrl("host=/var/run/postgresql dbname=x"), "postgres:///x?host=%2Fvar%2Frun%2Fpostgresql");
    await assert.rejects(validateConfig(ns({ type: "postgres", url: "host=h password='unterminated" }), "t.yaml"), /backend\.url: libpq keyword string: unterminated quoted value of "password"/);
    await assert.rejects(validateConfig(ns({ type: "postgres", url: "just-a-host" }), "t.yaml"), /backend\.url: must be a postgres:\/\/ URL or a libpq keyword string/);
  });
});

describe("credentials against real servers: Admin, Health, errors and logs stay masked", { timeout: 120_000 }, () => {
  const run = randomBytes(3).toString("hex");
  const dir = mkdtempSync(join(tmpdir(), `prism-cred-${run}-`));
  /** A Redis password with the characters a URL allows unencoded in userinfo. */
  const REDIS_PW = "Zq7@ss:w";
  let redisPort = 0;
  let redis: PrivateServer | undefined;
  let srv: RunningServer | undefined;
  let deadPort = 0;
  const logs: string[] = [];

  const call = async (method: string, body: object) => {
    const r = await fetch(`http://127.0.0.1:${srv!.httpPort}/v1/${method}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    return { status: r.status, text: await r.text() };
  };

  before(async () => {
    redisPort = await freePort();
    deadPort = await freePort();
    redis = privateRedis(redisPort, dir, ["--requirepass", REDIS_PW]);
    await redis.start();
    const config = await validateConfig(
      {
        server: { retry: { max_attempts: 1 } },
        backends: {
          // Raw "@" and ":" in the password, as the issue reported it.
          secured: { type: "redis", url: `redis://:${REDIS_PW}@127.0.0.1:${redisPort}`, key_prefix: `cred-${run}` },
          // libpq keyword form (used to be `getaddrinfo ENOTFOUND base`); PostgreSQL here trusts local connections, so any password works.
          pgkw: { type: "postgres", url: `host=127.0.0.1 port=5432 user=postgres password='${PW}' dbname=test`, schema: `cred_kw_${run}` },
          pgq: { type: "postgres", url: `postgres://postgres@127.0.0.1:5432/test?password=${enc}`, schema: `cred_q_${run}` },
          // Nothing listens there: Health and calls report the failure.
          dead: { type: "postgres", url: `postgres://postgres:${enc}@127.0.0.1:${deadPort}/test?connect_timeout=1`, connect_timeout_ms: 500, schema: `cred_d_${run}` },
        },
        namespaces: [
          { name: "sec", pattern: "keyvalue", slots: { keyvalue: "secured" } },
          { name: "kw", pattern: "keyvalue", slots: { keyvalue: "pgkw" } },
          { name: "q", pattern: "keyvalue", slots: { keyvalue: "pgq" } },
          { name: "dead", pattern: "keyvalue", slots: { keyvalue: "dead" } },
        ],
      },
      "credentials.test",
    );
    srv = await startServer({ config, host: "127.0.0.1", grpcPort: 0, httpPort: 0, grpc: false, log: (_l, m) => logs.push(m) });
  });

  after(async () => {
    await srv?.close();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("a Redis password with raw @ and : authenticates, and the namespace serves", async () => {
    const set = await call("KeyValue/Set", { namespace: "sec", key: "k", value: Buffer.from("v").toString("base64") });
    assert.equal(set.status, 200, set.text);
    const get = await call("KeyValue/Get", { namespace: "sec", key: "k" });
    assert.equal(JSON.parse(get.text).value, Buffer.from("v").toString("base64"));
  });

  it("a libpq keyword string and a ?password= URL serve PostgreSQL namespaces", async () => {
    for (const namespace of ["kw", "q"]) {
      const set = await call("KeyValue/Set", { namespace, key: "k", value: Buffer.from(namespace).toString("base64") });
      assert.equal(set.status, 200, `${namespace}: ${set.text}`);
      const get = await call("KeyValue/Get", { namespace, key: "k" });
      assert.equal(JSON.parse(get.text).value, Buffer.from(namespace).toString("base64"));
    }
  });

  it("GetNamespace, ListNamespaces, ListBackendInstances and Health never show the passwords", async () => {
    const texts: string[] = [];
    for (const name of ["sec", "kw", "q", "dead"]) texts.push((await call("Admin/GetNamespace", { name })).text);
    texts.push((await call("Admin/ListNamespaces", {})).text);
    const instances = await call("Admin/ListBackendInstances", {});
    texts.push(instances.text);
    assert.match(instances.text, /\*\*\*/);
    const health = await call("Admin/Health", {});
    texts.push(health.text);
    const dead = JSON.parse(health.text).backends.find((b: any) => b.namespace === "dead");
    assert.equal(dead.ok, false);
    for (const t of texts) {
      assertMasked(t, "Admin");
      assert.ok(!t.includes(REDIS_PW) && !t.includes("ss:w"), t);
    }
  });

  it("Admin.ApplyBackend refuses a raw / in a Redis password: 400 INVALID_ARGUMENT naming backend.url", async () => {
    const r = await fetch(`http://127.0.0.1:${srv!.httpPort}/v1/Admin/ApplyBackend`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "slashy", backend: { type: "redis", url: `redis://:${PW}@127.0.0.1:${redisPort}` } }),
    });
    const text = await r.text();
    assert.equal(r.status, 400, text);
    const err = JSON.parse(text).error;
    assert.equal(err.status, "INVALID_ARGUMENT");
    assert.match(err.message, /url: /);
    assertMasked(text, "the refusal");
  });

  it("call errors and log lines on a failing backend never show the password", async () => {
    const r = await call("KeyValue/Get", { namespace: "dead", key: "k" });
    assert.equal(r.status, 503, r.text);
    assertMasked(r.text, "the error response");
    for (const l of logs) assertMasked(l, "a log line");
  });
});

/**
 * A private PostgreSQL (initdb -A scram-sha-256) whose password is PW itself (every delimiter), so a wrong
 * or misparsed password fails to connect (the shared PostgreSQL trusts local connections: any password
 * works there). Reached as a libpq keyword string and as a URL with ?password=; and a private redis-server
 * whose password also holds "/ ? #", reached with the password percent-encoded (the raw form is refused
 * by validation, above).
 */
describe("credentials that must be right: password-checking PostgreSQL and Redis, every delimiter", { timeout: 120_000 }, () => {
  const run = randomBytes(3).toString("hex");
  const dir = mkdtempSync(join(tmpdir(), `prism-cred-pw-${run}-`));
  let pgPort = 0;
  let redisPort = 0;
  let pg: ChildProcess | undefined;
  let redis: PrivateServer | undefined;
  let srv: RunningServer | undefined;
  let why = "";
  const logs: string[] = [];
  const call = async (method: string, body: object) => {
    const r = await fetch(`http://127.0.0.1:${srv!.httpPort}/v1/${method}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    return { status: r.status, text: await r.text() };
  };

  before(async () => {
    pgPort = await freePort();
    redisPort = await freePort();
    redis = privateRedis(redisPort, dir, ["--requirepass", PW]);
    await redis.start();
    if (!(await haveBinary("initdb")) || !(await haveBinary("postgres"))) {
      why = "initdb / postgres not installed";
      return;
    }
    // PostgreSQL refuses to run as root: as the postgres user then (runuser), owning the data directory.
    const asRoot = process.getuid?.() === 0;
    const pgUid = asRoot ? Number(execFileSync("id", ["-u", "postgres"]).toString().trim()) : undefined;
    const pgDir = join(dir, "pg");
    mkdirSync(pgDir);
    writeFileSync(join(pgDir, "pw"), `${PW}\n`);
    if (pgUid !== undefined) {
      chownSync(dir, pgUid, -1);
      chownSync(pgDir, pgUid, -1);
      chownSync(join(pgDir, "pw"), pgUid, -1);
    }
    const as = (cmd: string, args: string[]): [string, string[]] => (asRoot ? ["runuser", ["-u", "postgres", "--", cmd, ...args]] : [cmd, args]);
    const [c, a] = as("initdb", ["-D", join(pgDir, "data"), "-A", "scram-sha-256", "-U", "postgres", `--pwfile=${join(pgDir, "pw")}`, "--no-sync"]);
    execFileSync(c, a, { stdio: "ignore" });
    const [pc, pa] = as("postgres", ["-D", join(pgDir, "data"), "-p", String(pgPort), "-k", pgDir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]);
    pg = spawn(pc, pa, { stdio: "ignore" });
    const end = Date.now() + 15_000;
    while (!(await tcpOpen(pgPort))) {
      if (Date.now() > end) throw new Error("private postgres did not start");
      await sleep(50);
    }
    await sleep(200);
    const config = await validateConfig(
      {
        server: { retry: { max_attempts: 1 } },
        backends: {
          kw: { type: "postgres", url: `host=127.0.0.1 port=${pgPort} user=postgres password='${PW}' dbname=postgres`, schema: `cred_kw_${run}` },
          q: { type: "postgres", url: `postgres://postgres@127.0.0.1:${pgPort}/postgres?password=${enc}`, schema: `cred_q_${run}` },
          wrong: { type: "postgres", url: `postgres://postgres:${encodeURIComponent(PW + "x")}@127.0.0.1:${pgPort}/postgres`, schema: `cred_w_${run}`, connect_timeout_ms: 2000 },
          slashy: { type: "redis", url: `redis://:${enc}@127.0.0.1:${redisPort}`, key_prefix: `cred-${run}` },
        },
        namespaces: [
          { name: "kw", pattern: "keyvalue", slots: { keyvalue: "kw" } },
          { name: "q", pattern: "keyvalue", slots: { keyvalue: "q" } },
          { name: "wrong", pattern: "keyvalue", slots: { keyvalue: "wrong" } },
          { name: "slashy", pattern: "keyvalue", slots: { keyvalue: "slashy" } },
        ],
      },
      "credentials-pw.test",
    );
    srv = await startServer({ config, host: "127.0.0.1", grpc: false, httpPort: 0, log: (_l, m) => logs.push(m) });
  });

  after(async () => {
    await srv?.close();
    await redis?.stop();
    if (pg && pg.exitCode === null) {
      const exited = new Promise((r) => pg!.once("exit", r));
      // The postmaster itself (runuser does not pass signals on): fast shutdown.
      let postmaster = 0;
      try {
        postmaster = Number(readFileSync(join(dir, "pg", "data", "postmaster.pid"), "utf8").split("\n")[0]);
      } catch {
        // not started
      }
      if (postmaster > 0) process.kill(postmaster, "SIGINT");
      else pg.kill("SIGKILL");
      await Promise.race([exited, sleep(10_000).then(() => pg!.kill("SIGKILL"))]);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it("PostgreSQL checks the password: the keyword string and ?password= connect and serve, a wrong password does not", async (t) => {
    if (why) return skipOrFail(t, why);
    for (const namespace of ["kw", "q"]) {
      const set = await call("KeyValue/Set", { namespace, key: "k", value: Buffer.from(namespace).toString("base64") });
      assert.equal(set.status, 200, `${namespace}: ${set.text}`);
      const get = await call("KeyValue/Get", { namespace, key: "k" });
      assert.equal(JSON.parse(get.text).value, Buffer.from(namespace).toString("base64"));
    }
    // The same server refuses a wrong password: the two above really authenticated.
    const bad = await call("KeyValue/Get", { namespace: "wrong", key: "k" });
    assert.notEqual(bad.status, 200, bad.text);
    assertMasked(bad.text, "the wrong-password error");
  });

  it("a Redis password holding @ : / ? # works percent-encoded", async () => {
    const set = await call("KeyValue/Set", { namespace: "slashy", key: "k", value: Buffer.from("v").toString("base64") });
    assert.equal(set.status, 200, set.text);
    const get = await call("KeyValue/Get", { namespace: "slashy", key: "k" });
    assert.equal(JSON.parse(get.text).value, Buffer.from("v").toString("base64"));
  });

  it("Admin, Health and the log never show these passwords", async () => {
    const texts: string[] = [];
    for (const name of ["kw", "q", "wrong", "slashy"]) texts.push((await call("Admin/GetNamespace", { name })).text);
    texts.push((await call("Admin/ListNamespaces", {})).text, (await call("Admin/ListBackendInstances", {})).text, (await call("Admin/Health", {})).text);
    for (const t of texts) assertMasked(t, "Admin");
    for (const l of logs) assertMasked(l, "a log line");
  });
});
