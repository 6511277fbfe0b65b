/**
 * The control-plane commands of `prism` against a real `prism serve`:
 * apply (dry run, create, idempotent re-apply, a changed limit, a namespace
 * moving to a new backend, --prune), ns get / delete / diff, backends,
 * patterns, and validate's explanation of an automatic backend choice.
 */
import { describe, it, before, after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runPrism, startPrism, type PrismProcess } from "./serve-process.js";

const lines = (s: string) => s.trimEnd().split("\n");

test("prism validate explains an automatic choice (chosen and rejected instances) after the ok line", async () => {
  const dir = mkdtempSync(join(tmpdir(), "prism-cli-cp-validate-"));
  try {
    const file = join(dir, "auto.yaml");
    writeFileSync(
      file,
      [
        "backends:",
        "  mem: { type: memstore }",
        "  main: { type: postgres, url: postgres://postgres@127.0.0.1:5432/test }",
        "namespaces:",
        "  - name: durable",
        "    pattern: keyvalue",
        "    backend: { auto: true }",
        "    needs: { persistence: required }",
        "  - name: plain",
        "    backend: mem",
        "",
      ].join("\n"),
    );
    const r = await runPrism(["validate", file]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(lines(r.stdout), [
      `${file}: ok (2 namespaces)`,
      "namespace durable:",
      '  slot keyvalue: chose backend "main" (postgres) for needs {persistence: required}: the only one that satisfies every need',
      '  rejected backend "mem" (memstore): persistence: required, but memstore keyvalue is not durable',
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

describe("prism apply / ns / backends / patterns against a running gateway", () => {
  let srv: PrismProcess;
  let addr: string[];
  const dir = mkdtempSync(join(tmpdir(), "prism-cli-cp-"));
  const file = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  const prism = (...args: string[]) => runPrism([...args, ...addr], { cwd: dir });

  const V1 = [
    "backends:",
    "  mem: { type: memstore }",
    "  store: { type: sqlite, path: a.db }",
    "namespaces:",
    "  - name: orders",
    "    pattern: keyvalue",
    "    backend: store",
    "    limits: { max_value_bytes: 1024 }",
    "  - name: cache",
    "    primitives: [keyvalue, queue]",
    "    backend: mem",
    "",
  ].join("\n");
  const V2 = V1.replace("max_value_bytes: 1024", "max_value_bytes: 2048");
  let v1: string;
  let v2: string;
  let ordersRevision = 0;

  before(async () => {
    v1 = file("v1.yaml", V1);
    v2 = file("v2.yaml", V2);
    // No prism.yaml in cwd: the built-in `default` namespace.
    srv = await startPrism(["--grpc-port", "0", "--http-port", "0", "--workers", "1"], { cwd: dir });
    addr = ["--addr", `ws://127.0.0.1:${srv.httpPort}`];
  });
  after(async () => {
    await srv?.stop("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  });

  it("apply --dry-run lists what it would add and changes nothing", async () => {
    const r = await prism("apply", "-f", v1, "--dry-run");
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(lines(r.stdout), [
      "+ backend mem (memstore)",
      "+ backend store (sqlite)",
      "+ namespace orders (keyvalue on store)",
      "+ namespace cache (keyvalue,queue on mem)",
      `(not in ${v1}, kept: default)`,
      "4 to add, 0 to change, 0 to delete, 0 unchanged",
    ]);
    const ns = await prism("ns", "list");
    assert.equal(ns.code, 0, ns.stderr);
    assert.deepEqual(lines(ns.stdout).map((l) => l.split(/\s+/)[0]), ["NAME", "default"]);
    const be = await prism("backends");
    assert.equal(be.code, 0, be.stderr);
    assert.deepEqual(lines(be.stdout).map((l) => l.trim().split(/\s+/)), [["NAME", "TYPE", "NAMESPACES", "REVISION"]]);
  });

  it("apply creates the backends, then the namespaces; kv works on the new namespace", async () => {
    const r = await prism("apply", "-f", v1);
    assert.equal(r.code, 0, r.stderr);
    const out = lines(r.stdout);
    assert.deepEqual(out.slice(0, 6), [
      "+ backend mem (memstore)",
      "+ backend store (sqlite)",
      "+ namespace orders (keyvalue on store)",
      "+ namespace cache (keyvalue,queue on mem)",
      `(not in ${v1}, kept: default)`,
      "4 to add, 0 to change, 0 to delete, 0 unchanged",
    ]);
    assert.equal(out.length, 10, r.stdout);
    assert.match(out[6]!, /^applied backend mem \(revision \d+\)$/);
    assert.match(out[7]!, /^applied backend store \(revision \d+\)$/);
    assert.match(out[8]!, /^applied namespace orders \(revision \d+\)$/);
    assert.match(out[9]!, /^applied namespace cache \(revision \d+\)$/);

    const ns = await prism("ns", "list");
    assert.match(ns.stdout, /^NAME\s+PRIMITIVES\s+BACKEND$/m);
    assert.match(ns.stdout, /^orders\s+keyvalue\s+sqlite$/m);
    assert.match(ns.stdout, /^cache\s+keyvalue,queue\s+memstore$/m);
    const wide = await prism("ns", "list", "--wide");
    assert.match(wide.stdout, /^NAME\s+PRIMITIVES\s+BACKEND\s+PATTERN\s+SLOTS\s+REVISION$/m);
    assert.match(wide.stdout, /^orders\s+keyvalue\s+sqlite\s+keyvalue\s+keyvalue=store\s+\d+$/m);
    assert.match(wide.stdout, /^cache\s+keyvalue,queue\s+memstore\s+-\s+keyvalue=mem,queue=mem\s+\d+$/m);

    const set = await prism("kv", "set", "o1", "first order", "--ns", "orders");
    assert.equal(set.code, 0, set.stderr);
    const get = await prism("kv", "get", "o1", "--ns", "orders");
    assert.equal(get.code, 0, get.stderr);
    assert.equal(get.stdout, "first order\n");

    const be = await prism("backends");
    assert.equal(be.code, 0, be.stderr);
    assert.match(be.stdout, /^mem\s+memstore\s+cache\s+\d+$/m);
    assert.match(be.stdout, /^store\s+sqlite\s+orders\s+\d+$/m);
  });

  it("a second apply of the same file changes nothing", async () => {
    const r = await prism("apply", "-f", v1);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(lines(r.stdout), [`(not in ${v1}, kept: default)`, "no changes (4 unchanged)"]);
    const verbose = await prism("apply", "-f", v1, "--verbose");
    assert.deepEqual(lines(verbose.stdout), [
      "= backend mem (unchanged)",
      "= backend store (unchanged)",
      "= namespace orders (unchanged)",
      "= namespace cache (unchanged)",
      `(not in ${v1}, kept: default)`,
      "no changes (4 unchanged)",
    ]);
  });

  it("a changed limit shows ~ for that namespace only (ns diff and apply), then takes effect", async () => {
    const big = "x".repeat(1500);
    const refused = await prism("kv", "set", "big", big, "--ns", "orders");
    assert.equal(refused.code, 1, "1500 bytes are over the 1024-byte limit");

    const diff = await prism("ns", "diff", "-f", v2);
    assert.equal(diff.code, 0, diff.stderr);
    assert.deepEqual(lines(diff.stdout), ["~ namespace orders: limits.max_value_bytes 1024 → 2048", `(not in ${v2}, kept: default)`, "0 to add, 1 to change, 0 to delete, 1 unchanged"]);

    const r = await prism("apply", "-f", v2);
    assert.equal(r.code, 0, r.stderr);
    const out = lines(r.stdout);
    assert.deepEqual(out.slice(0, 3), ["~ namespace orders: limits.max_value_bytes 1024 → 2048", `(not in ${v2}, kept: default)`, "0 to add, 1 to change, 0 to delete, 3 unchanged"]);
    assert.equal(out.length, 4, r.stdout);
    const m = /^applied namespace orders \(revision (\d+)\)$/.exec(out[3]!);
    assert.ok(m, out[3]);
    ordersRevision = Number(m[1]);

    const ok = await prism("kv", "set", "big", big, "--ns", "orders");
    assert.equal(ok.code, 0, ok.stderr);
  });

  it("ns get shows the pattern, the slots, the revision, the explanation and the config", async () => {
    const r = await prism("ns", "get", "orders");
    assert.equal(r.code, 0, r.stderr);
    const out = lines(r.stdout);
    assert.equal(out[0], "name:        orders");
    assert.ok(out.includes("pattern:     keyvalue"), r.stdout);
    assert.ok(out.includes("primitives:  keyvalue"), r.stdout);
    assert.ok(out.includes(`revision:    ${ordersRevision}`), r.stdout);
    const slots = out.indexOf("slots:");
    assert.ok(slots > 0, r.stdout);
    assert.match(out[slots + 1]!, /^  SLOT\s+INSTANCE\s+TYPE\s+AUTO$/);
    assert.match(out[slots + 2]!, /^  keyvalue\s+store\s+sqlite\s+no$/);
    assert.equal(out[slots + 3], "explanation:");
    assert.equal(out[slots + 4], '  slot keyvalue: backend "store" (sqlite), named by the namespace');
    assert.equal(out[slots + 5], "config:");
    assert.match(r.stdout, /^ {6}"max_value_bytes": 2048$/m);

    const missing = await prism("ns", "get", "nope");
    assert.equal(missing.code, 1);
    assert.equal(missing.stdout, "");
    assert.match(missing.stderr, /^prism ns get: PRISM_ERR_UNKNOWN_NAMESPACE: namespace "nope" is not configured$/m);
  });

  it("a namespace moving to a new backend: compared with the file, applied after the backend", async () => {
    const v2b = file("v2b.yaml", V2.replace("  store:", "  mem2: { type: memstore }\n  store:").replace("    primitives: [keyvalue, queue]\n    backend: mem", "    primitives: [keyvalue, queue]\n    backend: mem2"));
    const r = await prism("apply", "-f", v2b);
    assert.equal(r.code, 0, r.stderr);
    const out = lines(r.stdout);
    assert.deepEqual(out.slice(0, 4), [
      "+ backend mem2 (memstore)",
      '~ namespace cache: backend "mem" → "mem2" (compared with the file: the gateway checks it once the backends are applied)',
      `(not in ${v2b}, kept: default)`,
      "1 to add, 1 to change, 0 to delete, 3 unchanged",
    ]);
    assert.equal(out.length, 6, r.stdout);
    assert.match(out[4]!, /^applied backend mem2 \(revision \d+\)$/);
    assert.match(out[5]!, /^applied namespace cache \(revision \d+\)$/);
    const be = await prism("backends");
    assert.match(be.stdout, /^mem\s+memstore\s+-\s+\d+$/m);
    assert.match(be.stdout, /^mem2\s+memstore\s+cache\s+\d+$/m);
  });

  it("without --prune absent entries are kept; --prune deletes them (namespaces, then backends)", async () => {
    const v3 = file("v3.yaml", ["backends:", "  store: { type: sqlite, path: a.db }", "namespaces:", "  - name: orders", "    pattern: keyvalue", "    backend: store", "    limits: { max_value_bytes: 2048 }", ""].join("\n"));
    const kept = await prism("apply", "-f", v3, "--dry-run");
    assert.equal(kept.code, 0, kept.stderr);
    assert.deepEqual(lines(kept.stdout), [`(not in ${v3}, kept: cache, default)`, `(backends not in ${v3}, kept: mem, mem2)`, "no changes (2 unchanged)"]);

    const r = await prism("apply", "-f", v3, "--prune");
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(lines(r.stdout), [
      "- namespace cache",
      "- namespace default",
      "- backend mem (memstore)",
      "- backend mem2 (memstore)",
      "0 to add, 0 to change, 4 to delete, 2 unchanged",
      "deleted namespace cache",
      "deleted namespace default",
      "deleted backend mem",
      "deleted backend mem2",
    ]);
    const ns = await prism("ns", "list");
    assert.deepEqual(lines(ns.stdout).map((l) => l.split(/\s+/)[0]), ["NAME", "orders"]);
    const gone = await prism("kv", "get", "k", "--ns", "cache");
    assert.equal(gone.code, 1);
    const be = await prism("backends");
    assert.deepEqual(lines(be.stdout).map((l) => l.split(/\s+/).slice(0, 3)), [["NAME", "TYPE", "NAMESPACES"], ["store", "sqlite", "orders"]]);
    // The data of the kept namespace is still there.
    const get = await prism("kv", "get", "o1", "--ns", "orders");
    assert.equal(get.stdout, "first order\n");
  });

  it("an entry the gateway refuses: the ! line, exit 1, nothing applied; a bad file: exit 2", async () => {
    // Allowed by the file's own server.allowed_paths, refused by the gateway (its policy is its own prism.yaml's).
    const abs = file("abs.yaml", `server: { allowed_paths: [${JSON.stringify(dir)}] }\nbackends:\n  extra: { type: memstore }\nnamespaces:\n  - name: abs\n    backend: { type: sqlite, path: ${JSON.stringify(join(dir, "abs.db"))} }\n`);
    const r = await prism("apply", "-f", abs);
    assert.equal(r.code, 1);
    const out = lines(r.stdout);
    assert.equal(out.length, 5, r.stdout);
    assert.equal(out[0], "+ backend extra (memstore)");
    assert.match(out[1]!, /^! namespace abs: PRISM_ERR_INVALID_ARGUMENT: namespace: backend\.path: ".*abs\.db" is an absolute path; /);
    assert.equal(out[2], `(not in ${abs}, kept: orders)`);
    assert.equal(out[3], `(backends not in ${abs}, kept: store)`);
    assert.equal(out[4], "1 to add, 0 to change, 0 to delete, 0 unchanged, 1 refused");
    assert.equal(r.stderr, "prism apply: the gateway refused an entry (the ! lines); nothing applied\n");
    const be = await prism("backends");
    assert.doesNotMatch(be.stdout, /^extra\s/m);
    const ns = await prism("ns", "list");
    assert.doesNotMatch(ns.stdout, /^abs\s/m);

    // A namespace naming a backend that is new in the file: checked by the gateway with that backend inline.
    const inl = file("inl.yaml", `server: { allowed_paths: [${JSON.stringify(dir)}] }\nbackends:\n  disk: { type: sqlite, path: ${JSON.stringify(join(dir, "disk.db"))} }\nnamespaces:\n  - name: ondisk\n    backend: disk\n`);
    const r2 = await prism("apply", "-f", inl, "--dry-run");
    assert.equal(r2.code, 1);
    assert.match(r2.stdout, /^! backend disk: PRISM_ERR_INVALID_ARGUMENT: .*is an absolute path/m);

    const bad = file("bad.yaml", "namespaces:\n  - name: x\n    backend: nosuch\n");
    const b = await prism("apply", "-f", bad);
    assert.equal(b.code, 2);
    assert.match(b.stderr, new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: namespaces\\[0\\]\\.backend: unknown backend instance "nosuch"`, "m"));
    assert.equal(b.stdout, "");

    const usage = await prism("apply", "--dry-run");
    assert.equal(usage.code, 64);
    assert.match(usage.stderr, /usage: prism apply -f FILE/);
  });

  it("ns delete removes a namespace; deleting it again: not found, exit 1", async () => {
    const extra = file("extra.yaml", "namespaces:\n  - name: scratch\n    backend: { type: memstore }\n");
    const a = await prism("apply", "-f", extra);
    assert.equal(a.code, 0, a.stderr);
    assert.match(a.stdout, /^applied namespace scratch \(revision \d+\)$/m);
    const d = await prism("ns", "delete", "scratch");
    assert.equal(d.code, 0, d.stderr);
    assert.equal(d.stdout, "deleted namespace scratch\n");
    const again = await prism("ns", "delete", "scratch");
    assert.equal(again.code, 1);
    assert.equal(again.stderr, "prism ns delete: namespace scratch: not found\n");
    const get = await prism("ns", "get", "scratch");
    assert.equal(get.code, 1);
  });

  it("backends --types lists the drivers with their interfaces", async () => {
    const r = await prism("backends", "--types");
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^TYPE\s+INTERFACES$/m);
    assert.match(r.stdout, /^memstore\s+\S*\bkeyvalue_basic\b\S*$/m);
    assert.match(r.stdout, /^sqlite\s+\S*\bqueue_basic\b\S*$/m);
  });

  it("patterns lists the four primitive patterns and their slots' interfaces", async () => {
    const r = await prism("patterns");
    assert.equal(r.code, 0, r.stderr);
    // One block per pattern: its line, then indented lines.
    const blocks = new Map<string, string[]>();
    let current: string[] = [];
    for (const l of lines(r.stdout)) {
      if (!l.startsWith(" ")) blocks.set(l.split(":")[0]!, (current = [l]));
      else current.push(l);
    }
    for (const p of ["keyvalue", "pubsub", "queue", "stream"]) {
      const b = blocks.get(p);
      assert.ok(b, `pattern ${p} in:\n${r.stdout}`);
      assert.equal(b[1], `  serves: ${p}`);
      assert.match(b[2]!, new RegExp(`^  slot ${p}: `));
      assert.equal(b[3], `    requires:    ${p}_basic`);
      assert.match(b[4]!, /^ {4}optional: {4}\S/);
      assert.match(b[5]!, /^ {4}recommended: \S/);
    }
    assert.ok(blocks.get("keyvalue")!.includes("    requires:    keyvalue_basic"));
  });
});
