/**
 * HTTP/JSON ingress end to end: a real server in-process (memstore), real
 * HTTP requests (fetch and node:http), the routes of docs/protocol.md.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Agent, request, type IncomingMessage } from "node:http";
import { randomBytes, randomUUID } from "node:crypto";
import { startServer, type RunningServer } from "../../src/server.js";
import { defaultConfig } from "../../src/config/load.js";

let server: RunningServer;
let base: string;
const uid = randomUUID().slice(0, 8);

before(async () => {
  const config = defaultConfig();
  // This process also runs the test's own clients and heavy neighbours (24 MiB of SSE publishes…), so its event loop is
  // busy for reasons that are not load: low-priority calls asserted to succeed must not meet the utilization rule here
  // (it has its own tests: test/unit/shedding.test.ts, bench overload-critical-p99).
  config.server.shedding.low_max_utilization = 0;
  server = await startServer({ config, grpc: false, host: "127.0.0.1", httpPort: 0, log: () => {} });
  base = `http://127.0.0.1:${server.httpPort}`;
});
after(() => server.close());

const kvUrl = (ns: string, encodedKey: string) => `${base}/v1/ns/${ns}/kv/${encodedKey}`;

async function post(path: string, body: unknown): Promise<{ status: number; json: any }> {
  const r = await fetch(base + path, { method: "POST", headers: { "content-type": "application/json" }, body: typeof body === "string" ? body : JSON.stringify(body) });
  return { status: r.status, json: await r.json() };
}

/** A raw request with node:http (full control over headers and the body's framing). */
function raw(method: string, path: string, headers: Record<string, string | number>, chunks: Buffer[]): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(base + path, { method, headers }, (res) => {
      const parts: Buffer[] = [];
      res.on("data", (c: Buffer) => parts.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, body: Buffer.concat(parts).toString() }));
    });
    req.on("error", reject);
    for (const c of chunks) req.write(c);
    req.end();
  });
}

test("PUT / GET / HEAD / DELETE round trip keeps binary bytes, zero bytes included", async () => {
  const key = `bin-${uid}`;
  const value = Buffer.concat([Buffer.from([0, 0, 255, 0, 1]), randomBytes(300), Buffer.from([0])]);
  const put = await fetch(kvUrl("default", key), { method: "PUT", body: value });
  assert.equal(put.status, 200);
  const { version } = (await put.json()) as { version: number };
  assert.ok(version > 0);

  const get = await fetch(kvUrl("default", key));
  assert.equal(get.status, 200);
  assert.equal(get.headers.get("content-type"), "application/octet-stream");
  assert.equal(get.headers.get("x-prism-version"), String(version));
  assert.deepEqual(Buffer.from(await get.arrayBuffer()), value);

  const head = await fetch(kvUrl("default", key), { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get("content-length"), String(value.length));
  assert.equal((await head.arrayBuffer()).byteLength, 0);

  const del = await fetch(kvUrl("default", key), { method: "DELETE" });
  assert.deepEqual(await del.json(), { deleted: true });
  const again = await fetch(kvUrl("default", key), { method: "DELETE" });
  assert.deepEqual(await again.json(), { deleted: false });
  const gone = await fetch(kvUrl("default", key));
  assert.equal(gone.status, 404);
  assert.equal((await fetch(kvUrl("default", key), { method: "HEAD" })).status, 404);
});

test("keys hold '/' (literal or %2F) and unicode", async () => {
  const key = `dir/${uid}/naïve ✓/€`;
  const put = await fetch(kvUrl("default", encodeURIComponent(key)), { method: "PUT", body: "v1" });
  assert.equal(put.status, 200);
  // The same key with literal slashes.
  const literal = key.split("/").map(encodeURIComponent).join("/");
  const get = await fetch(kvUrl("default", literal));
  assert.equal(get.status, 200);
  assert.equal(await get.text(), "v1");
  // The key is stored decoded: Scan returns it as written.
  const scan = await post("/v1/KeyValue/Scan", { namespace: "default", prefix: `dir/${uid}/` });
  assert.equal(scan.status, 200);
  assert.deepEqual(scan.json.items.map((i: any) => i.key), [key]);
  const badEscape = await fetch(kvUrl("default", "bad%E0%A4%A"));
  assert.equal(badEscape.status, 400);
  assert.match(((await badEscape.json()) as any).error.message, /^key: /);
});

test("an empty value is 200 with an empty body; an absent key is a 404 naming it", async () => {
  const key = `empty-${uid}`;
  assert.equal((await fetch(kvUrl("default", key), { method: "PUT", body: new Uint8Array(0) })).status, 200);
  const get = await fetch(kvUrl("default", key));
  assert.equal(get.status, 200);
  assert.equal((await get.arrayBuffer()).byteLength, 0);

  const absent = await fetch(kvUrl("default", `absent-${uid}`));
  assert.equal(absent.status, 404);
  const body = (await absent.json()) as any;
  assert.equal(body.error.code, 5);
  assert.equal(body.error.status, "NOT_FOUND");
  assert.equal(typeof body.error.reason, "string");
  assert.match(body.error.message, new RegExp(`absent-${uid}`));
});

test("?ttl=SECONDS sets a TTL; a non-integer ttl is refused naming ttl", async () => {
  const key = `ttl-${uid}`;
  assert.equal((await fetch(kvUrl("default", key) + "?ttl=60", { method: "PUT", body: "x" })).status, 200);
  const ttl = await post("/v1/KeyValue/GetTtl", { namespace: "default", key });
  assert.equal(ttl.status, 200);
  assert.equal(ttl.json.found, true);
  assert.equal(ttl.json.hasTtl, true);
  assert.ok(ttl.json.ttlMs > 0 && ttl.json.ttlMs <= 60_000, `ttlMs ${ttl.json.ttlMs}`);

  for (const bad of ["abc", "1.5", "-1"]) {
    const r = await fetch(kvUrl("default", key) + `?ttl=${bad}`, { method: "PUT", body: "x" });
    assert.equal(r.status, 400, bad);
    assert.match(((await r.json()) as any).error.message, /^ttl: /);
  }
});

test("If-None-Match: * and If-Match: VERSION are compare-and-set", async () => {
  const key = `cas-${uid}`;
  const first = await fetch(kvUrl("default", key), { method: "PUT", body: "a", headers: { "if-none-match": "*" } });
  assert.equal(first.status, 200);
  const { version } = (await first.json()) as { version: number };
  const dup = await fetch(kvUrl("default", key), { method: "PUT", body: "b", headers: { "if-none-match": "*" } });
  assert.equal(dup.status, 412);
  const stale = await fetch(kvUrl("default", key), { method: "PUT", body: "b", headers: { "if-match": String(version + 100) } });
  assert.equal(stale.status, 412);
  const ok = await fetch(kvUrl("default", key), { method: "PUT", body: "b", headers: { "if-match": String(version) } });
  assert.equal(ok.status, 200);
  assert.equal(await (await fetch(kvUrl("default", key))).text(), "b");
});

test("POST /v1/KeyValue/* speaks proto3 JSON (camelCase or snake_case, bytes as base64)", async () => {
  const prefix = `scan-${uid}/`;
  const set = await post("/v1/KeyValue/BatchSet", {
    namespace: "default",
    entries: [
      { key: `${prefix}a`, value: Buffer.from([0, 1, 2]).toString("base64") },
      { key: `${prefix}b`, value: "" },
    ],
  });
  assert.equal(set.status, 200, JSON.stringify(set.json));
  assert.equal(set.json.versions.length, 2);

  const scan = await post("/v1/KeyValue/Scan", { namespace: "default", prefix, limit: 10, keys_only: false });
  assert.equal(scan.status, 200);
  assert.deepEqual(
    scan.json.items.map((i: any) => [i.key, i.value, i.found]),
    [
      [`${prefix}a`, "AAEC", true],
      [`${prefix}b`, "", true],
    ],
  );
  assert.equal(scan.json.nextCursor, "");

  const get = await post("/v1/KeyValue/Get", { namespace: "default", key: `${prefix}nope` });
  assert.deepEqual(get.json, { found: false, value: "", version: 0 });
});

test("invalid JSON, unknown fields and wrong JSON types are 400 naming the field", async () => {
  const invalid = await post("/v1/KeyValue/Set", "{not json");
  assert.equal(invalid.status, 400);
  assert.match(invalid.json.error.message, /^invalid JSON: /);

  const unknown = await post("/v1/KeyValue/Set", { namespace: "default", key: "k", colour: "red" });
  assert.equal(unknown.status, 400);
  assert.match(unknown.json.error.message, /^colour: unknown field/);

  const cases: [unknown, RegExp][] = [
    [{ namespace: "default", key: 5 }, /^key: expected a string/],
    [{ namespace: "default", key: "k", value: "not base64!" }, /^value: expected a base64 string/],
    [{ namespace: "default", key: "k", ttl_seconds: -1 }, /^ttl_seconds: expected a non-negative integer/],
    [{ namespace: "default", key: "k", ttlSeconds: 1.5 }, /^ttlSeconds: expected an integer/],
    [{ namespace: "default", key: "k", if_absent: "yes" }, /^if_absent: expected true or false/],
    [{ namespace: "default", entries: [{ key: "a", value: "" }, { key: "b", value: 7 }] }, /^entries\[1\]\.value: expected a base64 string/],
    [{ namespace: "default", entries: {} }, /^entries: expected an array/],
    [[1, 2], /^request body: expected a JSON object/],
  ];
  for (const [body, re] of cases) {
    const path = (body as any)?.entries !== undefined ? "/v1/KeyValue/BatchSet" : "/v1/KeyValue/Set";
    const r = await post(path, body);
    assert.equal(r.status, 400, JSON.stringify(body));
    assert.equal(r.json.error.status, "INVALID_ARGUMENT");
    assert.match(r.json.error.message, re);
  }
  const attrs = await post("/v1/PubSub/Publish", { namespace: "default", topic: "t", attributes: { a: 1 } });
  assert.equal(attrs.status, 400);
  assert.match(attrs.json.error.message, /^attributes\["a"\]: expected a string/);
  // 64-bit integers: numbers or decimal strings.
  const read = await post("/v1/Stream/Read", { namespace: "default", stream: `s-${uid}`, from_offset: "1" });
  assert.equal(read.status, 200, JSON.stringify(read.json));
});

test("unknown namespace is 404 naming it; unknown routes 404; wrong method 405", async () => {
  const ns = `nope-${uid}`;
  const r = await fetch(kvUrl(ns, "k"));
  assert.equal(r.status, 404);
  const body = (await r.json()) as any;
  assert.equal(body.error.reason, "PRISM_ERR_UNKNOWN_NAMESPACE");
  assert.match(body.error.message, new RegExp(ns));
  const viaPost = await post("/v1/KeyValue/Get", { namespace: ns, key: "k" });
  assert.equal(viaPost.status, 404);
  assert.match(viaPost.json.error.message, new RegExp(ns));

  const route = await fetch(`${base}/v1/Nope/${uid}`, { method: "POST", body: "{}" });
  assert.equal(route.status, 404);
  assert.match(((await route.json()) as any).error.message, new RegExp(`/v1/Nope/${uid}`));
  const method = await fetch(`${base}/v1/KeyValue/Get`);
  assert.equal(method.status, 405);
  assert.equal(method.headers.get("allow"), "POST");
  assert.equal((await fetch(kvUrl("default", "k"), { method: "POST" })).status, 405);
});

test("a value over the namespace's max_value_bytes is 400 naming value", async () => {
  const ns = `small-${uid}`;
  const apply = await post("/v1/Admin/ApplyNamespace", {
    config: JSON.stringify({ name: ns, backend: { type: "memstore" }, limits: { max_value_bytes: 16 } }),
  });
  assert.equal(apply.status, 200, JSON.stringify(apply.json));
  assert.equal((await fetch(kvUrl(ns, "k"), { method: "PUT", body: Buffer.alloc(16) })).status, 200);
  const r = await fetch(kvUrl(ns, "k"), { method: "PUT", body: Buffer.alloc(17) });
  assert.equal(r.status, 400);
  assert.match(((await r.json()) as any).error.message, /^value: 17 bytes/);
});

test("a body over max_message_bytes is 413, declared or chunked, and the server keeps serving", async () => {
  const max = defaultConfig().server.max_message_bytes;
  const chunk = Buffer.alloc(1024 * 1024, 1);
  const chunks = Array.from({ length: Math.ceil(max / chunk.length) + 1 }, () => chunk);
  const total = chunks.length * chunk.length;
  const declared = await raw("PUT", `/v1/ns/default/kv/big-${uid}`, { "content-length": total }, chunks);
  assert.equal(declared.status, 413);
  assert.equal(JSON.parse(declared.body).error.reason, "PRISM_ERR_FRAME_TOO_LARGE");
  const chunked = await raw("POST", "/v1/KeyValue/Set", { "transfer-encoding": "chunked" }, chunks);
  assert.equal(chunked.status, 413);
  assert.equal((await fetch(`${base}/healthz`)).status, 200);
  assert.equal((await fetch(kvUrl("default", `big-${uid}`))).status, 404);
});

test("GET /healthz and /v1/openapi.json", async () => {
  const h = await fetch(`${base}/healthz`);
  assert.deepEqual(await h.json(), { status: "SERVING" });
  const r = await fetch(`${base}/v1/openapi.json`);
  assert.equal(r.status, 200);
  const doc = (await r.json()) as any;
  assert.equal(doc.openapi, "3.1.0");
  const kv = doc.paths["/v1/ns/{namespace}/kv/{key}"];
  assert.ok(kv.get && kv.put && kv.delete && kv.head);
  assert.ok(doc.paths["/v1/ns/{namespace}/subscribe"].get);
  assert.ok(doc.paths["/v1/KeyValue/Scan"].post);
  assert.equal(doc.paths["/v1/PubSub/Subscribe"], undefined);
  assert.deepEqual(doc.paths["/v1/KeyValue/Scan"].post.requestBody.content["application/json"].schema, { $ref: "#/components/schemas/prism.v1.ScanRequest" });
  assert.equal(doc.components.schemas["prism.v1.ScanRequest"].properties.keysOnly.type, "boolean");
  assert.ok(doc.components.schemas.Error);
});

/** Reads Server-Sent Events from a response, one at a time. */
class EventReader {
  private buf = "";
  private events: { event: string; data: string }[] = [];
  private waiter: (() => void) | undefined;
  private ended = false;
  constructor(res: IncomingMessage) {
    res.setEncoding("utf8");
    res.on("data", (s: string) => {
      this.buf += s;
      let i;
      while ((i = this.buf.indexOf("\n\n")) >= 0) {
        const block = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 2);
        let event = "message";
        const data: string[] = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data.push(line.slice(6));
        }
        this.events.push({ event, data: data.join("\n") });
      }
      this.waiter?.();
    });
    res.on("end", () => {
      this.ended = true;
      this.waiter?.();
    });
  }
  async next(): Promise<{ event: string; data: string }> {
    while (this.events.length === 0) {
      if (this.ended) throw new Error("stream ended");
      await new Promise<void>((r) => (this.waiter = r));
    }
    return this.events.shift()!;
  }
}

function openSse(path: string): Promise<{ res: IncomingMessage; close: () => void }> {
  return new Promise((resolve, reject) => {
    const req = request(base + path, (res) => resolve({ res, close: () => req.destroy() }));
    req.on("error", reject);
    req.end();
  });
}

test("SSE: ready, then a message published through POST /v1/PubSub/Publish", async () => {
  const topic = `orders-${uid}.created`;
  const { res, close } = await openSse(`/v1/ns/default/subscribe?pattern=${encodeURIComponent(`orders-${uid}.*`)}`);
  try {
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers["content-type"], "text/event-stream");
    const events = new EventReader(res);
    assert.equal((await events.next()).event, "ready");
    const pub = await post("/v1/PubSub/Publish", { namespace: "default", topic, payload: Buffer.from([0, 9]).toString("base64"), attributes: { a: "b" } });
    assert.equal(pub.status, 200, JSON.stringify(pub.json));
    const ev = await events.next();
    assert.equal(ev.event, "message");
    const msg = JSON.parse(ev.data);
    assert.equal(msg.topic, topic);
    assert.equal(msg.payload, "AAk=");
    assert.deepEqual(msg.attributes, { a: "b" });
    assert.equal(msg.messageId, pub.json.messageId);
  } finally {
    close();
  }
});

test("SSE on an unknown namespace is a 404 JSON error before any event", async () => {
  const { res, close } = await openSse(`/v1/ns/nope-${uid}/subscribe?pattern=a`);
  try {
    assert.equal(res.statusCode, 404);
    assert.equal(res.headers["content-type"], "application/json");
  } finally {
    close();
  }
});

test("SSE: a subscriber that stops reading gets an error event and its stream ends", async () => {
  const topic = `slow-${uid}`;
  const { res, close } = await openSse(`/v1/ns/default/subscribe?pattern=${topic}`);
  try {
    const events = new EventReader(res);
    assert.equal((await events.next()).event, "ready");
    res.pause();
    // Far more than socket buffers + MAX_SSE_PENDING (1 MiB) can absorb.
    const payload = Buffer.alloc(1024 * 1024, 7).toString("base64");
    for (let i = 0; i < 24; i++) {
      const r = await post("/v1/PubSub/Publish", { namespace: "default", topic, payload });
      assert.equal(r.status, 200);
    }
    res.resume();
    let ev;
    let messages = 0;
    while ((ev = await events.next()).event === "message") messages++;
    assert.equal(ev.event, "error");
    assert.equal(JSON.parse(ev.data).error.status, "RESOURCE_EXHAUSTED");
    assert.ok(messages < 24, `${messages} messages before the error`);
    await assert.rejects(events.next(), /stream ended/);
  } finally {
    close();
  }
});

test("x-prism-timeout-ms bounds a long poll (504); bad context headers are 400 naming them", async () => {
  const r = await fetch(`${base}/v1/Queue/Dequeue`, {
    method: "POST",
    headers: { "x-prism-timeout-ms": "100", "content-type": "application/json" },
    body: JSON.stringify({ namespace: "default", queue: `q-${uid}`, wait_seconds: 20 }),
  });
  assert.equal(r.status, 504);
  assert.equal(((await r.json()) as any).error.status, "DEADLINE_EXCEEDED");
  for (const [h, v] of [["x-prism-timeout-ms", "soon"], ["x-prism-priority", "urgent"]] as const) {
    const b = await fetch(`${base}/v1/Admin/Health`, { method: "POST", headers: { [h]: v } });
    assert.equal(b.status, 400);
    assert.match(((await b.json()) as any).error.message, new RegExp(`^${h}: `));
  }
  const ok = await fetch(`${base}/v1/Admin/Health`, { method: "POST", headers: { "x-prism-priority": "low", traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" } });
  assert.equal(ok.status, 200);
});

test("a long poll on a kept-alive connection that served earlier requests is cancelled when that connection closes", async () => {
  // Disconnects are tracked per connection (src/ingress/transport.ts): the earlier, answered exchanges
  // on the socket must not hide the one in progress.
  const seen: import("../../src/core/context.js").RequestContext[] = [];
  server.gateway.use((ctx) => {
    if (ctx.ingress === "http" && ctx.method.name === "Dequeue") seen.push(ctx);
  });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const send = (method: string, path: string, body?: string) =>
    new Promise<{ status: number; socket: unknown; req: ReturnType<typeof request> }>((resolve, reject) => {
      const req = request(base + path, { method, agent }, (res) => {
        res.resume();
        res.on("end", () => resolve({ status: res.statusCode!, socket: req.socket, req }));
      });
      req.on("error", reject);
      req.end(body);
    });
  const key = `ka-${uid}`;
  const first = await send("PUT", `/v1/ns/default/kv/${key}`, "v");
  assert.equal(first.status, 200);
  for (let i = 0; i < 3; i++) assert.equal((await send("GET", `/v1/ns/default/kv/${key}`)).status, 200);
  const queue = `ka-gone-${uid}`;
  const poll = request(base + "/v1/Queue/Dequeue", { method: "POST", agent });
  poll.on("error", () => {});
  poll.end(JSON.stringify({ namespace: "default", queue, wait_seconds: 20 }));
  while (seen.length === 0) await new Promise((r) => setTimeout(r, 5));
  assert.equal(poll.reusedSocket, true, "the long poll rode the kept-alive connection");
  poll.destroy();
  for (let i = 0; i < 400 && !seen[0]!.cancelled; i++) await new Promise((r) => setTimeout(r, 5));
  assert.equal(seen[0]!.cancelled, true);
  agent.destroy();
});

test("a client that disconnects during a long poll cancels it", async () => {
  // Observe the server-side request context through the gateway's middleware hook.
  const seen: import("../../src/core/context.js").RequestContext[] = [];
  server.gateway.use((ctx) => {
    if (ctx.ingress === "http" && ctx.method.name === "Dequeue") seen.push(ctx);
  });
  const ac = new AbortController();
  const queue = `gone-${uid}`;
  const p = fetch(`${base}/v1/Queue/Dequeue`, { method: "POST", signal: ac.signal, headers: { "content-type": "application/json" }, body: JSON.stringify({ namespace: "default", queue, wait_seconds: 20 }) });
  while (seen.length === 0) await new Promise((r) => setTimeout(r, 5));
  ac.abort();
  await assert.rejects(p);
  for (let i = 0; i < 400 && !seen[0]!.cancelled; i++) await new Promise((r) => setTimeout(r, 5));
  assert.equal(seen[0]!.cancelled, true);
  const enq = await post("/v1/Queue/Enqueue", { namespace: "default", queue, payload: "AA==" });
  assert.equal(enq.status, 200);
  // The cancelled long poll must not have leased the message.
  const deq = await post("/v1/Queue/Dequeue", { namespace: "default", queue });
  assert.equal(deq.json.messages.length, 1);
});
