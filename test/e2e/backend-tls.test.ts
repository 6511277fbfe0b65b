/**
 * TLS from Prism to its backends, for real: a TLS-only redis-server and a
 * PostgreSQL cluster that refuses plaintext (hostnossl … reject), both with a
 * certificate this test generates (test/helpers/certs.ts). Prism's drivers
 * reach them through rediss:// + tls_ca_file and sslmode=verify-full +
 * sslrootcert; the proof that the link is TLS is that the plaintext way in is
 * refused (Redis) and pg_stat_ssl of Prism's own backends (PostgreSQL). A
 * client that does not trust the CA is refused too (the certificate is verified).
 *
 * Without openssl, a redis-server built with TLS, or PostgreSQL's server
 * binaries (and root to run them as postgres) a test skips saying why, except
 * under PRISM_REQUIRE_TOOLS=1 / CI=true (test/helpers/required-tools.ts), where
 * it fails: CI cannot go green without TLS to the backends having been tested.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { chownSync, chmodSync, copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { startServer, type RunningServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { standardCerts } from "../helpers/certs.js";
import { skipOrFail } from "../helpers/required-tools.js";
import { freePort, tcpOpen } from "../helpers/private-servers.js";

const uid = randomUUID().slice(0, 8);
/** Why no certificates can be made here (no openssl), or undefined. */
const noOpenssl = spawnSync("openssl", ["version"]).error ? "openssl is not installed (test/helpers/certs.ts makes the test certificates with it)" : undefined;
let certs: ReturnType<typeof standardCerts>;
before(() => {
  if (noOpenssl === undefined) certs = standardCerts("prism-backend-tls-");
});
const logs: string[] = [];

async function serverFor(namespaces: object[]): Promise<RunningServer> {
  const dataDir = mkdtempSync(join(tmpdir(), "prism-backend-tls-data-"));
  const config = await validateConfig({ server: { data_dir: dataDir, allowed_paths: [certs.dir.dir] }, namespaces }, "test");
  return startServer({ config, grpc: false, host: "127.0.0.1", httpPort: 0, log: (l, m) => void logs.push(`${l} ${m}`) });
}

async function put(s: RunningServer, ns: string, key: string, value: string): Promise<number> {
  const r = await fetch(`http://127.0.0.1:${s.httpPort}/v1/ns/${ns}/kv/${key}`, { method: "PUT", body: value });
  await r.arrayBuffer();
  return r.status;
}

async function get(s: RunningServer, ns: string, key: string): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${s.httpPort}/v1/ns/${ns}/kv/${key}`);
  return { status: r.status, body: await r.text() };
}

/** What a plaintext client gets from a port: the first bytes answered to `send`, or the error / close. */
function plaintextProbe(port: number, send: string): Promise<string> {
  return new Promise((resolve) => {
    const s = netConnect(port, "127.0.0.1");
    let got = "";
    const done = (why: string) => {
      s.destroy();
      resolve(got || why);
    };
    s.setTimeout(3000, () => done("timeout"));
    s.on("connect", () => s.write(send));
    s.on("data", (d) => {
      got += d.toString("latin1");
      if (got.includes("\n")) done(got);
    });
    s.on("error", (e) => done(`error ${e.message}`));
    s.on("close", () => done("closed"));
  });
}

after(() => certs?.dir.remove());

describe("Redis over TLS (rediss://)", () => {
  let redis: ChildProcess | undefined;
  let port = 0;
  let skip: string | undefined;
  let dir = "";

  before(async () => {
    if (noOpenssl !== undefined) {
      skip = noOpenssl;
      return;
    }
    dir = mkdtempSync(join(tmpdir(), "prism-redis-tls-"));
    port = await freePort();
    // A TLS-only Redis: --port 0 turns the plaintext port off.
    const proc = spawn("redis-server", [
      "--port", "0", "--tls-port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
      "--tls-cert-file", certs.server.cert, "--tls-key-file", certs.server.key, "--tls-ca-cert-file", certs.ca.cert, "--tls-auth-clients", "no",
    ], { stdio: ["ignore", "pipe", "pipe"] });
    redis = proc;
    let out = "";
    let missing = false;
    proc.once("error", () => (missing = true)); // no redis-server binary
    proc.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    proc.stderr!.on("data", (d: Buffer) => (out += d.toString()));
    const end = Date.now() + 10_000;
    while (!(await tcpOpen(port))) {
      if (missing) {
        skip = "redis-server is not installed";
        return;
      }
      if (proc.exitCode !== null) {
        // A redis-server built without TLS stops at the first tls-* directive.
        if (/tls/i.test(out)) {
          skip = `redis-server has no TLS support: ${out.trim().split("\n").find((l) => /tls/i.test(l))}`;
          return;
        }
        throw new Error(`redis-server exited: ${out}`);
      }
      if (Date.now() > end) throw new Error(`redis-server (tls) did not start on ${port}: ${out}`);
      await sleep(25);
    }
  });
  after(async () => {
    const p = redis;
    if (p && p.exitCode === null) {
      const exited = new Promise((r) => p.once("exit", r));
      p.kill("SIGTERM");
      await exited;
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("Prism's redis driver stores and reads through rediss:// with the test CA; a plaintext client is refused", async (t) => {
    if (skip) return skipOrFail(t, skip);
    const s = await serverFor([
      { name: "tlskv", backend: { type: "redis", url: `rediss://127.0.0.1:${port}`, tls_ca_file: certs.ca.cert, key_prefix: `tls-${uid}` } },
      // The same Redis without the CA: the certificate does not verify (system roots), so nothing is served.
      { name: "untrusted", backend: { type: "redis", url: `rediss://127.0.0.1:${port}`, key_prefix: `tls-${uid}` } },
    ]);
    try {
      assert.equal(await put(s, "tlskv", "k1", "over tls"), 200);
      assert.deepEqual(await get(s, "tlskv", "k1"), { status: 200, body: "over tls" });
      const refused = await put(s, "untrusted", "k1", "x");
      assert.equal(refused, 503, "a Redis whose certificate does not verify is UNAVAILABLE");
      assert.ok(logs.some((l) => /self[- ]signed|unable to (get|verify)|certificate/i.test(l)), `a certificate error is logged: ${logs.join("\n")}`);
    } finally {
      await s.close();
    }
    // The only port is TLS: a plaintext PING gets no +PONG.
    const plain = await plaintextProbe(port, "PING\r\n");
    assert.ok(!plain.startsWith("+PONG"), `plaintext PING answered: ${plain}`);
  });

  test("tls_* options need a rediss:// URL; paths outside data_dir need allowed_paths", async () => {
    await assert.rejects(
      validateConfig({ namespaces: [{ name: "x", backend: { type: "redis", url: "redis://127.0.0.1:6379", tls_ca_file: "/etc/ssl/ca.pem" } }] }, "t"),
      /tls_ca_file: TLS options need a rediss:\/\/ URL/,
    );
    await assert.rejects(
      validateConfig({ namespaces: [{ name: "x", backend: { type: "redis", url: "rediss://127.0.0.1:6379", tls_ca_file: "/etc/ssl/ca.pem" } }] }, "t"),
      /tls_ca_file: "\/etc\/ssl\/ca.pem" is an absolute path/,
    );
  });
});

describe("PostgreSQL over TLS (sslmode=verify-full)", () => {
  let pgProc: ChildProcess | undefined;
  let base = "";
  let port = 0;
  let skip: string | undefined;

  before(async () => {
    if (noOpenssl !== undefined) {
      skip = noOpenssl;
      return;
    }
    const versions = existsSync("/usr/lib/postgresql") ? readdirSync("/usr/lib/postgresql").sort() : [];
    const bin = versions.length ? `/usr/lib/postgresql/${versions.at(-1)}/bin` : "";
    if (!bin || !existsSync(`${bin}/initdb`)) {
      skip = "no PostgreSQL server binaries under /usr/lib/postgresql";
      return;
    }
    const who = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
    const gid = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" });
    if (who.status !== 0 || process.getuid?.() !== 0) {
      skip = "needs root and a postgres user to run a throwaway cluster";
      return;
    }
    const ids = { uid: Number(who.stdout.trim()), gid: Number(gid.stdout.trim()) };
    base = mkdtempSync(join(tmpdir(), "prism-pg-tls-"));
    chownSync(base, ids.uid, ids.gid);
    const data = join(base, "data");
    const init = spawnSync(`${bin}/initdb`, ["-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "--no-instructions"], { ...ids, encoding: "utf8", cwd: base });
    assert.equal(init.status, 0, `initdb: ${init.stderr}`);
    // The server's key must be 0600 and owned by the server's user.
    for (const [from, to] of [[certs.server.cert, "server.crt"], [certs.server.key, "server.key"]] as const) {
      copyFileSync(from, join(data, to));
      chownSync(join(data, to), ids.uid, ids.gid);
      chmodSync(join(data, to), 0o600);
    }
    // TLS or nothing over TCP.
    writeFileSync(join(data, "pg_hba.conf"), "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n");
    port = await freePort();
    pgProc = spawn(
      `${bin}/postgres`,
      ["-D", data, "-p", String(port), "-k", base, "-c", "listen_addresses=127.0.0.1", "-c", "ssl=on", "-c", "ssl_cert_file=server.crt", "-c", "ssl_key_file=server.key", "-c", "fsync=off", "-c", "shared_buffers=16MB"],
      { ...ids, cwd: base, stdio: ["ignore", "ignore", "pipe"] },
    );
    let err = "";
    pgProc.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    const end = Date.now() + 15_000;
    for (;;) {
      const c = new pg.Client({ host: base, port, user: "postgres", database: "postgres" });
      try {
        await c.connect();
        await c.end();
        break;
      } catch {
        await c.end().catch(() => {});
        if (Date.now() > end || pgProc.exitCode !== null) throw new Error(`postgres did not start: ${err}`);
        await sleep(100);
      }
    }
  });
  after(async () => {
    const p = pgProc;
    if (p && p.exitCode === null) {
      const exited = new Promise((r) => p.once("exit", r));
      p.kill("SIGINT"); // fast shutdown
      await exited;
    }
    if (base) rmSync(base, { recursive: true, force: true });
  });

  test("Prism's postgres driver works with sslmode=verify-full and the test CA, and its connections are TLS", async (t) => {
    if (skip) return skipOrFail(t, skip);
    const app = `prism-tls-${uid}`;
    const url = (ca: string) => `postgres://postgres@127.0.0.1:${port}/postgres?sslmode=verify-full&sslrootcert=${encodeURIComponent(ca)}&application_name=${app}`;
    const s = await serverFor([
      { name: "pgtls", backend: { type: "postgres", url: url(certs.ca.cert), schema: `tls_${uid}`, connect_timeout_ms: 3000 } },
      { name: "pgwrongca", backend: { type: "postgres", url: url(certs.otherCa.cert), schema: `tls_${uid}_b`, connect_timeout_ms: 3000 } },
    ]);
    try {
      assert.equal(await put(s, "pgtls", "k1", "over tls"), 200);
      assert.deepEqual(await get(s, "pgtls", "k1"), { status: 200, body: "over tls" });
      // Prism's own backends, seen from the server side: every one of them is TLS.
      const admin = new pg.Client({ host: base, port, user: "postgres", database: "postgres" });
      await admin.connect();
      try {
        const r = await admin.query(
          "SELECT count(*)::int AS n, count(*) FILTER (WHERE s.ssl)::int AS tls, min(s.version) AS version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = $1",
          [app],
        );
        assert.ok(r.rows[0].n >= 1, "Prism has connections open");
        assert.equal(r.rows[0].tls, r.rows[0].n, "all of them TLS");
        assert.match(String(r.rows[0].version), /^TLSv1\.[23]$/);
      } finally {
        await admin.end();
      }
      // A CA that did not sign the server's certificate: refused (verify-full verifies).
      const wrong = await put(s, "pgwrongca", "k1", "x");
      assert.equal(wrong, 503);
    } finally {
      await s.close();
    }
    // Plaintext over TCP is refused by the server (hostnossl … reject).
    const plain = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/postgres?sslmode=disable` });
    await assert.rejects(plain.connect(), /no encryption|pg_hba|rejects/i);
    await plain.end().catch(() => {});
  });
});
