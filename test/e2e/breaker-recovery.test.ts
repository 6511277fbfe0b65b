/**
 * Recovery follows the backend, not the breaker's clock (issue 19). With the
 * default breaker (failures 5, probe_after_ms 30000), Redis behind a TCP proxy
 * (test/unit/tcp-proxy.ts) is cut until the circuit opens, then restored:
 * - while the circuit is open, Admin.Health reports the namespace as not
 *   serving (ok false, DEGRADED, "circuit open"), even once Redis answers again;
 * - the breaker runs the instance's own health check while open and lets a
 *   probe through as soon as it passes: calls succeed again within a few
 *   seconds of Redis returning (bound 8 s, generous; measured ~1 s), not 30 s.
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import { startServer, type RunningServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { TcpProxy } from "../unit/tcp-proxy.js";
import { errors } from "../../src/core/errors.js";
import { health } from "../../src/primitives/admin.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const prefix = `prism-brkrec-${process.pid}-${randomBytes(3).toString("hex")}`;

describe("breaker recovery follows the backend's health check", { timeout: 90_000 }, () => {
  const proxy = new TcpProxy("127.0.0.1", 6379);
  let srv: RunningServer;

  const call = async (method: string, body: object) => {
    const r = await fetch(`http://127.0.0.1:${srv.httpPort}/v1/${method}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    return { status: r.status, json: (await r.json()) as any };
  };
  const set = (key: string) => call("KeyValue/Set", { namespace: "brk", key, value: Buffer.from(key).toString("base64") });
  const healthOf = async () => {
    const h = await call("Admin/Health", {});
    return { status: h.json.status as string, entry: h.json.backends.find((b: any) => b.namespace === "brk") };
  };

  before(async () => {
    const port = await proxy.start();
    const config = await validateConfig(
      {
        server: { retry: { max_attempts: 1 } }, // server.breaker: the defaults (probe_after_ms 30000)
        namespaces: [{ name: "brk", backend: { type: "redis", url: `redis://127.0.0.1:${port}`, key_prefix: prefix } }],
      },
      "breaker-recovery.test",
    );
    srv = await startServer({ config, host: "127.0.0.1", grpc: false, httpPort: 0, log: () => {} });
  });

  after(async () => {
    await srv?.close();
    await proxy.close();
    const r = new Redis({ port: 6379, lazyConnect: true });
    await r.connect();
    const keys = await r.keys(`${prefix}*`);
    if (keys.length) await r.del(...keys);
    r.disconnect();
  });

  it("opens on an outage; Health says not serving while open", async () => {
    assert.equal((await set("before")).status, 200);
    await proxy.cut();
    let reason = "";
    for (let i = 0; i < 20 && reason !== "PRISM_ERR_CIRCUIT_OPEN"; i++) reason = (await set(`during-${i}`)).json?.error?.reason ?? "";
    assert.equal(reason, "PRISM_ERR_CIRCUIT_OPEN");
    const h = await healthOf();
    assert.equal(h.status, "DEGRADED");
    assert.equal(h.entry.ok, false);
    assert.match(h.entry.circuit, /^open/);
    assert.match(h.entry.message, /circuit open/);
    // Still down a while later: the health checks fail, the circuit stays open.
    await sleep(1500);
    assert.equal(srv.router.breakerOf("brk")!.state, "open");
    assert.ok(srv.router.breakerOf("brk")!.healthChecks > 0, "health checks ran while open");
  });

  it("calls resume within seconds of Redis returning, long before probe_after_ms (30 s)", async (t) => {
    await proxy.restore();
    const back = Date.now();
    let ok = false;
    while (!ok && Date.now() - back < 20_000) {
      ok = (await set("after")).status === 200;
      if (!ok) await sleep(50);
    }
    const took = Date.now() - back;
    t.diagnostic(`calls succeeded again ${took} ms after Redis was back (probe_after_ms 30000)`);
    assert.ok(ok, "recovered");
    assert.ok(took < 8000, `recovered after ${took} ms`);
    assert.equal(srv.router.breakerOf("brk")!.state, "closed");
    const h = await healthOf();
    assert.equal(h.entry.ok, true);
    assert.equal(h.entry.circuit, "closed");
  });
});

/**
 * Health while the circuit is open and the backend answers its health check (the "Admin.Health
 * reports the backend ok with the circuit open"): a memstore namespace, whose health check always passes,
 * has its circuit opened by five availability failures; Health, run before the breaker's first health
 * check (HEALTH_CHECK_MS, a timer: Health here settles in microtasks), reports the namespace not serving.
 * Then the breaker's health check passes and the next call closes the circuit.
 */
describe("Health reports an open circuit as not serving, even with a healthy backend", { timeout: 30_000 }, () => {
  let srv: RunningServer;
  before(async () => {
    const config = await validateConfig({ namespaces: [{ name: "mem", backend: { type: "memstore" } }] }, "breaker-recovery.test");
    srv = await startServer({ config, host: "127.0.0.1", grpc: false, httpPort: 0, log: () => {} });
  });
  after(async () => {
    await srv?.close();
  });

  it("open: ok false, DEGRADED, 'circuit open' (the backend's own check says ok); the health check then lets calls resume", async () => {
    const b = srv.router.breakerOf("mem")!;
    for (let i = 0; i < 5; i++) b.failure(errors.unavailable("test: simulated backend failure"));
    assert.equal(b.state, "open");
    const h = await health(srv.gateway);
    const entry = h.backends!.find((x) => x.namespace === "mem")!;
    assert.equal(b.state, "open", "still open when Health answered");
    assert.equal(h.status, "DEGRADED");
    assert.equal(entry.ok, false);
    assert.match(String(entry.circuit), /^open/);
    assert.match(String(entry.message), /circuit open/);
    // The breaker's health check passes (memstore is fine): a call is let through and closes the circuit.
    const end = Date.now() + 10_000;
    let status = 0;
    while (Date.now() < end) {
      const r = await fetch(`http://127.0.0.1:${srv.httpPort}/v1/ns/mem/kv/k`, { method: "PUT", body: "v" });
      await r.arrayBuffer();
      status = r.status;
      if (status === 200) break;
      await sleep(50);
    }
    assert.equal(status, 200, "calls resumed");
    assert.equal(b.state, "closed");
    const after = (await health(srv.gateway)).backends!.find((x) => x.namespace === "mem")!;
    assert.equal(after.ok, true);
    assert.equal(after.circuit, "closed");
  });
});
