/**
 * One identity must not fill the worker's budget of unfinished request bytes
 * for everyone (server.per_principal.max_buffered_bytes). In-process server
 * with API keys `flood` and `good`, server.max_buffered_request_bytes 16 MiB
 * (the worker's budget, shared by everyone) and per_principal
 * max_buffered_bytes 6 MiB:
 *
 * - `flood` runs 40 attack loops (HTTP, HTTP/2 gRPC on its own sessions,
 *   WebSocket), each declaring a 2 MiB body / gRPC message / frame, sending
 *   1 MiB of it and stalling; when refused it tries again (40 MiB demanded,
 *   2.5 × the budget). Its bytes are charged to apikey:flood as they arrive
 *   (the key is in the headers, before the body): past 6 MiB it is refused,
 *   429 / RESOURCE_EXHAUSTED PRISM_ERR_PRINCIPAL_LIMIT naming the limit;
 * - meanwhile `good` runs KeyValue.Set calls with 256 KiB values over HTTP,
 *   gRPC and WebSocket and keeps ≥ 95% success. Without the limit the flood
 *   keeps the worker's budget full and most of `good`'s bodies are refused.
 * - once the flood stops, `flood` may send bodies again.
 * Default gRPC server (node:http2) and grpc-js.
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect as netConnect, type Socket } from "node:net";
import { connect as h2connect, type ClientHttp2Session } from "node:http2";
import { randomBytes } from "node:crypto";
import WebSocket from "ws";
import { Client, credentials as grpcCredentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { startServer, type RunningServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { prism as pb } from "../../src/gen/prism.js";
import { sha256KeyHash } from "../../src/auth/apikeys.js";
import { methodByName } from "../../src/core/methods.js";
import { encoder } from "../../src/ingress/grpc-codec.js";

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const FLOOD_KEY = "flood-key-51b0c7e2";
const GOOD_KEY = "good-key-93ad04f1";
const PUT = methodByName("KeyValue", "Set")!;
const LIMIT_MESSAGE = /^apikey:flood has more than 6291456 bytes of unfinished requests buffered on this server, its limit \(server\.per_principal\.max_buffered_bytes\); retry later$/;
const DECLARED = 2 * MiB;
const PART = Buffer.alloc(MiB, 7);

function tcp(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect(port, "127.0.0.1", () => resolve(s));
    s.on("error", () => {});
    s.once("error", reject);
  });
}

/** What the flood saw: refusals naming the per-principal limit, other answers. */
class FloodLog {
  principalRefusals = 0;
  readonly other = new Set<string>();
  note(status: string, message: string): void {
    if (LIMIT_MESSAGE.test(message)) this.principalRefusals++;
    else this.other.add(`${status} ${message}`.slice(0, 300));
  }
}

/** Until stopped: sends part of a body, stalls; when the server answers or closes, does it again. */
function floodLoops(port: number, grpcPort: number, log: FloodLog): { stop(): void } {
  let running = true;
  const open = new Set<{ destroy(): void }>();
  const closed = (s: Socket | ClientHttp2Session) => new Promise<void>((resolve) => s.once("close", () => resolve()));

  const http = async () => {
    while (running) {
      const s = await tcp(port).catch(() => undefined);
      if (s === undefined) break;
      // stop() may have run while this connect was in flight: such a connection would stall a body until
      // request_timeout_ms (60 s) and keep the flood over its limit after the test stopped it.
      if (!running) {
        s.destroy();
        break;
      }
      open.add(s);
      let answer = "";
      s.on("data", (d: Buffer) => (answer += d.toString("utf8")));
      s.write(`POST /v1/KeyValue/Set HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nx-api-key: ${FLOOD_KEY}\r\ncontent-type: application/json\r\ncontent-length: ${DECLARED}\r\n\r\n`);
      s.write(PART);
      await closed(s);
      open.delete(s);
      if (answer !== "") {
        const status = answer.slice(0, answer.indexOf("\r\n"));
        const body = answer.slice(answer.indexOf("\r\n\r\n") + 4);
        let message = body;
        try {
          message = JSON.parse(body).error?.message ?? body;
        } catch {
          // not JSON: kept as it is
        }
        log.note(status, message);
      }
      await sleep(20);
    }
  };

  const grpc = async () => {
    const session = h2connect(`http://127.0.0.1:${grpcPort}`);
    session.on("error", () => {});
    open.add(session);
    while (running && !session.destroyed) {
      const stream = session.request({ ":method": "POST", ":path": PUT.path, "content-type": "application/grpc", te: "trailers", "x-api-key": FLOOD_KEY });
      stream.on("error", () => {});
      const head = Buffer.alloc(5);
      head.writeUInt32BE(DECLARED, 1);
      stream.write(head);
      stream.write(PART);
      const done = new Promise<void>((resolve) => stream.once("close", () => resolve()));
      const seen = (h: Record<string, unknown>) => {
        if (h["grpc-status"] !== undefined) log.note(`grpc-status ${String(h["grpc-status"])}`, decodeURIComponent(String(h["grpc-message"] ?? "")));
      };
      stream.on("response", seen);
      stream.on("trailers", seen);
      stream.resume();
      await done;
      await sleep(20);
    }
  };

  const ws = async () => {
    while (running) {
      const s = await tcp(port).catch(() => undefined);
      if (s === undefined) break;
      // stop() may have run while this connect was in flight: such a connection would stall a body until
      // request_timeout_ms (60 s) and keep the flood over its limit after the test stopped it.
      if (!running) {
        s.destroy();
        break;
      }
      open.add(s);
      const key = randomBytes(16).toString("base64");
      s.write(`GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nx-api-key: ${FLOOD_KEY}\r\n\r\n`);
      const h = Buffer.alloc(14);
      h[0] = 0x82;
      h[1] = 0x80 | 127;
      h.writeBigUInt64BE(BigInt(DECLARED), 2);
      randomBytes(4).copy(h, 10);
      s.write(h);
      s.write(PART);
      s.resume();
      await closed(s);
      open.delete(s);
      await sleep(20);
    }
  };

  const loops = [...Array.from({ length: 16 }, http), ...Array.from({ length: 12 }, grpc), ...Array.from({ length: 12 }, ws)];
  return {
    stop() {
      running = false;
      for (const s of open) s.destroy();
      void Promise.allSettled(loops);
    },
  };
}

async function post(port: number, path: string, key: string, body: unknown): Promise<{ status: number; json: any }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { method: "POST", headers: { "content-type": "application/json", "x-api-key": key }, body: JSON.stringify(body) });
  return { status: r.status, json: await r.json().catch(() => undefined) };
}

function wsFrame(id: number, method: number, body: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32LE((1 | ((id & 0xffff) << 16)) >>> 0, 0);
  head.writeUInt32LE(((id >>> 16) | (method << 16)) >>> 0, 4);
  return Buffer.concat([head, body]);
}

/** `good` over WebSocket: one call at a time; true for an OK response. */
class GoodWs {
  private next = 0;
  private pending: ((ok: boolean) => void) | undefined;
  constructor(readonly ws: WebSocket) {
    ws.on("message", (d: Buffer) => {
      this.pending?.(d[0] === 1);
      this.pending = undefined;
    });
    ws.on("close", () => {
      this.pending?.(false);
      this.pending = undefined;
    });
  }
  static open(port: number): Promise<GoodWs> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/ws`, { headers: { "x-api-key": GOOD_KEY } });
      ws.once("open", () => resolve(new GoodWs(ws)));
      ws.once("error", reject);
    });
  }
  call(method: number, body: Uint8Array): Promise<boolean> {
    if (this.ws.readyState !== WebSocket.OPEN) return Promise.resolve(false);
    const p = new Promise<boolean>((resolve) => (this.pending = resolve));
    this.ws.send(wsFrame(++this.next, method, body));
    return p;
  }
}

function grpcPut(client: Client, value: Buffer, key: string): Promise<boolean> {
  const md = new Metadata();
  md.set("x-api-key", GOOD_KEY);
  return new Promise((resolve) =>
    client.makeUnaryRequest(
      PUT.path,
      encoder(PUT.requestType) as (v: any) => Buffer,
      (b: Buffer) => PUT.responseType.decode(b),
      { namespace: "default", key, value },
      md,
      { deadline: Date.now() + 10_000 },
      (err: ServiceError | null) => resolve(err === null),
    ),
  );
}

for (const grpcServer of ["http2", "grpc-js"] as const) {
  describe(`per-principal buffered bytes: one identity stalling large bodies does not starve another (gRPC server ${grpcServer})`, { timeout: 120_000 }, () => {
    let srv: RunningServer;

    before(async () => {
      const config = await validateConfig(
        {
          server: {
            grpc_server: grpcServer,
            max_message_bytes: 4 * MiB,
            max_buffered_request_bytes: 16 * MiB,
            request_timeout_ms: 60_000,
            per_principal: { max_buffered_bytes: 6 * MiB },
          },
          namespaces: [{ name: "default", backend: { type: "memstore" } }],
          auth: {
            api_keys: [
              { name: "flood", hash: sha256KeyHash(FLOOD_KEY), roles: ["rw"] },
              { name: "good", hash: sha256KeyHash(GOOD_KEY), roles: ["rw"] },
            ],
            roles: { rw: [{ namespaces: ["*"], permissions: ["read", "write"] }] },
          },
        },
        "principal-buffered-bytes.test",
      );
      srv = await startServer({ config, host: "127.0.0.1", grpcPort: 0, httpPort: 0, log: () => {}, accessLog: false });
    });
    after(async () => {
      await srv?.close();
    });

    it("the flood meets its own limit; `good` keeps ≥ 95% success on calls with bodies; then the flood may send again", async (t) => {
      const log = new FloodLog();
      const flood = floodLoops(srv.httpPort, srv.grpcPort, log);
      const goodWs = await GoodWs.open(srv.httpPort);
      const client = new Client(`127.0.0.1:${srv.grpcPort}`, grpcCredentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
      let ok = 0;
      let total = 0;
      try {
        // Let the flood reach its ceiling first.
        const end = Date.now() + 15_000;
        while (log.principalRefusals < 20 && Date.now() < end) await sleep(50);
        const value = Buffer.alloc(256 * 1024, 1);
        for (let i = 0; i < 40; i++) {
          total += 3;
          const r = await post(srv.httpPort, "/v1/KeyValue/Set", GOOD_KEY, { namespace: "default", key: `h${i}`, value: value.toString("base64") });
          if (r.status === 200) ok++;
          if (await grpcPut(client, value, `g${i}`)) ok++;
          const body = pb.v1.SetRequest.encode({ namespace: "default", key: `w${i}`, value }).finish();
          if (await goodWs.call(pb.v1.Method.KV_SET, body)) ok++;
        }
      } finally {
        flood.stop();
        goodWs.ws.terminate();
        client.close();
      }
      t.diagnostic(`good principal: ${ok}/${total}; flood refused by its limit ${log.principalRefusals} times; other flood answers: ${[...log.other].join(" | ")}`);
      assert.ok(ok / total >= 0.95, `good principal: ${ok}/${total}`);
      assert.ok(log.principalRefusals >= 20, `the flood was refused naming its limit ${log.principalRefusals} times; other answers: ${[...log.other].join(" | ")}`);

      // The flood's bytes were released: it may send a body again (retrying while its closed connections settle).
      let r = { status: 0, json: undefined as any };
      const end = Date.now() + 10_000;
      while (Date.now() < end) {
        r = await post(srv.httpPort, "/v1/KeyValue/Set", FLOOD_KEY, { namespace: "default", key: "after", value: Buffer.alloc(MiB, 2).toString("base64") });
        if (r.status === 200) break;
        await sleep(100);
      }
      assert.equal(r.status, 200, JSON.stringify(r.json));
    });

    it("over HTTP the refusal is 429 PRISM_ERR_PRINCIPAL_LIMIT naming server.per_principal.max_buffered_bytes", async () => {
      const body = { namespace: "default", key: "big", value: Buffer.alloc(2 * MiB, 3).toString("base64") };
      const socks: Socket[] = [];
      try {
        // Three stalled 2 MiB bodies (6 MiB: at the limit), then one more request whose body passes it.
        for (let i = 0; i < 3; i++) {
          const s = await tcp(srv.httpPort);
          socks.push(s);
          s.write(`POST /v1/KeyValue/Set HTTP/1.1\r\nHost: 127.0.0.1:${srv.httpPort}\r\nx-api-key: ${FLOOD_KEY}\r\ncontent-type: application/json\r\ncontent-length: ${3 * MiB}\r\n\r\n`);
          s.write(Buffer.alloc(2 * MiB, 0x20));
        }
        await sleep(300);
        const r = await post(srv.httpPort, "/v1/KeyValue/Set", FLOOD_KEY, body);
        assert.equal(r.status, 429, JSON.stringify(r.json));
        assert.equal(r.json?.error?.reason, "PRISM_ERR_PRINCIPAL_LIMIT", JSON.stringify(r.json));
        assert.match(r.json?.error?.message ?? "", LIMIT_MESSAGE);
        const metrics = await (await fetch(`http://127.0.0.1:${srv.httpPort}/metrics`)).text();
        const line = metrics.split("\n").find((l) => l.startsWith('prism_principal_limited_total{limit="max_buffered_bytes"}'));
        assert.ok(line !== undefined && Number(line.split(" ").pop()) >= 20, `metrics: ${line}`);
        // `good` is charged to its own key: the same body passes.
        const g = await post(srv.httpPort, "/v1/KeyValue/Set", GOOD_KEY, body);
        assert.equal(g.status, 200, JSON.stringify(g.json));
      } finally {
        for (const s of socks) s.destroy();
      }
    });
  });
}
