// The audit log end to end (src/audit): a known mix of calls over HTTP, gRPC
// and WebSocket — allowed, refused by validation, by an unknown namespace,
// unauthenticated (no key or a wrong one) and authenticated but not allowed
// (PERMISSION_DENIED), on each ingress (API-key auth on) — leaves exactly one
// record per call with
// principal, namespace, method, key (hidden / masked per namespace), result,
// trace id, ingress and peer; `prism audit verify` passes on the file and
// fails naming the line once a line is deleted.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, Code, PrismError } from "@prism/client";
import { startServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { maskKey } from "../../src/pii/mask.js";
import { runPrism } from "./serve-process.js";

const tag = randomUUID().slice(0, 8);
const A = `aud-a-${tag}`;
const H = `aud-hidden-${tag}`;
const M = `aud-mask-${tag}`;
const KEY = `key-${tag}`;
/** A key whose only role reads another namespace: every call below is PERMISSION_DENIED. */
const RO_KEY = `ro-key-${tag}`;
const utf8 = (s: string) => new TextEncoder().encode(s);
const TRACE = "0af7651916cd43dd8448eb211c80319c";

test("one audit record per call over HTTP, gRPC and WebSocket; verify passes, then fails on a deleted line", { timeout: 60_000 }, async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "prism-audit-e2e-"));
  const config = await validateConfig(
    {
      server: { data_dir: dataDir, access_log_sample: 0 },
      audit: { file: "audit/audit.jsonl", hash_chain: true },
      auth: {
        api_keys: [
          { name: "svc", hash: `sha256:${createHash("sha256").update(KEY).digest("hex")}`, roles: ["rw"] },
          { name: "ro", hash: `sha256:${createHash("sha256").update(RO_KEY).digest("hex")}`, roles: ["ro-other"] },
        ],
        roles: { rw: [{ namespaces: ["*"], permissions: ["read", "write", "admin"] }], "ro-other": [{ namespaces: [`other-${tag}`], permissions: ["read"] }] },
      },
      namespaces: [
        { name: A, backend: { type: "memstore" }, limits: { max_value_bytes: 16 } },
        { name: H, backend: { type: "memstore" }, audit: { hide_keys: true } },
        { name: M, backend: { type: "memstore" }, pii: "mask" },
      ],
    },
    "audit-e2e",
  );
  const server = await startServer({ config, host: "127.0.0.1", grpcPort: 0, httpPort: 0, log: () => {} });
  const base = `http://127.0.0.1:${server.httpPort}`;
  const auth = { "x-api-key": KEY };
  /** [ingress, method, ns, key, result, principal_kind] per call, in order. */
  const expected: (string | undefined)[][] = [];
  const ws = await connect(`ws://127.0.0.1:${server.httpPort}`, { apiKey: KEY });
  const grpc = await connect(`grpc://127.0.0.1:${server.grpcPort}`, { apiKey: KEY });
  const wsRo = await connect(`ws://127.0.0.1:${server.httpPort}`, { apiKey: RO_KEY });
  const grpcRo = await connect(`grpc://127.0.0.1:${server.grpcPort}`, { apiKey: RO_KEY });
  const wsAnon = await connect(`ws://127.0.0.1:${server.httpPort}`);
  const grpcAnon = await connect(`grpc://127.0.0.1:${server.grpcPort}`);
  const refused = (code: Code) => (e: unknown) => e instanceof PrismError && e.code === code;
  try {
    // HTTP
    let r = await fetch(`${base}/v1/ns/${A}/kv/k1`, { method: "PUT", body: "v1", headers: { ...auth, traceparent: `00-${TRACE}-b7ad6b7169203331-01` } });
    assert.equal(r.status, 200);
    expected.push(["http", "KeyValue/Set", A, "k1", "OK", "apikey"]);
    r = await fetch(`${base}/v1/ns/${A}/kv/k1`, { headers: auth });
    assert.equal(r.status, 200);
    expected.push(["http", "KeyValue/Get", A, "k1", "OK", "apikey"]);
    r = await fetch(`${base}/v1/ns/nope-${tag}/kv/k`, { headers: auth });
    assert.equal(r.status, 404);
    expected.push(["http", "KeyValue/Get", `nope-${tag}`, "k", "NOT_FOUND", "apikey"]);
    r = await fetch(`${base}/v1/KeyValue/Exists`, { method: "POST", body: JSON.stringify({ key: "k" }), headers: { ...auth, "content-type": "application/json" } });
    assert.equal(r.status, 400);
    expected.push(["http", "KeyValue/Exists", undefined, "k", "INVALID_ARGUMENT", "apikey"]);
    r = await fetch(`${base}/v1/ns/${A}/kv/k1`);
    assert.equal(r.status, 401, "no credentials");
    expected.push(["http", "KeyValue/Get", A, "k1", "UNAUTHENTICATED", "anonymous"]);
    r = await fetch(`${base}/v1/ns/${A}/kv/k1`, { headers: { "x-api-key": "wrong" } });
    assert.equal(r.status, 401, "a wrong key");
    expected.push(["http", "KeyValue/Get", A, "k1", "UNAUTHENTICATED", "anonymous"]);

    // gRPC
    await grpc.kv(A).set("g1", utf8("gv"));
    expected.push(["grpc", "KeyValue/Set", A, "g1", "OK", "apikey"]);
    assert.deepEqual(await grpc.kv(A).get("g1"), utf8("gv"));
    expected.push(["grpc", "KeyValue/Get", A, "g1", "OK", "apikey"]);
    await assert.rejects(grpc.kv(`nope-${tag}`).get("x"), (e: unknown) => e instanceof PrismError && e.code === Code.NOT_FOUND);
    expected.push(["grpc", "KeyValue/Get", `nope-${tag}`, "x", "NOT_FOUND", "apikey"]);
    await grpc.pubsub(A).publish(`t.${tag}`, utf8("m"));
    expected.push(["grpc", "PubSub/Publish", A, `t.${tag}`, "OK", "apikey"]);

    // WebSocket
    await assert.rejects(ws.kv(A).set("big", utf8("x".repeat(20))), (e: unknown) => e instanceof PrismError && e.code === Code.INVALID_ARGUMENT);
    expected.push(["ws", "KeyValue/Set", A, "big", "INVALID_ARGUMENT", "apikey"]);
    await ws.queue(A).enqueue(`q-${tag}`, utf8("m"));
    expected.push(["ws", "Queue/Enqueue", A, `q-${tag}`, "OK", "apikey"]);
    await ws.kv(H).set("hidden-key", utf8("v"));
    expected.push(["ws", "KeyValue/Set", H, undefined, "OK", "apikey"]);
    await ws.kv(M).set("alice@example.com", utf8("v"));
    expected.push(["ws", "KeyValue/Set", M, maskKey("alice@example.com"), "OK", "apikey"]);
    await ws.admin.listNamespaces();
    expected.push(["ws", "Admin/ListNamespaces", undefined, undefined, "OK", "apikey"]);

    // Refused by auth, on every ingress: authenticated but not allowed, and not authenticated.
    r = await fetch(`${base}/v1/ns/${A}/kv/k1`, { headers: { "x-api-key": RO_KEY } });
    assert.equal(r.status, 403, "ro may not read A");
    expected.push(["http", "KeyValue/Get", A, "k1", "PERMISSION_DENIED", "apikey"]);
    r = await fetch(`${base}/v1/ns/${A}/kv/k2`, { method: "PUT", body: "v", headers: { "x-api-key": RO_KEY } });
    assert.equal(r.status, 403, "ro may not write A");
    expected.push(["http", "KeyValue/Set", A, "k2", "PERMISSION_DENIED", "apikey"]);
    await assert.rejects(grpcRo.kv(A).get("g1"), refused(Code.PERMISSION_DENIED));
    expected.push(["grpc", "KeyValue/Get", A, "g1", "PERMISSION_DENIED", "apikey"]);
    await assert.rejects(grpcAnon.kv(A).get("g1"), refused(Code.UNAUTHENTICATED));
    expected.push(["grpc", "KeyValue/Get", A, "g1", "UNAUTHENTICATED", "anonymous"]);
    await assert.rejects(wsRo.kv(A).set("w1", utf8("v")), refused(Code.PERMISSION_DENIED));
    expected.push(["ws", "KeyValue/Set", A, "w1", "PERMISSION_DENIED", "apikey"]);
    await assert.rejects(wsRo.admin.listNamespaces(), refused(Code.PERMISSION_DENIED));
    expected.push(["ws", "Admin/ListNamespaces", undefined, undefined, "PERMISSION_DENIED", "apikey"]);
    await assert.rejects(wsAnon.kv(A).get("w1"), refused(Code.UNAUTHENTICATED));
    expected.push(["ws", "KeyValue/Get", A, "w1", "UNAUTHENTICATED", "anonymous"]);
  } finally {
    await ws.close();
    await grpc.close();
    await wsRo.close();
    await grpcRo.close();
    await wsAnon.close();
    await grpcAnon.close();
    await server.close();
  }

  const file = join(dataDir, "audit/audit.jsonl");
  const text = readFileSync(file, "utf8");
  const records = text.trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(
    records.map((x) => [x.ingress, x.method, x.ns, x.key, x.result, x.principal_kind]),
    expected,
    "exactly one record per call, in order",
  );
  for (const x of records) {
    assert.match(x.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.match(x.peer, /127\.0\.0\.1/);
    assert.match(x.hash, /^[0-9a-f]{64}$/);
    // Refused for lack of permission: the record names who was refused (the ro key), not a stand-in.
    if (x.principal_kind === "apikey") assert.match(x.principal, x.result === "PERMISSION_DENIED" ? /\bro\b/ : /svc/);
    else assert.equal(x.principal, "anonymous");
  }
  assert.equal(records[0].trace_id, TRACE, "the caller's traceparent");
  assert.ok(!text.includes("hidden-key") && !text.includes("alice@example.com"), "hidden and masked keys do not appear");
  assert.ok(!text.includes('"v1"') && !text.includes(KEY), "no values, no credentials");

  const ok = await runPrism(["audit", "verify", file]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, new RegExp(`ok: ${expected.length} record\\(s\\)`));

  const lines = text.trimEnd().split("\n");
  const tampered = join(dataDir, "tampered.jsonl");
  writeFileSync(tampered, [...lines.slice(0, 4), ...lines.slice(5)].join("\n") + "\n"); // line 5 deleted
  const bad = await runPrism(["audit", "verify", tampered]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /BROKEN at .*tampered\.jsonl:5: .*deleted/);
});

test("--workers 2: each worker writes its own chained file; calls forwarded over the mesh are recorded once", { timeout: 60_000 }, async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "prism-audit-cluster-"));
  const cfgFile = join(dataDir, "prism.yaml");
  const MEM = `aud-mem-${tag}`;
  writeFileSync(cfgFile, JSON.stringify({ server: { data_dir: dataDir }, audit: { file: "audit.jsonl" }, namespaces: [{ name: MEM, backend: { type: "memstore" } }] }));
  const { freePort, startPrism } = await import("./serve-process.js");
  const [gp, hp] = [await freePort(), await freePort()];
  const proc = await startPrism(["--config", cfgFile, "--workers", "2", "--grpc-port", String(gp), "--http-port", String(hp)]);
  const N = 12;
  try {
    // Fresh connections: the primary hands them to both workers; memstore state lives on one, so half are forwarded.
    for (let i = 0; i < N; i++) {
      const r = await fetch(`http://127.0.0.1:${hp}/v1/ns/${MEM}/kv/k${i}`, { method: "PUT", body: "v", headers: { connection: "close" } });
      assert.equal(r.status, 200);
    }
  } finally {
    assert.equal(await proc.stop(), 0);
  }
  const files = [0, 1].map((w) => join(dataDir, `audit.w${w}.jsonl`));
  const perFile = files.map((f) => readFileSync(f, "utf8").trimEnd().split("\n").filter(Boolean).map((l) => JSON.parse(l)));
  const all = perFile.flat();
  assert.equal(all.length, N, "one record per call in all");
  assert.deepEqual(all.map((r) => r.key).sort(), Array.from({ length: N }, (_, i) => `k${i}`).sort());
  assert.ok(all.every((r) => r.ingress === "http" && r.method === "KeyValue/Set" && r.result === "OK"));
  perFile.forEach((recs, w) => assert.ok(recs.every((r) => r.worker === w)));
  // Both workers received calls, so the one that does not own the namespace forwarded its share over the mesh.
  perFile.forEach((recs, w) => assert.ok(recs.length > 0, `worker ${w} received calls`));
  for (const f of files) {
    const v = await runPrism(["audit", "verify", f]);
    assert.equal(v.code, 0, v.stderr);
  }
});
