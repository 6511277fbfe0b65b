/**
 * Idempotency keys over HTTP (the `Idempotency-Key` header, src/ingress/idempotency-header.ts),
 * through `prism serve --workers 2` too,
 * and the refusals around them, against an in-process server: memstore (claims
 * every *_idempotent interface) and a namespace on MQTT's driver type for the
 * missing-interface message (no broker needed: the refusal comes first).
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { startServer, type RunningServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { Agent, request } from "node:http";
import { startPrism } from "./serve-process.js";

let server: RunningServer;
let base: string;
const uid = randomUUID().slice(0, 8);

before(async () => {
  const config = await validateConfig(
    {
      namespaces: [
        { name: "idem", backend: { type: "memstore" } },
      ],
    },
    "test",
  );
  server = await startServer({ config, grpc: false, host: "127.0.0.1", httpPort: 0, log: () => {} });
  base = `http://127.0.0.1:${server.httpPort}`;
});
after(() => server.close());

async function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  const r = await fetch(base + path, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
  return { status: r.status, json: await r.json() };
}

const b64 = (s: string) => Buffer.from(s).toString("base64");

test("POST Enqueue with Idempotency-Key twice: one message, the same id", async () => {
  const queue = `q-${uid}`;
  const a = await post("/v1/Queue/Enqueue", { namespace: "idem", queue, payload: b64("x") }, { "Idempotency-Key": "order-1" });
  const b = await post("/v1/Queue/Enqueue", { namespace: "idem", queue, payload: b64("x") }, { "Idempotency-Key": "order-1" });
  assert.equal(a.status, 200);
  assert.equal(b.json.messageId, a.json.messageId);
  // The header and the body field name the same key.
  const c = await post("/v1/Queue/Enqueue", { namespace: "idem", queue, payload: b64("x"), idempotency_key: "order-1" });
  assert.equal(c.json.messageId, a.json.messageId);
  const d = await post("/v1/Queue/Dequeue", { namespace: "idem", queue, max_messages: 10 });
  assert.equal(d.json.messages.length, 1);
});

test("PUT and DELETE /v1/ns/{ns}/kv/{key} honour Idempotency-Key", async () => {
  const url = `${base}/v1/ns/idem/kv/k-${uid}`;
  const put = (body: string) => fetch(url, { method: "PUT", headers: { "Idempotency-Key": "w1" }, body }).then(async (r) => ({ status: r.status, json: (await r.json()) as any }));
  const v1 = await put("one");
  await fetch(url, { method: "PUT", body: "two" });
  const again = await put("one");
  assert.equal(again.json.version, v1.json.version, "the retry answers the first version");
  assert.equal(await (await fetch(url)).text(), "two", "and writes nothing");
  const reused = await put("three");
  assert.equal(reused.status, 412);
  assert.equal(reused.json.error.reason, "PRISM_ERR_IDEMPOTENCY_KEY_REUSED");
  const del = () => fetch(url, { method: "DELETE", headers: { "Idempotency-Key": "d1" } }).then((r) => r.json() as Promise<any>);
  assert.equal((await del()).deleted, true);
  await fetch(url, { method: "PUT", body: "back" });
  assert.equal((await del()).deleted, true, "replayed");
  assert.equal(await (await fetch(url)).text(), "back");
});

test("Idempotency-Key on a method without the field, or differing from the body's key → 400 naming the header", async () => {
  const r = await post("/v1/Queue/Dequeue", { namespace: "idem", queue: "q" }, { "Idempotency-Key": "x" });
  assert.equal(r.status, 400);
  assert.match(r.json.error.message, /^Idempotency-Key: DequeueRequest takes no idempotency key/);
  const m = await post("/v1/Stream/Append", { namespace: "idem", stream: "s", payload: b64("x"), idempotency_key: "a" }, { "Idempotency-Key": "b" });
  assert.equal(m.status, 400);
  assert.match(m.json.error.message, /differs from the body/);
});

test("a key on a backend without the interface → 412 FAILED_PRECONDITION naming interface and backend", async () => {
  const ns = `idem-mqtt-${uid}`;
  const applied = await post("/v1/Admin/ApplyNamespace", { namespace: { name: ns, primitives: ["pubsub"], backend: { type: "mqtt", url: "mqtt://127.0.0.1:1" } } });
  assert.equal(applied.status, 200, JSON.stringify(applied.json));
  const r = await post("/v1/PubSub/Publish", { namespace: ns, topic: "a.b", payload: b64("x") }, { "Idempotency-Key": "k" });
  assert.equal(r.status, 412);
  assert.equal(r.json.error.reason, "PRISM_ERR_INTERFACE_MISSING");
  assert.equal(r.json.error.message, `namespace "${ns}": backend "mqtt" does not implement pubsub_idempotent`);
});

test("idempotency_window_seconds is validated: 0 and over 30 days are refused", async () => {
  for (const w of [0, 30 * 86400 + 1]) {
    const r = await post("/v1/Admin/ApplyNamespace", { namespace: { name: `idem-bad-${uid}`, backend: { type: "memstore" }, limits: { idempotency_window_seconds: w } } });
    assert.equal(r.status, 400, `window ${w}: ${JSON.stringify(r.json)}`);
    assert.match(r.json.error.message, /idempotency_window_seconds/);
  }
});

test("the OpenAPI document lists Idempotency-Key on the keyed writes only", async () => {
  const doc = (await (await fetch(`${base}/v1/openapi.json`)).json()) as any;
  const has = (path: string, op = "post") => JSON.stringify(doc.paths[path][op].parameters ?? []).includes("idempotencyKey");
  for (const p of ["/v1/KeyValue/Set", "/v1/KeyValue/Delete", "/v1/PubSub/Publish", "/v1/Queue/Enqueue", "/v1/Stream/Append"]) assert.ok(has(p), p);
  assert.ok(!has("/v1/Queue/Dequeue"));
  assert.ok(has("/v1/ns/{namespace}/kv/{key}", "put") && has("/v1/ns/{namespace}/kv/{key}", "delete"));
  assert.equal(doc.components.parameters.idempotencyKey.name, "Idempotency-Key");
});

test("prism serve --workers 2: keyed enqueues arriving on both workers reach one record (sqlite, owned by one worker)", async () => {
  const prism = await startPrism(["--workers", "2", "--grpc-port", "0", "--http-port", "0"]);
  try {
    const port = prism.httpPort;
    const ns = `idem-w-${uid}`;
    const call = (agent: Agent, path: string, body: object, headers: Record<string, string> = {}) =>
      new Promise<{ status: number; json: any }>((resolve, reject) => {
        const data = Buffer.from(JSON.stringify(body));
        const req = request({ host: "127.0.0.1", port, agent, method: "POST", path, headers: { "content-type": "application/json", "content-length": data.length, ...headers } }, (res) => {
          const parts: Buffer[] = [];
          res.on("data", (c: Buffer) => parts.push(c));
          res.on("end", () => resolve({ status: res.statusCode!, json: JSON.parse(Buffer.concat(parts).toString()) }));
        });
        req.on("error", reject);
        req.end(data);
      });
    const admin = new Agent({ keepAlive: false });
    const applied = await call(admin, "/v1/Admin/ApplyNamespace", { namespace: { name: ns, primitives: ["queue"], backend: { type: "sqlite", path: "idem.db" } } });
    assert.equal(applied.status, 200, JSON.stringify(applied.json));
    // A fresh connection per call: each may land on either worker (the other forwards to the owner of the sqlite state).
    const outs = await Promise.all(
      Array.from({ length: 20 }, () => call(new Agent({ keepAlive: false }), "/v1/Queue/Enqueue", { namespace: ns, queue: "q", payload: b64("x") }, { "Idempotency-Key": "one" })),
    );
    for (const o of outs) assert.equal(o.status, 200, JSON.stringify(o.json));
    assert.equal(new Set(outs.map((o) => o.json.messageId)).size, 1);
    const d = await call(admin, "/v1/Queue/Dequeue", { namespace: ns, queue: "q", max_messages: 10 });
    assert.equal(d.json.messages.length, 1);
  } finally {
    await prism.stop("SIGTERM");
  }
});
