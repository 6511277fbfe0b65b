/**
 * server.data_dir confinement (src/config/paths.ts): file options of
 * namespaces and backend instances resolve inside the data directory; an
 * absolute path, a `../` escape or a symbolic link leading outside is refused
 * with INVALID_ARGUMENT naming the field, through Admin and through
 * prism.yaml, unless the operator's prism.yaml lists it in
 * server.allowed_paths. The file system is checked: nothing appears outside.
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { startServer, type RunningServer } from "../../src/server.js";
import { validateConfig, ConfigError } from "../../src/config/load.js";
import { runPrism, startPrism } from "./serve-process.js";

async function call(port: number, method: string, body: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(`http://127.0.0.1:${port}/v1/${method}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: res.status, json: JSON.parse((await res.text()) || "{}") };
}

/** root/data (the data dir), root/outside (must stay empty), root/allowed (listed in allowed_paths), data/link → outside. */
function layout() {
  const root = mkdtempSync(join(tmpdir(), "prism-datadir-"));
  const data = join(root, "data");
  const outside = join(root, "outside");
  const allowed = join(root, "allowed");
  for (const d of [data, outside, allowed]) mkdirSync(d);
  symlinkSync(outside, join(data, "link"));
  return { root, data, outside, allowed };
}

const sqliteNs = (name: string, path: string) => ({ name, primitives: ["keyvalue"], backend: { type: "sqlite", path } });

describe("data_dir through Admin", () => {
  const fs = layout();
  let srv: RunningServer;
  before(async () => {
    const config = await validateConfig({ server: { data_dir: fs.data, allowed_paths: [fs.allowed] }, namespaces: [] }, "data-dir-test");
    srv = await startServer({ config, grpcPort: 0, httpPort: 0, log: () => {} });
  });
  after(async () => {
    await srv?.close();
    rmSync(fs.root, { recursive: true, force: true });
  });

  const refusals: [string, () => string, RegExp][] = [
    ["an absolute path", () => join(fs.outside, "evil.db"), /is an absolute path/],
    ["a ../ escape", () => "../outside/evil.db", /leaves the data directory/],
    ["a symbolic link leading outside", () => "link/evil.db", /leads outside the data directory through a symbolic link/],
  ];
  for (const [what, path, why] of refusals) {
    it(`ApplyNamespace refuses ${what} with INVALID_ARGUMENT naming the field; nothing is created outside`, async () => {
      const r = await call(srv.httpPort, "Admin/ApplyNamespace", { namespace: sqliteNs("evil", path()) });
      assert.equal(r.status, 400, JSON.stringify(r.json));
      assert.equal(r.json.error.status, "INVALID_ARGUMENT");
      assert.match(r.json.error.message, /^namespace: backend\.path: "/);
      assert.match(r.json.error.message, why);
      // The older YAML form goes through the same rule.
      const y = await call(srv.httpPort, "Admin/ApplyNamespace", { config: `name: evil\nbackend: { type: sqlite, path: ${JSON.stringify(path())} }` });
      assert.equal(y.status, 400);
      assert.match(y.json.error.message, /^config: backend\.path: /);
      const b = await call(srv.httpPort, "Admin/ApplyBackend", { name: "evil", backend: { type: "sqlite", path: path() } });
      assert.equal(b.status, 400);
      assert.match(b.json.error.message, /^backend: path: /);
      assert.deepEqual(readdirSync(fs.outside), []);
      assert.equal((await call(srv.httpPort, "Admin/GetNamespace", { name: "evil" })).status, 404);
    });
  }

  it("a relative path lands inside the data directory; an allowed path is accepted", async () => {
    const inside = await call(srv.httpPort, "Admin/ApplyNamespace", { namespace: sqliteNs("good", "sub/good.db") });
    assert.equal(inside.status, 200, JSON.stringify(inside.json));
    assert.equal(JSON.parse(inside.json.namespace.configJson).backend.path, join(fs.data, "sub/good.db"));
    assert.equal((await call(srv.httpPort, "KeyValue/Set", { namespace: "good", key: "k", value: "dg==" })).status, 200);
    assert.ok(existsSync(join(fs.data, "sub/good.db")));
    const ok = await call(srv.httpPort, "Admin/ApplyNamespace", { namespace: sqliteNs("ok", join(fs.allowed, "ok.db")) });
    assert.equal(ok.status, 200, JSON.stringify(ok.json));
    assert.equal((await call(srv.httpPort, "KeyValue/Set", { namespace: "ok", key: "k", value: "dg==" })).status, 200);
    assert.ok(existsSync(join(fs.allowed, "ok.db")));
    assert.deepEqual(readdirSync(fs.outside), []);
  });

  it("an Admin call cannot widen allowed_paths (server settings are not part of a namespace)", async () => {
    const r = await call(srv.httpPort, "Admin/ApplyNamespace", { namespace: { ...sqliteNs("sneaky", join(fs.outside, "x.db")), server: { allowed_paths: [fs.outside] } } });
    assert.equal(r.status, 400);
    assert.match(r.json.error.message, /Unrecognized key.*server|server/);
    assert.deepEqual(readdirSync(fs.outside), []);
  });
});

describe("data_dir through prism.yaml", () => {
  const fs = layout();
  after(() => rmSync(fs.root, { recursive: true, force: true }));

  const refused = async (path: string, why: RegExp, allowed: string[] = []) => {
    await assert.rejects(
      validateConfig({ server: { data_dir: fs.data, allowed_paths: allowed }, namespaces: [sqliteNs("a", path)] }, "prism.yaml"),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        assert.match(e.message, /^prism\.yaml: namespaces\[0\]\.backend\.path: "/);
        assert.match(e.message, why);
        return true;
      },
    );
  };

  it("absolute, ../ and symlink paths are refused naming the field; instances under backends: too", async () => {
    await refused(join(fs.outside, "a.db"), /is an absolute path/);
    await refused("../outside/a.db", /leaves the data directory/);
    await refused("link/a.db", /symbolic link/);
    // An allowed directory does not open its neighbours.
    await refused(join(fs.outside, "a.db"), /is an absolute path/, [fs.allowed]);
    await assert.rejects(
      validateConfig({ server: { data_dir: fs.data }, backends: { lite: { type: "sqlite", path: "/etc/prism.db" } }, namespaces: [] }, "prism.yaml"),
      /prism\.yaml: backends\.lite\.path: "\/etc\/prism\.db" is an absolute path/,
    );
  });

  it("file parameters of a PostgreSQL URL (sslrootcert, sslcert, sslkey) follow the same rule", async () => {
    await assert.rejects(
      validateConfig({ server: { data_dir: fs.data }, namespaces: [{ name: "p", backend: { type: "postgres", url: "postgres://u@db/x?sslmode=verify-full&sslrootcert=/etc/ssl/private/key.pem" } }] }, "prism.yaml"),
      /prism\.yaml: namespaces\[0\]\.backend\.url \(sslrootcert\): "\/etc\/ssl\/private\/key\.pem" is an absolute path/,
    );
    const cfg = await validateConfig({ server: { data_dir: fs.data }, namespaces: [{ name: "p", backend: { type: "postgres", url: "postgres://u@db/x?sslmode=verify-full&sslrootcert=certs/ca.pem" } }] }, "prism.yaml");
    assert.equal(new URL(cfg.namespaces[0]!.backend.url).searchParams.get("sslrootcert"), join(fs.data, "certs/ca.pem"));
  });

  it("allowed paths and relative paths are accepted and resolved", async () => {
    const cfg = await validateConfig(
      { server: { data_dir: fs.data, allowed_paths: [fs.allowed] }, namespaces: [sqliteNs("a", join(fs.allowed, "a.db")), sqliteNs("b", "b.db"), { name: "m", backend: { type: "sqlite", path: ":memory:" } }] },
      "prism.yaml",
    );
    assert.equal(cfg.namespaces[0]!.backend.path, join(fs.allowed, "a.db"));
    assert.equal(cfg.namespaces[1]!.backend.path, join(fs.data, "b.db"));
    assert.equal(cfg.namespaces[2]!.backend.path, ":memory:");
  });

  it("prism serve refuses such a file (exit 2, nothing created outside) and prints its data directory when it starts", async () => {
    const bad = join(fs.root, "bad.yaml");
    writeFileSync(bad, `server:\n  data_dir: ${JSON.stringify(fs.data)}\nnamespaces:\n  - name: a\n    backend: { type: sqlite, path: ../outside/a.db }\n`);
    const r = await runPrism(["serve", "--config", bad, "--grpc-port", "0", "--http-port", "0"]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /namespaces\[0\]\.backend\.path: "\.\.\/outside\/a\.db" leaves the data directory/);
    assert.deepEqual(readdirSync(fs.outside), []);

    // Defaults: ./prism-data under the working directory, holding the config store.
    const cwd = mkdtempSync(join(tmpdir(), "prism-cwd-"));
    const p = await startPrism(["--workers", "1", "--grpc-port", "0", "--http-port", "0"], { cwd, env: { PRISM_DATA_DIR: "" } });
    try {
      assert.match(p.stdout(), new RegExp(`^data directory ${resolve(cwd, "prism-data").replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}; config store sqlite .*config\\.db$`, "m"));
      assert.ok(existsSync(join(cwd, "prism-data", "config.db")));
    } finally {
      await p.stop();
      rmSync(cwd, { recursive: true, force: true });
    }
  });
});
