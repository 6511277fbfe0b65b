/**
 * Observability of `prism serve` as a real process:
 * - with --workers 2, calls land on both workers and ONE scrape of /metrics
 *   returns the whole gateway's counts, exactly (forwarded mesh calls count once);
 * - with OTEL_EXPORTER_OTLP_ENDPOINT set, an OTLP/HTTP receiver started here
 *   gets a server span in the caller's trace and a backend span under it.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes, randomUUID } from "node:crypto";
import { freePort, startPrism, type PrismProcess } from "./serve-process.js";
import { asObject, hexId, httpCall, parseProm, requestCounts, select, spanAttr, startOtlpReceiver, type OtlpReceiver } from "./observability-helpers.js";

const tag = randomUUID().slice(0, 8);
const dir = mkdtempSync(join(tmpdir(), "prism-obs-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function writeConfig(name: string, lines: string[]): string {
  const path = join(dir, name);
  writeFileSync(path, lines.join("\n"));
  return path;
}

describe("metrics with --workers 2", () => {
  const NS = `obsw-${tag}`;
  const NS2 = `obsw2-${tag}`;
  let srv: PrismProcess;

  before(async () => {
    const cfg = writeConfig("workers.yaml", [
      "namespaces:",
      `  - name: ${NS}`,
      "    backend: { type: memstore }",
      "    limits: { max_value_bytes: 8 }",
      `  - name: ${NS2}`,
      "    backend: { type: memstore }",
    ]);
    const [grpcPort, httpPort] = [await freePort(), await freePort()];
    srv = await startPrism(["--workers", "2", "--config", cfg, "--grpc-port", String(grpcPort), "--http-port", String(httpPort)]);
  });
  after(async () => {
    await srv?.stop();
  });

  test("one scrape returns every worker's calls, exactly", { timeout: 60_000 }, async () => {
    const port = srv.httpPort;
    const expected = new Map<string, number>();
    const add = (k: string, n = 1) => expected.set(k, (expected.get(k) ?? 0) + n);
    // Each call on its own connection: the primary deals connections out round-robin.
    const workersSeen = new Set<number>();
    let health = 0;
    while (health < 6 || (workersSeen.size < 2 && health < 40)) {
      const h = await httpCall(port, "POST", "/v1/Admin/Health", "{}", { "content-type": "application/json" });
      assert.equal(h.status, 200, h.body.toString());
      health++;
      workersSeen.add(Number(JSON.parse(h.body.toString()).workerIndex ?? 0));
    }
    add("_admin|Admin/Health|none|OK", health);
    assert.deepEqual([...workersSeen].sort(), [0, 1], "calls reached both workers");
    for (let i = 0; i < 10; i++) assert.equal((await httpCall(port, "PUT", `/v1/ns/${NS}/kv/k${i}`, "v")).status, 200);
    add(`${NS}|KeyValue/Set|memstore|OK`, 10);
    for (let i = 0; i < 3; i++) assert.equal((await httpCall(port, "PUT", `/v1/ns/${NS}/kv/big`, "0123456789")).status, 400);
    add(`${NS}|KeyValue/Set|memstore|INVALID_ARGUMENT`, 3);
    for (let i = 0; i < 5; i++) assert.equal((await httpCall(port, "GET", `/v1/ns/${NS2}/kv/k${i}`)).status, 404);
    add(`${NS2}|KeyValue/Get|memstore|OK`, 5);
    for (let i = 0; i < 4; i++) assert.equal((await httpCall(port, "DELETE", `/v1/ns/nope-${tag}/kv/k`)).status, 404);
    add(`_unknown|KeyValue/Delete|none|NOT_FOUND`, 4);

    const res = await httpCall(port, "GET", "/metrics");
    assert.equal(res.status, 200);
    const prom = parseProm(res.body.toString());
    assert.deepEqual(asObject(requestCounts(prom)), asObject(expected));
    assert.equal(select(prom, "prism_scrape_workers_missing")[0]?.value, 0);
    const sum = (name: string, labels: Record<string, string>) => select(prom, name, labels).reduce((a, s) => a + s.value, 0);
    assert.equal(sum("prism_request_duration_seconds_count", { namespace: NS }), 13);
    assert.equal(sum("prism_request_bytes_total", { namespace: NS, method: "KeyValue/Set" }), 10 + 30);
    assert.equal(sum("prism_requests_in_flight", {}), 0);
    // Each namespace's readiness, reported once per namespace (the owner worker's probe).
    assert.deepEqual(select(prom, "prism_backend_up").map((s) => [s.labels.namespace, s.value]).sort(), [[NS, 1], [NS2, 1]].sort());
    // A second scrape (likely on the other worker) agrees.
    const again = parseProm((await httpCall(port, "GET", "/metrics")).body.toString());
    assert.deepEqual(asObject(requestCounts(again)), asObject(expected));
  });
});

describe("traces over OTLP/HTTP", () => {
  const NS = `obst-${tag}`;
  let otlp: OtlpReceiver;
  let srv: PrismProcess;

  before(async () => {
    otlp = await startOtlpReceiver();
    const cfg = writeConfig("traces.yaml", ["namespaces:", `  - name: ${NS}`, "    backend: { type: memstore }"]);
    srv = await startPrism(["--workers", "1", "--config", cfg, "--grpc-port", "0", "--http-port", "0"], {
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: otlp.endpoint, OTEL_BSP_SCHEDULE_DELAY: "50", OTEL_SERVICE_NAME: `prism-test-${tag}` },
    });
  });
  after(async () => {
    await srv?.stop();
    await otlp?.close();
  });

  test("spans carry the caller's trace id and the namespace, method and backend", { timeout: 30_000 }, async () => {
    const traceId = randomBytes(16).toString("hex");
    const parentId = randomBytes(8).toString("hex");
    const res = await httpCall(srv.httpPort, "PUT", `/v1/ns/${NS}/kv/traced`, "value", { traceparent: `00-${traceId}-${parentId}-01` });
    assert.equal(res.status, 200);
    const unknownTrace = randomBytes(16).toString("hex");
    assert.equal((await httpCall(srv.httpPort, "GET", `/v1/ns/nope-${tag}/kv/k`, undefined, { traceparent: `00-${unknownTrace}-${parentId}-01` })).status, 404);

    const spans = otlp.spans;
    await otlp.until(() => spans.filter((s) => hexId(s.traceId, 16) === traceId).length >= 2 && spans.some((s) => hexId(s.traceId, 16) === unknownTrace));

    const mine = spans.filter((s) => hexId(s.traceId, 16) === traceId);
    const server = mine.find((s) => s.kind === 2);
    const backend = mine.find((s) => s.kind === 3);
    assert.ok(server, `a SERVER span in ${JSON.stringify(mine)}`);
    assert.ok(backend, `a CLIENT span in ${JSON.stringify(mine)}`);
    assert.equal(hexId(server.parentSpanId, 8), parentId, "the server span is a child of the caller's span");
    assert.equal(hexId(backend.parentSpanId, 8), hexId(server.spanId, 8), "the backend span is a child of the server span");
    assert.equal(server.name, "prism.v1.KeyValue/Set");
    assert.equal(spanAttr(server, "prism.namespace"), NS);
    assert.equal(spanAttr(server, "prism.method"), "KeyValue/Set");
    assert.equal(spanAttr(server, "rpc.service"), "prism.v1.KeyValue");
    assert.equal(spanAttr(backend, "prism.namespace"), NS);
    assert.equal(spanAttr(backend, "prism.method"), "KeyValue/Set");
    assert.equal(spanAttr(backend, "prism.backend"), "memstore");
    assert.ok(otlp.bodies.some((b) => b.includes(`prism-test-${tag}`)), "service.name from OTEL_SERVICE_NAME");

    // The failed call: a server span with an error status, no backend span.
    const failed = spans.filter((s) => hexId(s.traceId, 16) === unknownTrace);
    assert.equal(failed.length, 1);
    assert.equal(failed[0]!.status?.code, 2);
    assert.equal(spanAttr(failed[0]!, "prism.namespace"), "_unknown");
  });
});
