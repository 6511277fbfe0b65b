import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, defaultConfig, loadConfigFile, parseNamespaceText, validateConfig } from "../../src/config/load.js";
import { limitsOf } from "../../src/config/schema.js";

function tmpFile(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), "prism-config-"));
  const f = join(dir, "prism.yaml");
  writeFileSync(f, text);
  return f;
}

test("an unknown backend type is refused with file, path and reason", async () => {
  const f = tmpFile(`
namespaces:
  - name: a
    backend: { type: memstore }
  - name: b
    backend: { type: memstore }
  - name: c
    backend: { type: redsi }
`);
  await assert.rejects(loadConfigFile(f), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, new RegExp(`^${f.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: namespaces\\[2\\]\\.backend\\.type: unknown backend "redsi"`));
    return true;
  });
});

test("schema problems name the path", async () => {
  await assert.rejects(
    validateConfig({ namespaces: [{ name: "ok", backend: { type: "memstore" }, limits: { max_key_bytes: -1 } }] }, "x.yaml"),
    /x\.yaml: namespaces\[0\]\.limits\.max_key_bytes: /,
  );
  await assert.rejects(validateConfig({ namespaces: [{ name: "bad name!", backend: { type: "memstore" } }] }, "x.yaml"), /namespaces\[0\]\.name: /);
  await assert.rejects(validateConfig({ namespaces: [{ name: "a", backend: { type: "memstore" }, primitives: ["graph"] }] }, "x.yaml"), /namespaces\[0\]\.primitives\[0\]/);
  await assert.rejects(validateConfig({ nmespaces: [] }, "x.yaml"), /x\.yaml: .*nmespaces/);
  await assert.rejects(
    validateConfig({ namespaces: [{ name: "a", backend: { type: "memstore" } }, { name: "a", backend: { type: "memstore" } }] }, "x.yaml"),
    /namespaces\[1\]\.name: duplicate namespace "a"/,
  );
});

test("backend options are validated by the driver's schema", async () => {
  await assert.rejects(validateConfig({ namespaces: [{ name: "a", backend: { type: "sqlite" } }] }, "x.yaml"), /namespaces\[0\]\.backend\.path/);
});

test("validated backend options carry the schema's defaults (the router passes them to the driver as they are)", async () => {
  const cfg = await validateConfig(
    { namespaces: [{ name: "r", backend: { type: "redis", db: 2 } }, { name: "k", primitives: ["pubsub"], backend: { type: "kafka", brokers: "k1:9092" } }] },
    "x.yaml",
  );
  assert.deepEqual(cfg.namespaces[0]!.backend, { type: "redis", url: "redis://127.0.0.1:6379", key_prefix: "prism", db: 2 });
  // The schema's transforms ran too: one broker string becomes a list.
  assert.deepEqual(cfg.namespaces[1]!.backend.brokers, ["k1:9092"]);
  const ns = await parseNamespaceText("name: p\nbackend: { type: postgres }");
  assert.equal(ns.backend.pool_max, 10);
});

test("invalid YAML is refused naming the file", async () => {
  const f = tmpFile("namespaces: [\n  - {");
  await assert.rejects(loadConfigFile(f), (e: unknown) => e instanceof ConfigError && e.message.startsWith(`${f}: invalid YAML`));
});

test("${ENV} substitution, with fallback, and a missing variable named", async () => {
  const cfg = await validateConfig(
    // Absolute paths: the operator allows them (src/config/paths.ts refuses them otherwise).
    { server: { allowed_paths: ["/data", "/tmp"] }, namespaces: [{ name: "a", backend: { type: "sqlite", path: "${PRISM_T_DIR}/a.db" } }, { name: "b", backend: { type: "sqlite", path: "${PRISM_T_NOPE:-/tmp}/b.db" } }] },
    "x.yaml",
    { PRISM_T_DIR: "/data" },
  );
  assert.equal(cfg.namespaces[0]!.backend.path, "/data/a.db");
  assert.equal(cfg.namespaces[1]!.backend.path, "/tmp/b.db");
  await assert.rejects(
    validateConfig({ namespaces: [{ name: "a", backend: { type: "sqlite", path: "${PRISM_T_MISSING}" } }] }, "x.yaml", {}),
    /namespaces\[0\]\.backend\.path: environment variable PRISM_T_MISSING is not set/,
  );
});

test("defaults: no file means namespace default on memstore with every primitive and the documented limits", () => {
  const cfg = defaultConfig();
  assert.equal(cfg.server.host, "127.0.0.1");
  assert.equal(cfg.server.grpc_port, 8980);
  assert.equal(cfg.server.http_port, 8981);
  assert.deepEqual(cfg.namespaces.map((n) => [n.name, n.backend.type, n.primitives]), [["default", "memstore", ["keyvalue", "pubsub", "queue", "stream"]]]);
  const l = limitsOf(cfg.namespaces[0]!);
  assert.equal(l.maxKeyBytes, 1024);
  assert.equal(l.maxValueBytes, 4 * 1024 * 1024);
});

test("a single namespace parses from YAML or JSON for Admin.ApplyNamespace", async () => {
  const a = await parseNamespaceText("name: t1\nbackend: {type: memstore}\nprimitives: [keyvalue]\n");
  assert.deepEqual(a.primitives, ["keyvalue"]);
  const b = await parseNamespaceText(JSON.stringify({ name: "t2", backend: { type: "memstore" } }));
  assert.equal(b.name, "t2");
  await assert.rejects(parseNamespaceText("name: t3\nbackend: {type: nope}"), /backend\.type: unknown backend "nope"/);
});
