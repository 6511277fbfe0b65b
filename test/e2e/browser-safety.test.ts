/**
 * A web page cannot drive the gateway (issue 19): on the HTTP/WebSocket port
 * - JSON routes take application/json only: a cross-site form or text/plain
 *   POST (what a page can send without a CORS preflight) to
 *   Admin/ApplyNamespace or DeleteNamespace gets 415 and changes nothing;
 * - a request or WebSocket upgrade with an Origin not in server.allowed_origins
 *   (empty by default) gets 403; a listed one gets CORS answers;
 * - a Host that is not one of the server's names (DNS rebinding) gets 421; IP
 *   literals, localhost and server.allowed_hosts pass;
 * - the SDK (all three transports) and plain tools without an Origin keep working.
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import WebSocket from "ws";
import { startServer, type RunningServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { connect } from "@prism/client";

interface Res {
  status: number;
  text: string;
  headers: Record<string, string | string[] | undefined>;
}

function raw(port: number, method: string, path: string, headers: Record<string, string>, body?: string): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, method, path, headers: { ...headers, ...(body !== undefined ? { "content-length": String(Buffer.byteLength(body)) } : {}) }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, text: Buffer.concat(chunks).toString(), headers: res.headers }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** A WebSocket upgrade: "open", or the HTTP status it was refused with. */
function upgrade(port: number, opts: { origin?: string; host?: string }): Promise<number | "open"> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/ws`, { origin: opts.origin, headers: opts.host ? { host: opts.host } : {} });
    ws.once("open", () => {
      ws.close();
      resolve("open");
    });
    ws.once("unexpected-response", (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.once("error", () => resolve(0));
  });
}

const entry = (name: string) => JSON.stringify({ namespace: { name, backend: { type: "memstore" } } });

describe("browser safety: content types, Origin, Host", () => {
  let srv: RunningServer;
  let open: RunningServer;
  let port = 0;

  before(async () => {
    srv = await startServer({ config: await validateConfig({ namespaces: [{ name: "keep", backend: { type: "memstore" } }] }, "t"), host: "127.0.0.1", grpcPort: 0, httpPort: 0, log: () => {} });
    port = srv.httpPort;
    open = await startServer({
      config: await validateConfig({ server: { allowed_origins: ["https://app.example"], allowed_hosts: ["prism.internal", "localhost"] }, namespaces: [{ name: "keep", backend: { type: "memstore" } }] }, "t"),
      host: "127.0.0.1",
      grpc: false,
      httpPort: 0,
      log: () => {},
    });
  });
  after(async () => {
    await srv.close();
    await open.close();
  });

  it("text/plain and form POSTs to Admin are refused with 415 and change nothing", async () => {
    for (const ct of ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]) {
      const a = await raw(port, "POST", "/v1/Admin/ApplyNamespace", { "content-type": ct }, entry("evil"));
      assert.equal(a.status, 415, `${ct}: ${a.text}`);
      assert.equal(JSON.parse(a.text).error.reason, "PRISM_ERR_UNSUPPORTED_MEDIA_TYPE");
      const d = await raw(port, "POST", "/v1/Admin/DeleteNamespace", { "content-type": ct }, JSON.stringify({ name: "keep" }));
      assert.equal(d.status, 415, ct);
    }
    assert.equal(srv.router.get("evil"), undefined, "ApplyNamespace did not happen");
    assert.ok(srv.router.get("keep"), "DeleteNamespace did not happen");
  });

  it("application/json (any charset) and no Content-Type at all are served", async () => {
    const a = await raw(port, "POST", "/v1/Admin/ApplyNamespace", { "content-type": "application/json; charset=utf-8" }, entry("fine"));
    assert.equal(a.status, 200, a.text);
    const h = await raw(port, "POST", "/v1/Admin/Health", {}, "{}");
    assert.equal(h.status, 200, h.text);
    // The raw KeyValue route takes bytes of any type (PUT is never a simple cross-site request; Origin is checked anyway).
    const put = await raw(port, "PUT", "/v1/ns/keep/kv/a", { "content-type": "application/octet-stream" }, "v");
    assert.equal(put.status, 200, put.text);
  });

  it("any request with an Origin is refused by default (403), WebSocket upgrades too", async () => {
    for (const origin of ["http://evil.example", "null", `http://127.0.0.1:${port}`]) {
      const r = await raw(port, "POST", "/v1/Admin/DeleteNamespace", { "content-type": "application/json", origin }, JSON.stringify({ name: "keep" }));
      assert.equal(r.status, 403, `${origin}: ${r.text}`);
      assert.equal(JSON.parse(r.text).error.reason, "PRISM_ERR_ORIGIN_NOT_ALLOWED");
      assert.equal(await upgrade(port, { origin }), 403, origin);
    }
    const g = await raw(port, "GET", "/v1/ns/keep/subscribe?pattern=x", { origin: "http://evil.example" });
    assert.equal(g.status, 403);
    assert.ok(srv.router.get("keep"));
    assert.equal(await upgrade(port, {}), "open", "no Origin: a plain client");
  });

  it("a listed Origin is served with CORS headers and preflights", async () => {
    const p = open.httpPort;
    const pre = await raw(p, "OPTIONS", "/v1/KeyValue/Set", { origin: "https://app.example", "access-control-request-method": "POST", "access-control-request-headers": "content-type" });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers["access-control-allow-origin"], "https://app.example");
    assert.match(String(pre.headers["access-control-allow-headers"]), /content-type/);
    const r = await raw(p, "POST", "/v1/Admin/Health", { origin: "https://app.example", "content-type": "application/json" }, "{}");
    assert.equal(r.status, 200);
    assert.equal(r.headers["access-control-allow-origin"], "https://app.example");
    assert.equal(await upgrade(p, { origin: "https://app.example" }), "open");
    assert.equal((await raw(p, "POST", "/v1/Admin/Health", { origin: "https://other.example", "content-type": "application/json" }, "{}")).status, 403);
  });

  it("a foreign Host (DNS rebinding) is refused with 421; IP literals and the server's names pass", async () => {
    const bad = await raw(port, "GET", "/healthz", { host: `evil.example:${port}` });
    assert.equal(bad.status, 421);
    assert.equal(JSON.parse(bad.text).error.reason, "PRISM_ERR_HOST_NOT_ALLOWED");
    assert.equal((await raw(port, "GET", "/healthz", { host: `localhost:${port + 1}` })).status, 421, "localhost on another port");
    assert.equal(await upgrade(port, { host: `evil.example:${port}` }), 421);
    for (const host of [`localhost:${port}`, `LOCALHOST:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, `10.1.2.3:8981`]) {
      assert.equal((await raw(port, "GET", "/healthz", { host })).status, 200, host);
    }
    // server.allowed_hosts: the names listed (any port when none is given).
    assert.equal((await raw(open.httpPort, "GET", "/healthz", { host: "prism.internal:8981" })).status, 200);
    assert.equal((await raw(open.httpPort, "GET", "/healthz", { host: "evil.example" })).status, 421);
  });

  it("the SDK works on every transport", async () => {
    for (const addr of [`ws://127.0.0.1:${port}`, `http://127.0.0.1:${port}`, `grpc://127.0.0.1:${srv.grpcPort}`] as const) {
      const c = await connect(addr, { timeoutMs: 5000 });
      try {
        await c.kv("keep").set("sdk", addr);
        assert.equal(Buffer.from((await c.kv("keep").get("sdk"))!).toString(), addr);
        await c.admin.health();
      } finally {
        await c.close();
      }
    }
  });
});
