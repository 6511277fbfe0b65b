/**
 * An unfinished message is bounded in TIME, not only in bytes (issue 19: "64
 * streams … then stop … and nothing timed them out"). test/e2e/connection-limits
 * fills the byte budgets, so most of its stalls end by a refusal or an eviction;
 * here each stall is small (1 MiB of a declared 2 MiB, far inside every byte
 * limit), so only server.request_timeout_ms (1.5 s here) can end it:
 *
 * - gRPC over node:http2 and over grpc-js: one stream, a gRPC message prefix
 *   declaring 2 MiB, 1 MiB of it, then nothing: the stream is ended
 *   (RESOURCE_EXHAUSTED naming request_timeout_ms on node:http2, a reset on
 *   grpc-js) — the session stays open for other calls;
 * - WebSocket: 1 MiB of a 2 MiB frame: closed with 1008;
 * - HTTP: a POST with Content-Length 2 MiB and 1 MiB of body: 408 and closed;
 * - and an HTTP/1.1 keep-alive connection that made one request and went quiet
 *   is closed after its idle timeout (idle_timeout_ms 2 s here; node:http's own
 *   keep-alive timeout of 5 s would also close it within the bound, so this case
 *   checks that it holds rather than telling the limit apart).
 *
 * Each stall must end no earlier than request_timeout_ms (so it is the timeout,
 * not a byte limit, that ended it) and within a generous bound (+ 6 s). Meanwhile
 * a well-behaved client (HTTP GETs and PUTs, WebSocket Gets) keeps ≥ 95% success,
 * and the server keeps serving afterwards. With request_timeout_ms 0 (no limit)
 * the three stalls stay open for as long as the client holds them and their
 * cases fail. HTTP used to answer the timeout 400 Bad Request (Prism's
 * clientError handler): now 408.
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect as netConnect, type Socket } from "node:net";
import { connect as h2connect, constants as h2c } from "node:http2";
import { randomBytes } from "node:crypto";
import { Agent, request } from "node:http";
import WebSocket from "ws";
import { startServer, type RunningServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { prism as pb } from "../../src/gen/prism.js";

const MiB = 1024 * 1024;
const REQUEST_TIMEOUT_MS = 1500;
const IDLE_TIMEOUT_MS = 2000;
/** Generous: the sweeps run every second, and the machine may be busy. */
const SLACK_MS = 6000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function tcp(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect(port, "127.0.0.1", () => resolve(s));
    s.on("error", () => {});
    s.once("error", reject);
  });
}

/** Resolves with the ms from `t0` to the socket's close, or -1 after ms. */
function closedAfter(s: Socket, t0: number, ms: number): Promise<number> {
  if (s.destroyed) return Promise.resolve(Date.now() - t0);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(-1), ms);
    s.once("close", () => {
      clearTimeout(t);
      resolve(Date.now() - t0);
    });
  });
}

function wsFrame(id: number, method: number, body: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32LE((1 | ((id & 0xffff) << 16)) >>> 0, 0);
  head.writeUInt32LE(((id >>> 16) | (method << 16)) >>> 0, 4);
  return Buffer.concat([head, body]);
}

/** Well-behaved calls in a loop until stopped: HTTP GET, HTTP PUT (64 KiB), WebSocket KeyValue.Get. */
function goodClients(port: number): { stop(): Promise<{ ok: number; total: number }> } {
  let running = true;
  const agent = new Agent({ keepAlive: true });
  const value = Buffer.alloc(64 * 1024, 0x61);
  const http = (method: "GET" | "PUT", path: string, body?: Buffer) =>
    new Promise<boolean>((resolve) => {
      const req = request({ host: "127.0.0.1", port, method, path, agent, timeout: 5000, headers: body ? { "content-length": body.length } : {} }, (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode === 200 || res.statusCode === 404));
      });
      req.on("timeout", () => req.destroy());
      req.on("error", () => resolve(false));
      req.end(body);
    });
  let ws: WebSocket | undefined;
  let id = 0;
  const wsGet = async (): Promise<boolean> => {
    try {
      ws ??= await new Promise<WebSocket>((resolve, reject) => {
        const c = new WebSocket(`ws://127.0.0.1:${port}/v1/ws`);
        c.once("open", () => resolve(c));
        c.once("error", reject);
      });
    } catch {
      ws = undefined;
      return false;
    }
    const c = ws;
    const my = ++id;
    const ok = await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => done(false), 5000);
      const done = (v: boolean) => {
        clearTimeout(t);
        c.off("message", onMessage);
        resolve(v);
      };
      const onMessage = (d: Buffer) => d.readUInt32LE(2) === my && done(d[0] === 1);
      c.on("message", onMessage);
      c.send(wsFrame(my, pb.v1.Method.KV_GET, pb.v1.GetRequest.encode({ namespace: "default", key: "good" }).finish()));
    });
    if (!ok) {
      c.terminate();
      ws = undefined;
    }
    return ok;
  };
  const calls = [() => http("GET", "/v1/ns/default/kv/good"), () => http("PUT", "/v1/ns/default/kv/good-put", value), wsGet];
  let ok = 0;
  let total = 0;
  const loops = calls.map(async (call) => {
    while (running) {
      total++;
      if (await call()) ok++;
      await sleep(10);
    }
  });
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      agent.destroy();
      ws?.terminate();
      return { ok, total };
    },
  };
}

for (const grpcServer of ["http2", "grpc-js"] as const) {
  describe(`unfinished messages end after request_timeout_ms (gRPC server ${grpcServer})`, { timeout: 90_000 }, () => {
    let srv: RunningServer;
    const both = grpcServer === "http2"; // the HTTP port does not depend on the gRPC server: its cases run once

    before(async () => {
      const config = await validateConfig(
        {
          server: { grpc_server: grpcServer, header_timeout_ms: 1000, idle_timeout_ms: IDLE_TIMEOUT_MS, request_timeout_ms: REQUEST_TIMEOUT_MS },
          namespaces: [{ name: "default", backend: { type: "memstore" } }],
        },
        "request-timeout.test",
      );
      srv = await startServer({ config, host: "127.0.0.1", grpcPort: 0, httpPort: 0, log: () => {} });
    });
    after(async () => {
      await srv?.close();
    });

    it("gRPC: 1 MiB of a 2 MiB message, then nothing: the stream is ended after request_timeout_ms, the session serves on", async (t) => {
      const good = goodClients(srv.httpPort);
      const session = h2connect(`http://127.0.0.1:${srv.grpcPort}`);
      session.on("error", () => {});
      await new Promise<void>((resolve) => session.once("remoteSettings", () => resolve()));
      const st = session.request({ ":method": "POST", ":path": "/prism.v1.KeyValue/Set", "content-type": "application/grpc", te: "trailers" });
      st.on("error", () => {});
      let status = "";
      let message = "";
      st.on("response", (h) => {
        if (h["grpc-status"] !== undefined) {
          status = String(h["grpc-status"]);
          message = decodeURIComponent(String(h["grpc-message"] ?? ""));
        }
      });
      st.on("trailers", (h) => {
        status = String(h["grpc-status"]);
        message = decodeURIComponent(String(h["grpc-message"] ?? ""));
      });
      st.resume();
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(2 * MiB, 1);
      const t0 = Date.now();
      st.write(prefix);
      st.write(Buffer.alloc(MiB, 1));
      const took = await new Promise<number>((resolve) => {
        const timer = setTimeout(() => resolve(-1), REQUEST_TIMEOUT_MS + SLACK_MS);
        st.once("close", () => {
          clearTimeout(timer);
          resolve(Date.now() - t0);
        });
      });
      t.diagnostic(`gRPC stall ended after ${took} ms (grpc-status ${status || "-"}, rst ${st.rstCode}): ${message}`);
      // The same session still serves a call.
      const health = await new Promise<string>((resolve) => {
        const h = session.request({ ":method": "POST", ":path": "/prism.v1.Admin/Health", "content-type": "application/grpc", te: "trailers" });
        h.on("error", (e) => resolve(`error ${e.message}`));
        h.on("trailers", (tr) => resolve(String(tr["grpc-status"])));
        h.on("response", (r) => r["grpc-status"] !== undefined && resolve(String(r["grpc-status"])));
        h.resume();
        h.end(Buffer.alloc(5));
      });
      session.destroy();
      const g = await good.stop();
      t.diagnostic(`well-behaved clients during the stall: ${g.ok}/${g.total}`);
      assert.ok(took >= 0, `the stalled stream was still open ${REQUEST_TIMEOUT_MS + SLACK_MS} ms later`);
      assert.ok(took >= REQUEST_TIMEOUT_MS - 100, `ended after ${took} ms: before request_timeout_ms, so by something else`);
      if (grpcServer === "http2") {
        assert.equal(status, "8", "RESOURCE_EXHAUSTED");
        assert.match(message, /did not complete within 1500 ms \(server\.request_timeout_ms\)/);
      } else assert.ok(status === "8" || st.rstCode === h2c.NGHTTP2_ENHANCE_YOUR_CALM, `grpc-status ${status}, rst ${st.rstCode}`);
      assert.equal(health, "0", "the session serves another call");
      assert.ok(g.total > 0 && g.ok / g.total >= 0.95, `well-behaved ${g.ok}/${g.total}`);
    });

    it("WebSocket: 1 MiB of a 2 MiB frame, then nothing: closed with 1008 after request_timeout_ms", { skip: !both && "the HTTP port does not depend on the gRPC server" }, async (t) => {
      const good = goodClients(srv.httpPort);
      const s = await tcp(srv.httpPort);
      s.write(`GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:${srv.httpPort}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      let got = Buffer.alloc(0);
      s.on("data", (d: Buffer) => (got = Buffer.concat([got, d])));
      while (!got.includes("\r\n\r\n")) await sleep(10);
      assert.match(got.toString("latin1"), /^HTTP\/1\.1 101/);
      got = got.subarray(got.indexOf("\r\n\r\n") + 4);
      const h = Buffer.alloc(14);
      h[0] = 0x82;
      h[1] = 0x80 | 127;
      h.writeBigUInt64BE(BigInt(2 * MiB), 2);
      randomBytes(4).copy(h, 10);
      const t0 = Date.now();
      s.write(h);
      s.write(Buffer.alloc(MiB, 2));
      const took = await closedAfter(s, t0, REQUEST_TIMEOUT_MS + SLACK_MS);
      s.destroy();
      const g = await good.stop();
      // The server's close frame: 0x88, length, then the code (big-endian).
      const code = got.length >= 4 && got[0] === 0x88 ? got.readUInt16BE(2) : 0;
      t.diagnostic(`WebSocket stall closed after ${took} ms with ${code} "${got.subarray(4, 2 + (got[1] ?? 0)).toString()}"; well-behaved ${g.ok}/${g.total}`);
      assert.ok(took >= 0, "the stalled WebSocket was still open");
      assert.ok(took >= REQUEST_TIMEOUT_MS - 100, `closed after ${took} ms: before request_timeout_ms`);
      assert.equal(code, 1008);
      assert.ok(g.total > 0 && g.ok / g.total >= 0.95, `well-behaved ${g.ok}/${g.total}`);
    });

    it("HTTP: 1 MiB of a 2 MiB body, then nothing: 408 and closed after request_timeout_ms", { skip: !both && "the HTTP port does not depend on the gRPC server" }, async (t) => {
      const good = goodClients(srv.httpPort);
      const s = await tcp(srv.httpPort);
      let got = "";
      s.on("data", (d: Buffer) => (got += d.toString("latin1")));
      const t0 = Date.now();
      s.write(`POST /v1/KeyValue/Set HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${2 * MiB}\r\n\r\n`);
      s.write(Buffer.alloc(MiB, 0x20));
      const took = await closedAfter(s, t0, REQUEST_TIMEOUT_MS + SLACK_MS);
      s.destroy();
      const g = await good.stop();
      t.diagnostic(`HTTP stall closed after ${took} ms: ${got.split("\r\n")[0]}; well-behaved ${g.ok}/${g.total}`);
      assert.ok(took >= 0, "the stalled request was still open");
      assert.ok(took >= REQUEST_TIMEOUT_MS - 100, `closed after ${took} ms: before request_timeout_ms`);
      assert.match(got, /^HTTP\/1\.1 408/);
      assert.ok(g.total > 0 && g.ok / g.total >= 0.95, `well-behaved ${g.ok}/${g.total}`);
    });

    it("HTTP: a keep-alive connection that made one request and went quiet is closed after its idle timeout", { skip: !both && "the HTTP port does not depend on the gRPC server" }, async (t) => {
      const s = await tcp(srv.httpPort);
      let got = "";
      s.on("data", (d: Buffer) => (got += d.toString("latin1")));
      s.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      while (!got.includes("SERVING")) await sleep(10);
      const t0 = Date.now();
      const took = await closedAfter(s, t0, IDLE_TIMEOUT_MS + SLACK_MS);
      s.destroy();
      t.diagnostic(`idle keep-alive connection closed after ${took} ms`);
      assert.match(got, /^HTTP\/1\.1 200/);
      assert.ok(took >= 0, "the idle keep-alive connection was still open");
    });

    it("keeps serving afterwards", async () => {
      const r = await fetch(`http://127.0.0.1:${srv.httpPort}/v1/ns/default/kv/after`, { method: "PUT", body: "x" });
      assert.equal(r.status, 200);
      assert.equal((await fetch(`http://127.0.0.1:${srv.httpPort}/healthz`)).status, 200);
    });
  });
}
