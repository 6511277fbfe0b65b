/**
 * One identity must not take Prism down for the others (issue 19, per
 * principal). In-process server with API keys `flood` and `good`,
 * server.max_long_polls 200 (the worker's budget, shared by everyone) and
 * server.per_principal.max_long_polls 64:
 *
 * - `flood` opens 4 WebSocket connections and 2 gRPC connections (its own
 *   HTTP/2 sessions) and starts 100 long polls on each (600, three times the
 *   worker's budget): 64 are held, the rest refused at once with
 *   RESOURCE_EXHAUSTED / PRISM_ERR_PRINCIPAL_LIMIT naming the limit and not
 *   `good`; over HTTP the refusal is 429; the refusals are counted in
 *   prism_principal_limited_total{limit="max_long_polls"};
 * - meanwhile `good` runs Enqueue + Dequeue(wait_seconds) + Get over HTTP and
 *   WebSocket and keeps ≥ 95% success (without the limit `flood` holds the
 *   whole budget of 200 and every long poll of `good` is refused);
 * - closing `flood`'s connections releases its count, and it may poll again.
 * Run against both gRPC servers (node:http2 and grpc-js).
 * The in-flight limit (max_in_flight) is covered in test/unit/principal-limits.test.ts
 * (calls held open by a handler the test controls).
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { Client, credentials as grpcCredentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { startServer, type RunningServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { prism as pb } from "../../src/gen/prism.js";
import { sha256KeyHash } from "../../src/auth/apikeys.js";
import { methodByName } from "../../src/core/methods.js";
import { encoder } from "../../src/ingress/grpc-codec.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const FLOOD_KEY = "flood-key-7c1e55a0";
const GOOD_KEY = "good-key-0d93b2f4";
const RESOURCE_EXHAUSTED = 8;
const DEQUEUE = methodByName("Queue", "Dequeue")!;

function frame(id: number, method: number, body: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32LE((1 | ((id & 0xffff) << 16)) >>> 0, 0);
  head.writeUInt32LE(((id >>> 16) | (method << 16)) >>> 0, 4);
  return Buffer.concat([head, body]);
}

/** A WebSocket client (API key on the upgrade) counting answers: OK responses, and errors by code. */
class Conn {
  ok = 0;
  readonly errors = new Map<number, number>();
  readonly messages = new Set<string>();
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
        this.messages.add(st.message);
      }
      this.pending.get(id)?.(kind === 1);
      this.pending.delete(id);
    });
  }
  static open(port: number, key: string): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/ws`, { headers: { "x-api-key": key } });
      ws.once("open", () => resolve(new Conn(ws)));
      ws.once("error", reject);
    });
  }
  longPolls(n: number, queue: string): void {
    const body = pb.v1.DequeueRequest.encode({ namespace: "default", queue, waitSeconds: 20 }).finish();
    for (let i = 0; i < n; i++) this.ws.send(frame(++this.next, pb.v1.Method.QUEUE_DEQUEUE, body));
  }
  call(method: number, body: Uint8Array): Promise<boolean> {
    const id = ++this.next;
    const p = new Promise<boolean>((resolve) => this.pending.set(id, resolve));
    this.ws.send(frame(id, method, body));
    return p;
  }
  close(): void {
    this.ws.terminate();
  }
}

/** A gRPC connection of its own (no shared subchannel) sending long polls; counts the answers by code. */
class GrpcFlood {
  readonly client: Client;
  readonly codes = new Map<number, number>();
  readonly messages = new Set<string>();
  private readonly calls: { cancel(): void }[] = [];
  constructor(port: number) {
    this.client = new Client(`127.0.0.1:${port}`, grpcCredentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 });
  }
  longPolls(n: number, queue: string): void {
    const md = new Metadata();
    md.set("x-api-key", FLOOD_KEY);
    for (let i = 0; i < n; i++) {
      const call = this.client.makeUnaryRequest(
        DEQUEUE.path,
        encoder(DEQUEUE.requestType) as (v: any) => Buffer,
        (b: Buffer) => DEQUEUE.responseType.decode(b),
        { namespace: "default", queue, waitSeconds: 20 },
        md,
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

async function post(port: number, path: string, key: string, body: unknown): Promise<{ status: number; json: any }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { method: "POST", headers: { "content-type": "application/json", "x-api-key": key }, body: JSON.stringify(body) });
  return { status: r.status, json: await r.json().catch(() => undefined) };
}

for (const grpcServer of ["http2", "grpc-js"] as const) {
describe(`per-principal limits: one identity flooding long polls does not starve another (gRPC server ${grpcServer})`, { timeout: 90_000 }, () => {
  let srv: RunningServer;
  const ws: Conn[] = [];
  const grpc: GrpcFlood[] = [];
  const floodRefusals = () => [...ws.map((c) => c.errors.get(RESOURCE_EXHAUSTED) ?? 0), ...grpc.map((g) => g.codes.get(RESOURCE_EXHAUSTED) ?? 0)].reduce((a, b) => a + b, 0);

  before(async () => {
    const config = await validateConfig(
      {
        server: { grpc_server: grpcServer, max_long_polls: 200, per_principal: { max_long_polls: 64, max_in_flight: 512 } },
        namespaces: [{ name: "default", backend: { type: "memstore" } }],
        auth: {
          api_keys: [
            { name: "flood", hash: sha256KeyHash(FLOOD_KEY), roles: ["rw"] },
            { name: "good", hash: sha256KeyHash(GOOD_KEY), roles: ["rw"] },
          ],
          roles: { rw: [{ namespaces: ["*"], permissions: ["read", "write"] }] },
        },
      },
      "principal-limits.test",
    );
    srv = await startServer({ config, host: "127.0.0.1", grpcPort: 0, httpPort: 0, log: () => {}, accessLog: false });
  });
  after(async () => {
    for (const c of ws) c.close();
    for (const g of grpc) g.close();
    await srv?.close();
  });

  it("the flooding principal gets 64 long polls held over 6 connections, the rest RESOURCE_EXHAUSTED naming its limit", async () => {
    for (let i = 0; i < 4; i++) {
      const c = await Conn.open(srv.httpPort, FLOOD_KEY);
      ws.push(c);
      c.longPolls(100, `flood-${i}`);
    }
    for (let i = 0; i < 2; i++) {
      const g = new GrpcFlood(srv.grpcPort);
      grpc.push(g);
      g.longPolls(100, `flood-g${i}`);
    }
    const end = Date.now() + 15_000;
    while (floodRefusals() < 600 - 64 && Date.now() < end) await sleep(20);
    assert.equal(floodRefusals(), 600 - 64, `refused: ${floodRefusals()}`);
    assert.equal(srv.gateway.longPollsWaiting, 64);
    assert.deepEqual(srv.gateway.principalUsageOf("apikey:flood"), { inFlight: 0, longPolls: 64 });
    const messages = new Set([...ws.flatMap((c) => [...c.messages]), ...grpc.flatMap((g) => [...g.messages])]);
    assert.deepEqual([...messages], ["apikey:flood has 64 long polls waiting on this server, its limit (server.per_principal.max_long_polls); retry later or poll without waiting"]);
    for (const m of messages) assert.doesNotMatch(m, /good/);

    // Over HTTP: 429 with the stable reason.
    const r = await post(srv.httpPort, "/v1/Queue/Dequeue", FLOOD_KEY, { namespace: "default", queue: "flood-http", wait_seconds: 20 });
    assert.equal(r.status, 429);
    assert.equal(r.json?.error?.reason, "PRISM_ERR_PRINCIPAL_LIMIT", JSON.stringify(r.json));
    assert.match(r.json?.error?.message ?? "", /server\.per_principal\.max_long_polls/);

    const metrics = await (await fetch(`http://127.0.0.1:${srv.httpPort}/metrics`)).text();
    const line = metrics.split("\n").find((l) => l.startsWith('prism_principal_limited_total{limit="max_long_polls"}'));
    assert.ok(line !== undefined && Number(line.split(" ").pop()) >= 600 - 64 + 1, `metrics: ${line}`);
  });

  it("meanwhile the other principal keeps ≥ 95% success, long polls included", async (t) => {
    const good = await Conn.open(srv.httpPort, GOOD_KEY);
    let ok = 0;
    let total = 0;
    const enq = pb.v1.EnqueueRequest.encode({ namespace: "default", queue: "good-ws", payload: Buffer.from("m") }).finish();
    const deq = pb.v1.DequeueRequest.encode({ namespace: "default", queue: "good-ws", waitSeconds: 5 }).finish();
    for (let i = 0; i < 100; i++) {
      // WebSocket: Enqueue, then a long poll that finds the message at once.
      total += 2;
      if (await good.call(pb.v1.Method.QUEUE_ENQUEUE, enq)) ok++;
      if (await good.call(pb.v1.Method.QUEUE_DEQUEUE, deq)) ok++;
      // HTTP: the same, and a Get.
      total += 3;
      if ((await post(srv.httpPort, "/v1/Queue/Enqueue", GOOD_KEY, { namespace: "default", queue: "good-http", payload: Buffer.from("m").toString("base64") })).status === 200) ok++;
      if ((await post(srv.httpPort, "/v1/Queue/Dequeue", GOOD_KEY, { namespace: "default", queue: "good-http", wait_seconds: 5 })).status === 200) ok++;
      const g = await post(srv.httpPort, "/v1/KeyValue/Get", GOOD_KEY, { namespace: "default", key: `k${i}` });
      if (g.status === 200 || g.status === 404) ok++;
    }
    good.close();
    t.diagnostic(`good principal: ${ok}/${total} with ${srv.gateway.longPollsWaiting} long polls of apikey:flood waiting`);
    assert.ok(ok / total >= 0.95, `good principal: ${ok}/${total}`);
    assert.equal(srv.gateway.longPollsWaiting, 64, "the flood's polls are still waiting");
  });

  it("closing the flooding connections releases its count; it may poll again", async () => {
    for (const c of ws.splice(0)) c.close();
    for (const g of grpc.splice(0)) g.close();
    const end = Date.now() + 10_000;
    while (srv.gateway.longPollsWaiting > 0 && Date.now() < end) await sleep(20);
    assert.equal(srv.gateway.longPollsWaiting, 0);
    assert.deepEqual(srv.gateway.principalUsageOf("apikey:flood"), { inFlight: 0, longPolls: 0 });
    await post(srv.httpPort, "/v1/Queue/Enqueue", FLOOD_KEY, { namespace: "default", queue: "after", payload: Buffer.from("m").toString("base64") });
    const r = await post(srv.httpPort, "/v1/Queue/Dequeue", FLOOD_KEY, { namespace: "default", queue: "after", wait_seconds: 5 });
    assert.equal(r.status, 200, JSON.stringify(r.json));
  });
});
}
