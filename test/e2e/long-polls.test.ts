/**
 * Waiting long polls do not shed everyone else (issue 19). In-process server
 * with shedding at max_in_flight 1000 (normal priority shed from 765 in
 * flight); long polls (Dequeue wait_seconds 20 on an empty queue) have their
 * own budget, 256 per connection by default:
 *
 * - one WebSocket connection sending 3000 long polls gets 256 of them held and
 *   the rest refused at once (RESOURCE_EXHAUSTED naming the per-connection cap);
 * - five such connections hold 1280 long polls, more than the shedding point,
 *   while well-behaved HTTP and WebSocket clients keep ≥ 95% success (before:
 *   waiting polls counted as in-flight load and 86% of other calls were shed);
 * - the waiting polls are not in the shedding load, and they are released
 *   when their connections close;
 * - the worker's own cap (max_long_polls, 600 in its case) holds across connections;
 * - on both gRPC servers (node:http2 and grpc-js), each connection gets
 *   max_long_polls_per_connection (20 here) and the rest are refused.
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { startServer, type RunningServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { prism as pb } from "../../src/gen/prism.js";
import { Client, credentials as grpcCredentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { METHOD_BY_PATH } from "../../src/core/methods.js";
import { encoder } from "../../src/ingress/grpc-codec.js";

const DEQUEUE = METHOD_BY_PATH.get("/prism.v1.Queue/Dequeue")!;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function frame(id: number, method: number, body: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32LE((1 | ((id & 0xffff) << 16)) >>> 0, 0);
  head.writeUInt32LE(((id >>> 16) | (method << 16)) >>> 0, 4);
  return Buffer.concat([head, body]);
}

/** A WebSocket client counting answers: OK responses, and errors by code. */
class Conn {
  ok = 0;
  readonly errors = new Map<number, number>();
  lastError = "";
  readonly pending = new Map<number, (ok: boolean) => void>();
  private next = 0;
  constructor(readonly ws: WebSocket) {
    ws.on("message", (d: Buffer) => {
      const kind = d[0]!;
      const id = d.readUInt32LE(2);
      if (kind === 1) this.ok++;
      if (kind === 2) {
        const st = pb.v1.Status.decode(d.subarray(6));
        this.errors.set(st.code, (this.errors.get(st.code) ?? 0) + 1);
        this.lastError = st.message;
      }
      this.pending.get(id)?.(kind === 1);
      this.pending.delete(id);
    });
  }
  static open(port: number): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/ws`);
      ws.once("open", () => resolve(new Conn(ws)));
      ws.once("error", reject);
    });
  }
  longPolls(n: number, queue: string): void {
    const body = pb.v1.DequeueRequest.encode({ namespace: "default", queue, waitSeconds: 20 }).finish();
    for (let i = 0; i < n; i++) this.ws.send(frame(++this.next, pb.v1.Method.QUEUE_DEQUEUE, body));
  }
  get(key: string): Promise<boolean> {
    const id = ++this.next;
    const p = new Promise<boolean>((resolve) => this.pending.set(id, resolve));
    this.ws.send(frame(id, pb.v1.Method.KV_GET, pb.v1.GetRequest.encode({ namespace: "default", key }).finish()));
    return p;
  }
  close(): void {
    this.ws.terminate();
  }
}

describe("long polls have their own budget, not the shedding load", { timeout: 60_000 }, () => {
  let srv: RunningServer;
  const attackers: Conn[] = [];

  before(async () => {
    const config = await validateConfig({ server: { shedding: { max_in_flight: 1000 } }, namespaces: [{ name: "default", backend: { type: "memstore" } }] }, "long-polls.test");
    srv = await startServer({ config, host: "127.0.0.1", grpc: false, httpPort: 0, log: () => {} });
  });
  after(async () => {
    for (const c of attackers) c.close();
    await srv?.close();
  });

  it("one connection: 256 long polls held, the rest refused at once", async () => {
    const c = await Conn.open(srv.httpPort);
    attackers.push(c);
    c.longPolls(3000, "empty-0");
    const end = Date.now() + 10_000;
    while ((c.errors.get(8) ?? 0) < 3000 - 256 && Date.now() < end) await sleep(20);
    assert.equal(c.errors.get(8), 3000 - 256, `refused: ${[...c.errors].join(" ")}`);
    assert.match(c.lastError, /long polls are waiting on this connection/);
    assert.equal(srv.gateway.longPollsWaiting, 256);
  });

  it("1280 long polls waiting (above the shedding point): other clients keep ≥ 95% success", async (t) => {
    for (let i = 1; i < 5; i++) {
      const c = await Conn.open(srv.httpPort);
      attackers.push(c);
      c.longPolls(256, `empty-${i}`);
    }
    const end = Date.now() + 10_000;
    while (srv.gateway.longPollsWaiting < 1280 && Date.now() < end) await sleep(20);
    assert.equal(srv.gateway.longPollsWaiting, 1280);
    assert.ok(srv.gateway.inFlightCount < 50, `in-flight load ${srv.gateway.inFlightCount}`);
    const good = await Conn.open(srv.httpPort);
    let ok = 0;
    let total = 0;
    for (let i = 0; i < 300; i++) {
      total += 2;
      if (await good.get(`k${i}`)) ok++;
      const r = await fetch(`http://127.0.0.1:${srv.httpPort}/v1/ns/default/kv/k${i}`);
      await r.arrayBuffer();
      if (r.status === 404 || r.status === 200) ok++;
    }
    good.close();
    t.diagnostic(`well-behaved calls: ${ok}/${total} succeeded with ${srv.gateway.longPollsWaiting} long polls waiting`);
    assert.ok(ok / total >= 0.95, `${ok}/${total}`);
  });

  it("closing the connections releases their long polls", async () => {
    for (const c of attackers.splice(0)) c.close();
    const end = Date.now() + 5000;
    while (srv.gateway.longPollsWaiting > 0 && Date.now() < end) await sleep(20);
    assert.equal(srv.gateway.longPollsWaiting, 0);
  });
});

describe("the worker's long-poll budget (server.max_long_polls)", { timeout: 60_000 }, () => {
  let srv: RunningServer;
  const conns: Conn[] = [];
  before(async () => {
    const config = await validateConfig({ server: { max_long_polls: 600 }, namespaces: [{ name: "default", backend: { type: "memstore" } }] }, "long-polls.test");
    srv = await startServer({ config, host: "127.0.0.1", grpc: false, httpPort: 0, log: () => {} });
  });
  after(async () => {
    for (const c of conns) c.close();
    await srv?.close();
  });

  it("three connections × 256 long polls: 600 held across them, the rest refused naming the worker's cap; others still served", async () => {
    for (let i = 0; i < 3; i++) {
      const c = await Conn.open(srv.httpPort);
      conns.push(c);
      c.longPolls(256, `empty-w${i}`);
    }
    const refusedOf = () => conns.reduce((a, c) => a + (c.errors.get(8) ?? 0), 0);
    const end = Date.now() + 10_000;
    while (refusedOf() < 3 * 256 - 600 && Date.now() < end) await sleep(20);
    assert.equal(srv.gateway.longPollsWaiting, 600);
    assert.equal(refusedOf(), 3 * 256 - 600);
    assert.ok(conns.some((c) => /long polls are waiting on this server \(server\.max_long_polls\)/.test(c.lastError)), conns.map((c) => c.lastError).join(" | "));
    // A call that does not wait is not a long poll: still answered.
    const good = await Conn.open(srv.httpPort);
    assert.equal(await good.get("k"), true);
    good.close();
    for (const c of conns.splice(0)) c.close();
    const end2 = Date.now() + 5000;
    while (srv.gateway.longPollsWaiting > 0 && Date.now() < end2) await sleep(20);
    assert.equal(srv.gateway.longPollsWaiting, 0);
  });
});

/** A gRPC connection of its own (no shared subchannel) sending long polls; counts the answers by code. */
class GrpcConn {
  readonly client: Client;
  readonly codes = new Map<number, number>();
  readonly messages = new Set<string>();
  private readonly calls: { cancel(): void }[] = [];
  constructor(port: number) {
    this.client = new Client(`127.0.0.1:${port}`, grpcCredentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
  }
  longPolls(n: number, queue: string): void {
    for (let i = 0; i < n; i++) {
      const call = this.client.makeUnaryRequest(
        DEQUEUE.path,
        encoder(DEQUEUE.requestType) as (v: any) => Buffer,
        (b: Buffer) => DEQUEUE.responseType.decode(b),
        { namespace: "default", queue, waitSeconds: 20 },
        new Metadata(),
        {},
        (err: ServiceError | null) => {
          const code = err?.code ?? 0;
          this.codes.set(code, (this.codes.get(code) ?? 0) + 1);
          if (err) this.messages.add(err.details);
        },
      );
      this.calls.push(call);
    }
  }
  close(): void {
    for (const c of this.calls) c.cancel();
    this.client.close();
  }
}

for (const grpcServer of ["http2", "grpc-js"] as const) {
  describe(`long polls per connection on the gRPC server (${grpcServer})`, { timeout: 60_000 }, () => {
    let srv: RunningServer;
    const conns: GrpcConn[] = [];
    before(async () => {
      const config = await validateConfig(
        { server: { grpc_server: grpcServer, max_long_polls_per_connection: 20 }, namespaces: [{ name: "default", backend: { type: "memstore" } }] },
        "long-polls-grpc.test",
      );
      srv = await startServer({ config, host: "127.0.0.1", grpcPort: 0, http: false, log: () => {} });
    });
    after(async () => {
      for (const c of conns) c.close();
      await srv?.close();
    });

    it("each connection gets max_long_polls_per_connection held, the rest RESOURCE_EXHAUSTED naming the cap", async () => {
      for (let i = 0; i < 2; i++) {
        const c = new GrpcConn(srv.grpcPort);
        conns.push(c);
        c.longPolls(50, `empty-g${i}`);
      }
      const refused = () => conns.reduce((n, c) => n + (c.codes.get(8) ?? 0), 0);
      const end = Date.now() + 10_000;
      while (refused() < 60 && Date.now() < end) await sleep(20);
      assert.equal(refused(), 60, `refused: ${refused()}, waiting ${srv.gateway.longPollsWaiting}`);
      assert.equal(srv.gateway.longPollsWaiting, 40, "20 per connection");
      for (const c of conns) assert.deepEqual([...c.messages], ["more than 20 long polls are waiting on this connection (server.max_long_polls_per_connection)"]);
    });

    it("closing the connections releases their long polls", async () => {
      for (const c of conns.splice(0)) c.close();
      const end = Date.now() + 5000;
      while (srv.gateway.longPollsWaiting > 0 && Date.now() < end) await sleep(20);
      assert.equal(srv.gateway.longPollsWaiting, 0);
    });
  });
}
