/**
 * Redis outage, end to end. A PRIVATE redis-server (own port, AOF with
 * appendfsync always, own dir under the temp dir) backs namespace `outage`;
 * namespace `steady` uses the shared Redis on 6379 and must keep serving.
 * The shared Redis is never stopped.
 *
 * Asserted:
 * - while the private Redis is down, calls on `outage` answer 503 /
 *   PRISM_ERR_BACKEND_UNAVAILABLE (no hang), `steady` answers normally, and
 *   Admin.Health reports the namespace as not ok;
 * - a Prism started while that Redis is down starts, and answers UNAVAILABLE;
 * - after redis-server is restarted on the same port and dir, both Prism
 *   processes recover without a restart, and every write acknowledged before
 *   the outage (KV keys, a queue message, stream records) is read back;
 * - the driver warns at start when maxmemory-policy is not noeviction (the
 *   private server runs allkeys-lru on purpose).
 * What is not asserted: writes in flight at the instant of the kill (they may
 * or may not have been applied; their callers got UNAVAILABLE or a success).
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { startServer, type RunningServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { freePort, privateRedis, type PrivateServer } from "../helpers/private-servers.js";
import { deleteRedisPrefix } from "../helpers/redis-cleanup.js";

const SHARED = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const run = randomBytes(3).toString("hex");
const prefix = `prism-outage-${process.pid}-${run}`;
const dir = mkdtempSync(join(tmpdir(), `prism-redis-outage-${run}-`));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let port = 0;
let redis: PrivateServer | undefined;

/** The private redis-server on `port` (set in before()); restartable with the same data dir. */
const startRedis = (): Promise<void> => (redis ??= privateRedis(port, dir, ["--maxmemory-policy", "allkeys-lru"])).start();
const stopRedis = async (): Promise<void> => redis?.stop();

/** One HTTP/JSON call without keep-alive (nothing left open at the end). */
function call(srv: RunningServer, method: string, path: string, body?: unknown): Promise<{ status: number; json: any; raw: Buffer }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
    const req = request({ host: "127.0.0.1", port: srv.httpPort, method, path, agent: false, headers: data ? { "content-length": data.length } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const raw = Buffer.concat(chunks);
        let json: any;
        try {
          json = JSON.parse(raw.toString());
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode!, json, raw });
      });
    });
    req.on("error", reject);
    req.end(data);
  });
}

const kvPath = (ns: string, key: string) => `/v1/ns/${ns}/kv/${encodeURIComponent(key)}`;

async function expectUnavailable(p: Promise<{ status: number; json: any }>, what: string): Promise<void> {
  const r = await p;
  assert.equal(r.status, 503, `${what}: ${JSON.stringify(r.json)}`);
  assert.equal(r.json.error.reason, "PRISM_ERR_BACKEND_UNAVAILABLE", what);
}

async function prism(logs: string[]): Promise<RunningServer> {
  const config = await validateConfig(
    {
      namespaces: [
        // Breaker off: this test checks the driver's own outage answers; test/e2e/breaker-redis.test.ts covers the breaker.
        { name: "outage", backend: { type: "redis", url: `redis://127.0.0.1:${port}`, key_prefix: prefix }, breaker: { failures: 0 } },
        { name: "steady", backend: { type: "redis", url: SHARED, key_prefix: prefix } },
      ],
    },
    "redis-outage.test",
  );
  return startServer({ config, host: "127.0.0.1", grpcPort: 0, httpPort: 0, grpc: false, log: (l, m) => logs.push(`${l} ${m}`) });
}

/** Polls until the namespace answers a read again (bounded). */
async function recovered(srv: RunningServer): Promise<boolean> {
  for (let i = 0; i < 300; i++) {
    const r = await call(srv, "GET", kvPath("outage", "probe"));
    if (r.status === 404 || r.status === 200) return true;
    await sleep(50);
  }
  return false;
}

describe("redis outage", { timeout: 60_000 }, () => {
  const logsA: string[] = [];
  const logsB: string[] = [];
  let a: RunningServer | undefined;
  let b: RunningServer | undefined;

  before(async () => {
    port = await freePort();
    await startRedis();
  });

  after(async () => {
    await a?.close();
    await b?.close();
    await stopRedis();
    rmSync(dir, { recursive: true, force: true });
    const r = new Redis(SHARED);
    await deleteRedisPrefix(r, prefix);
    r.disconnect();
  });

  const acked = new Map<string, string>();
  let messageId = "";
  const subErrors: Error[] = [];

  it("serves while Redis is up, and warns that maxmemory-policy is not noeviction", async () => {
    a = await prism(logsA);
    for (let i = 0; i < 20; i++) {
      const key = `k${i}`;
      const value = `value-${i}-${run}`;
      const r = await call(a, "PUT", kvPath("outage", key), Buffer.from(value));
      assert.equal(r.status, 200, JSON.stringify(r.json));
      acked.set(key, value);
    }
    const e = await call(a, "POST", "/v1/Queue/Enqueue", { namespace: "outage", queue: "jobs", payload: Buffer.from("job-1").toString("base64") });
    assert.equal(e.status, 200, JSON.stringify(e.json));
    messageId = e.json.messageId;
    for (let i = 1; i <= 3; i++) {
      const s = await call(a, "POST", "/v1/Stream/Append", { namespace: "outage", stream: "log", payload: Buffer.from(`rec-${i}`).toString("base64") });
      assert.equal(s.status, 200, JSON.stringify(s.json));
      assert.equal(Number(s.json.offset), i);
    }
    // A live subscription (driver level), to see what the outage does to it.
    await a.router.get("outage")!.stores.pubsub!.subscribe("t", { onMessage: () => {}, onError: (err) => subErrors.push(err) });
    assert.ok(logsA.some((l) => l.startsWith("warn") && l.includes("maxmemory-policy") && l.includes("allkeys-lru")), logsA.join("\n"));
  });

  it("Redis down: calls answer UNAVAILABLE, other namespaces keep serving", async () => {
    await stopRedis();
    await expectUnavailable(call(a!, "GET", kvPath("outage", "k1")), "get");
    await expectUnavailable(call(a!, "PUT", kvPath("outage", "new"), Buffer.from("x")), "set");
    await expectUnavailable(call(a!, "POST", "/v1/Queue/Dequeue", { namespace: "outage", queue: "jobs" }), "dequeue");
    await expectUnavailable(call(a!, "POST", "/v1/Stream/Read", { namespace: "outage", stream: "log" }), "read");
    for (let i = 0; i < 200 && subErrors.length === 0; i++) await sleep(10);
    assert.equal(subErrors.length, 1, "a live subscription ends with an error (messages during the outage would be lost)");
    assert.match(subErrors[0]!.message, /subscriber connection lost/);
    const put = await call(a!, "PUT", kvPath("steady", "s"), Buffer.from("ok"));
    assert.equal(put.status, 200);
    const got = await call(a!, "GET", kvPath("steady", "s"));
    assert.equal(got.raw.toString(), "ok");
    const h = await call(a!, "POST", "/v1/Admin/Health", {});
    assert.equal(h.status, 200);
    const byNs = Object.fromEntries(h.json.backends.map((x: any) => [x.namespace, x.ok]));
    assert.deepEqual(byNs, { outage: false, steady: true });
  });

  it("a Prism started while Redis is down starts and answers UNAVAILABLE", async () => {
    b = await prism(logsB);
    await expectUnavailable(call(b, "GET", kvPath("outage", "k1")), "get on a Prism started during the outage");
    const ok = await call(b, "GET", kvPath("steady", "s"));
    assert.equal(ok.status, 200);
  });

  it("Redis back: both recover without restart; every acknowledged write is there", async () => {
    await startRedis();
    assert.ok(await recovered(a!), "the Prism that saw the outage recovers");
    assert.ok(await recovered(b!), "the Prism started during the outage recovers");
    for (const srv of [a!, b!]) {
      for (const [key, value] of acked) {
        const r = await call(srv, "GET", kvPath("outage", key));
        assert.equal(r.status, 200, key);
        assert.equal(r.raw.toString(), value);
      }
      const rd = await call(srv, "POST", "/v1/Stream/Read", { namespace: "outage", stream: "log" });
      assert.deepEqual(rd.json.records.map((x: any) => Buffer.from(x.payload, "base64").toString()), ["rec-1", "rec-2", "rec-3"]);
    }
    const dq = await call(b!, "POST", "/v1/Queue/Dequeue", { namespace: "outage", queue: "jobs" });
    assert.equal(dq.status, 200);
    assert.equal(dq.json.messages.length, 1);
    assert.equal(dq.json.messages[0].messageId, messageId);
    assert.equal(Buffer.from(dq.json.messages[0].payload, "base64").toString(), "job-1");
    const got: string[] = [];
    const sink = { onMessage: (m: { payload: Uint8Array }) => got.push(Buffer.from(m.payload).toString()), onError: () => {} };
    // The subscriber connection reconnects on its own schedule: retry like a client would.
    let sub;
    for (let i = 0; i < 100 && !sub; i++) {
      sub = await a!.router.get("outage")!.stores.pubsub!.subscribe("t", sink).catch(() => undefined);
      if (!sub) await sleep(50);
    }
    assert.ok(sub, "subscribe works again after the outage");
    await call(b!, "POST", "/v1/PubSub/Publish", { namespace: "outage", topic: "t", payload: Buffer.from("hello").toString("base64") });
    for (let i = 0; i < 200 && got.length === 0; i++) await sleep(10);
    assert.deepEqual(got, ["hello"], "subscribing works again after the outage");
    await sub.close();
    const put = await call(b!, "PUT", kvPath("outage", "after"), Buffer.from("new"));
    assert.equal(put.status, 200);
    assert.equal((await call(a!, "GET", kvPath("outage", "after"))).raw.toString(), "new");
  });
});
