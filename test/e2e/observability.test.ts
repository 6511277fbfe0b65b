/**
 * Observability in one process: GET /metrics after a known mix of calls over
 * the three ingresses (with errors) parses as Prometheus text and its counters
 * match the calls exactly; the access log has one line per call and never a
 * value (raw, base64 or hex); keys are left out where a namespace asks.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { connect, Code, PrismError, type Prism } from "@prism/client";
import { startServer, type RunningServer } from "../../src/server.js";
import { configSchema } from "../../src/config/schema.js";
import { asObject, httpCall, parseProm, requestCounts, select } from "./observability-helpers.js";
import { prism } from "../../src/gen/prism.js";

const tag = randomUUID().slice(0, 8);
const utf8 = (s: string) => new TextEncoder().encode(s);
const tick = () => new Promise<void>((r) => setImmediate(r));

describe("metrics", () => {
  const A = `obs-a-${tag}`;
  const B = `obs-b-${tag}`;
  let server: RunningServer;
  let ws: Prism;
  let grpc: Prism;

  before(async () => {
    const config = configSchema.parse({
      server: { access_log_sample: 0 },
      namespaces: [
        { name: A, backend: { type: "memstore" }, limits: { max_value_bytes: 16 } },
        { name: B, backend: { type: "memstore" } },
      ],
    });
    server = await startServer({ config, host: "127.0.0.1", grpcPort: 0, httpPort: 0, log: () => {} });
    ws = await connect(`ws://127.0.0.1:${server.httpPort}`);
    grpc = await connect(`grpc://127.0.0.1:${server.grpcPort}`);
  });
  after(async () => {
    await ws?.close();
    await grpc?.close();
    await server?.close();
  });

  async function rejects(p: Promise<unknown>, code: number): Promise<void> {
    await assert.rejects(p, (e: unknown) => e instanceof PrismError && e.code === code);
  }

  test("counters match a known mix of calls exactly", async () => {
    const port = server.httpPort;
    const expected = new Map<string, number>();
    const add = (ns: string, method: string, backend: string, code: string, n = 1) => {
      const k = `${ns}|${method}|${backend}|${code}`;
      expected.set(k, (expected.get(k) ?? 0) + n);
    };
    let putBytes = 0;
    // HTTP: 3 sets, 2 gets (found), 1 get of a missing key (Get answers found=false: OK for the gateway, 404 on the route)
    for (let i = 0; i < 3; i++) {
      const v = `v${i}`;
      putBytes += v.length;
      assert.equal((await httpCall(port, "PUT", `/v1/ns/${A}/kv/k${i}`, v)).status, 200);
    }
    add(A, "KeyValue/Set", "memstore", "OK", 3);
    for (let i = 0; i < 2; i++) assert.equal((await httpCall(port, "GET", `/v1/ns/${A}/kv/k${i}`)).status, 200);
    assert.equal((await httpCall(port, "GET", `/v1/ns/${A}/kv/missing`)).status, 404);
    add(A, "KeyValue/Get", "memstore", "OK", 3);
    // value too large (limit 16 bytes)
    const big = "x".repeat(20);
    putBytes += big.length;
    assert.equal((await httpCall(port, "PUT", `/v1/ns/${A}/kv/big`, big)).status, 400);
    add(A, "KeyValue/Set", "memstore", "INVALID_ARGUMENT");
    // unknown namespace: labelled _unknown, never with the caller's string
    assert.equal((await httpCall(port, "GET", `/v1/ns/nope-${tag}/kv/k`)).status, 404);
    add("_unknown", "KeyValue/Get", "none", "NOT_FOUND");
    // POST route, missing namespace
    assert.equal((await httpCall(port, "POST", "/v1/KeyValue/Exists", JSON.stringify({ key: "k" }), { "content-type": "application/json" })).status, 400);
    add("_unknown", "KeyValue/Exists", "none", "INVALID_ARGUMENT");

    // WebSocket SDK
    const kb = ws.kv(B);
    for (let i = 0; i < 4; i++) await kb.set(`w${i}`, utf8("hello"));
    add(B, "KeyValue/Set", "memstore", "OK", 4);
    assert.equal(await kb.get("w-missing"), null);
    add(B, "KeyValue/Get", "memstore", "OK");
    await rejects(ws.kv(`nope-${tag}`).get("k"), Code.NOT_FOUND);
    add("_unknown", "KeyValue/Get", "none", "NOT_FOUND");
    await rejects(ws.kv(A).set("big", utf8(big)), Code.INVALID_ARGUMENT);
    add(A, "KeyValue/Set", "memstore", "INVALID_ARGUMENT");
    // a primitive the namespace does not serve is refused before the backend
    await ws.queue(B).enqueue(`q-${tag}`, utf8("m"));
    add(B, "Queue/Enqueue", "memstore", "OK");

    // gRPC SDK
    for (let i = 0; i < 2; i++) assert.equal(await grpc.kv(B).exists("w0"), true);
    add(B, "KeyValue/Exists", "memstore", "OK", 2);
    await rejects(grpc.kv(`nope-${tag}`).exists("k"), Code.NOT_FOUND);
    add("_unknown", "KeyValue/Exists", "none", "NOT_FOUND");
    await grpc.admin.health();
    add("_admin", "Admin/Health", "none", "OK");
    await tick();

    const res = await httpCall(port, "GET", "/metrics");
    assert.equal(res.status, 200);
    assert.match(String(res.headers["content-type"]), /^text\/plain; version=0\.0\.4/);
    const prom = parseProm(res.body.toString());
    assert.equal(prom.types.get("prism_requests_total"), "counter");
    assert.equal(prom.types.get("prism_request_duration_seconds"), "histogram");
    assert.deepEqual(asObject(requestCounts(prom)), asObject(expected));

    // Latency histograms: one observation per call; backend histogram only for calls that reached a backend.
    const count = (name: string, labels: Record<string, string>) => select(prom, name, labels).reduce((a, s) => a + s.value, 0);
    // Namespace A's Sets: 3 OK + 1 too large over HTTP, 1 too large over WebSocket (the limit is checked in the handler).
    assert.equal(count("prism_request_duration_seconds_count", { namespace: A, method: "KeyValue/Set" }), 5);
    assert.equal(count("prism_backend_duration_seconds_count", { namespace: A, method: "KeyValue/Set" }), 5);
    assert.equal(count("prism_request_duration_seconds_count", { namespace: "_unknown" }), 4);
    assert.equal(count("prism_backend_duration_seconds_count", { namespace: "_unknown" }), 0);
    const inf = select(prom, "prism_request_duration_seconds_bucket", { namespace: B, method: "KeyValue/Set", le: "+Inf" });
    assert.equal(inf.length, 1);
    assert.equal(inf[0]!.value, 4);
    // Bytes in: the HTTP PUT bodies of namespace A plus one WebSocket Set frame (which carries the 20-byte value).
    const setBytes = count("prism_request_bytes_total", { namespace: A, method: "KeyValue/Set" });
    assert.ok(setBytes >= putBytes + big.length && setBytes < putBytes + big.length + 100, `request bytes ${setBytes}`);
    // Bytes out: the two found HTTP Gets answered "v0" and "v1" (the missing one sent no body on the success path).
    assert.equal(count("prism_response_bytes_total", { namespace: A, method: "KeyValue/Get" }), 4);
    // gRPC counts message bytes too: two Exists calls on B, each answered {exists: true}.
    const existsReq = prism.v1.ExistsRequest.encode({ namespace: B, key: "w0" }).finish().length;
    const existsRes = prism.v1.ExistsResponse.encode({ exists: true }).finish().length;
    assert.equal(count("prism_request_bytes_total", { namespace: B, method: "KeyValue/Exists" }), 2 * existsReq);
    assert.equal(count("prism_response_bytes_total", { namespace: B, method: "KeyValue/Exists" }), 2 * existsRes);
    // Nothing in flight once every call answered; health and event-loop metrics are there.
    assert.equal(count("prism_requests_in_flight", {}), 0);
    assert.deepEqual(
      select(prom, "prism_backend_up").map((s) => [s.labels.namespace, s.value]).sort(),
      [[A, 1], [B, 1]].sort(),
    );
    assert.ok(select(prom, "nodejs_eventloop_lag_seconds").length === 1);
  });

  test("shed, rate-limit and breaker signals are exposed", async () => {
    const o = server.gateway.observer!;
    o.shed(B, "low");
    o.shed(B, "low");
    o.rateLimited(B);
    o.breakerState(B, "memstore", 2);
    const prom = parseProm((await httpCall(server.httpPort, "GET", "/metrics")).body.toString());
    assert.equal(select(prom, "prism_shed_total", { namespace: B, priority: "low" })[0]?.value, 2);
    assert.equal(select(prom, "prism_rate_limited_total", { namespace: B })[0]?.value, 1);
    assert.equal(select(prom, "prism_circuit_breaker_state", { namespace: B, backend: "memstore" })[0]?.value, 2);
  });
});

describe("metrics off", () => {
  test("server.metrics: false removes /metrics", async () => {
    const config = configSchema.parse({ server: { metrics: false, access_log_sample: 0 }, namespaces: [{ name: `obs-off-${tag}`, backend: { type: "memstore" } }] });
    const server = await startServer({ config, host: "127.0.0.1", grpcPort: 0, httpPort: 0, log: () => {} });
    try {
      assert.equal(server.gateway.observer, undefined, "nothing observes the calls");
      assert.equal((await httpCall(server.httpPort, "GET", "/metrics")).status, 404);
    } finally {
      await server.close();
    }
  });
});

describe("access log", () => {
  const NS = `obs-log-${tag}`;
  const SECRET_NS = `obs-secret-${tag}`;
  const lines: string[] = [];
  let server: RunningServer;
  let ws: Prism;

  before(async () => {
    const config = configSchema.parse({
      server: { log_level: "info", access_log_sample: 1 },
      namespaces: [
        { name: NS, backend: { type: "memstore" } },
        { name: SECRET_NS, backend: { type: "memstore" }, observability: { log_keys: false } },
      ],
    });
    const env = process.env.PRISM_LOG_LEVEL;
    const quiet = process.env.PRISM_QUIET;
    delete process.env.PRISM_LOG_LEVEL;
    delete process.env.PRISM_QUIET;
    try {
      server = await startServer({
        config,
        host: "127.0.0.1",
        grpcPort: 0,
        httpPort: 0,
        log: () => {},
        logSink: { write: (s: string) => lines.push(s) },
      });
    } finally {
      if (env !== undefined) process.env.PRISM_LOG_LEVEL = env;
      if (quiet !== undefined) process.env.PRISM_QUIET = quiet;
    }
    ws = await connect(`ws://127.0.0.1:${server.httpPort}`);
  });
  after(async () => {
    await ws?.close();
    await server?.close();
  });

  test("one line per call, with its fields, and never a value", async () => {
    const value = `VALUE-${randomUUID()}-do-not-log`;
    const traceId = randomUUID().replace(/-/g, "");
    const traceparent = `00-${traceId}-${"ab".repeat(8)}-01`;
    const port = server.httpPort;
    const start = lines.length;
    assert.equal((await httpCall(port, "PUT", `/v1/ns/${NS}/kv/k1`, value, { traceparent })).status, 200);
    assert.equal((await httpCall(port, "GET", `/v1/ns/${NS}/kv/k1`)).status, 200);
    assert.equal((await httpCall(port, "GET", `/v1/ns/nope-${tag}/kv/k1`)).status, 404);
    await ws.kv(NS).set("k2", utf8(value));
    assert.equal(new TextDecoder().decode((await ws.kv(NS).get("k2"))!), value);
    await ws.kv(SECRET_NS).set("secret-key", utf8(value));
    await ws.kv(NS).batchSet([{ key: "k3", value: utf8(value) }]);
    await tick();

    const out = lines.slice(start).join("");
    const access = out
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.msg === "access");
    assert.equal(access.length, 7, out);
    const [put, get, unknown, wsSet, wsGet, secret, batch] = access;
    assert.deepEqual(
      access.map((l) => [l.ns, l.method, l.code, l.ingress]),
      [
        [NS, "KeyValue/Set", "OK", "http"],
        [NS, "KeyValue/Get", "OK", "http"],
        ["_unknown", "KeyValue/Get", "NOT_FOUND", "http"],
        [NS, "KeyValue/Set", "OK", "ws"],
        [NS, "KeyValue/Get", "OK", "ws"],
        [SECRET_NS, "KeyValue/Set", "OK", "ws"],
        [NS, "KeyValue/BatchSet", "OK", "ws"],
      ],
    );
    assert.equal(put!.trace_id, traceId);
    assert.equal(put!.key, "k1");
    assert.equal(put!.bytes_in, Buffer.byteLength(value));
    assert.equal(get!.bytes_out, Buffer.byteLength(value));
    assert.equal(unknown!.key, "k1");
    assert.equal(typeof put!.latency_ms, "number");
    assert.equal(typeof put!.peer, "string");
    assert.equal(typeof put!.backend_ms, "number");
    assert.equal(unknown!.backend_ms, undefined, "no backend call for an unknown namespace");
    assert.equal(wsSet!.key, "k2");
    assert.ok((wsGet!.bytes_out as number) > Buffer.byteLength(value));
    assert.equal(secret!.key, undefined, "log_keys: false");
    assert.equal(batch!.key, undefined);
    assert.ok(!out.includes("secret-key"));
    // The value never appears: raw, base64, base64url or hex.
    const raw = Buffer.from(value);
    for (const form of [value, raw.toString("base64"), raw.toString("base64url"), raw.toString("hex"), raw.toString("base64").slice(4, 28)]) {
      assert.ok(!out.includes(form), `log output contains the value (${form})`);
    }
  });
});
