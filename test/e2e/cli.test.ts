import { availableParallelism } from "node:os";
/** The `prism` command: validate, serve with the default config, kv and ns through the SDK, graceful stop. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runPrism, startPrism } from "./serve-process.js";

test("prism validate: a good file is ok, a bad one names file, path and reason (exit 2)", async () => {
  const dir = mkdtempSync(join(tmpdir(), "prism-cli-"));
  try {
    const good = join(dir, "good.yaml");
    writeFileSync(
      good,
      `server:\n  data_dir: ${JSON.stringify(dir)}\nnamespaces:\n  - name: a\n    backend: { type: memstore }\n  - name: b\n    primitives: [keyvalue, queue]\n    backend: { type: sqlite, path: b.db }\n`,
    );
    const ok = await runPrism(["validate", good]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout.trim(), `${good}: ok (2 namespaces)`);

    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, `namespaces:\n  - name: a\n    backend: { type: memstore }\n  - name: b\n    backend: { type: redsi }\n`);
    const r = await runPrism(["validate", bad]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /namespaces\[1\]\.backend\.type: unknown backend "redsi"/);
    assert.ok(r.stderr.startsWith(`${bad}: `), r.stderr);

    const missing = await runPrism(["validate", join(dir, "nope.yaml")]);
    assert.equal(missing.code, 2);

    const serveBad = await runPrism(["serve", "--config", bad, "--grpc-port", "0", "--http-port", "0"]);
    assert.equal(serveBad.code, 2);
    assert.match(serveBad.stderr, /unknown backend "redsi"/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("prism serve with no config serves `default`; kv and ns commands round-trip; SIGTERM exits 0", async () => {
  const cwd = mkdtempSync(join(tmpdir(), "prism-cli-serve-")); // no prism.yaml here
  const srv = await startPrism(["--grpc-port", "0", "--http-port", "0"], { cwd });
  try {
    // No config: the default is one worker per core.
    const n = availableParallelism();
    assert.match(srv.stdout(), new RegExp(`^prism 0\\.1\\.0 serving gRPC 127\\.0\\.0\\.1:\\d+, HTTP/WebSocket 127\\.0\\.0\\.1:\\d+ \\(${n} workers?\\)$`, "m"));
    assert.match(srv.stdout(), /^namespace default: keyvalue, pubsub, queue, stream on memstore( \(state on worker \d+\))?$/m);
    const addr = ["--addr", `ws://127.0.0.1:${srv.httpPort}`];

    const set = await runPrism(["kv", "set", "greeting", "hello world", ...addr]);
    assert.equal(set.code, 0, set.stderr);
    const get = await runPrism(["kv", "get", "greeting", ...addr]);
    assert.equal(get.code, 0, get.stderr);
    assert.equal(get.stdout, "hello world\n", "the value and a newline");
    const raw = await runPrism(["kv", "get", "greeting", "--raw", ...addr]);
    assert.equal(raw.stdout, "hello world", "--raw: the bytes only");

    // No --addr: $PRISM_ADDR names the gateway.
    const viaGrpc = await runPrism(["kv", "get", "greeting", "--ns", "default"], { env: { PRISM_ADDR: `grpc://127.0.0.1:${srv.grpcPort}` } });
    assert.equal(viaGrpc.stdout, "hello world\n", viaGrpc.stderr);

    const del = await runPrism(["kv", "del", "greeting", ...addr]);
    assert.equal(del.code, 0, del.stderr);
    const absent = await runPrism(["kv", "get", "greeting", ...addr]);
    assert.equal(absent.code, 1);
    assert.equal(absent.stdout, "");
    assert.match(absent.stderr, /not found/);

    const unknownNs = await runPrism(["kv", "get", "k", "--ns", "nope", ...addr]);
    assert.equal(unknownNs.code, 1);
    assert.match(unknownNs.stderr, /nope/);

    const ns = await runPrism(["ns", "list", ...addr]);
    assert.equal(ns.code, 0, ns.stderr);
    assert.match(ns.stdout, /^NAME\s+PRIMITIVES\s+BACKEND$/m);
    assert.match(ns.stdout, /^default\s+keyvalue,pubsub,queue,stream\s+memstore$/m);

    const usage = await runPrism(["kv", "get"]);
    assert.equal(usage.code, 64);
    assert.match(usage.stderr, /\$PRISM_ADDR/, "the usage names $PRISM_ADDR");
  } finally {
    const code = await srv.stop("SIGTERM");
    rmSync(cwd, { recursive: true, force: true });
    assert.equal(code, 0, srv.stderr());
  }
});

test("a gateway that never answers fails a CLI command after PRISM_CLI_TIMEOUT_MS instead of hanging it", async () => {
  const { WebSocketServer } = await import("ws");
  // Accepts the WebSocket upgrade, then never answers a frame.
  const silent = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise<void>((r) => silent.once("listening", () => r()));
  const port = (silent.address() as { port: number }).port;
  try {
    const t0 = Date.now();
    const r = await runPrism(["kv", "get", "k", "--ns", "default", "--addr", `ws://127.0.0.1:${port}`], { env: { PRISM_CLI_TIMEOUT_MS: "500" } });
    assert.notEqual(r.code, 0, `the command failed (stdout ${r.stdout})`);
    assert.match(r.stderr, /DEADLINE_EXCEEDED|deadline/i, r.stderr);
    assert.ok(Date.now() - t0 < 20_000, "it ended long before any outer test timeout");
  } finally {
    for (const c of silent.clients) c.terminate();
    silent.close();
  }
});
