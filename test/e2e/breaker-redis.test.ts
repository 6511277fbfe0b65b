/**
 * Circuit breaker against a real backend loss. A PRIVATE redis-server (own
 * port, AOF appendfsync always, own dir) backs namespace `brk`; the shared
 * Redis is never touched. Prism runs in-process (so the test can read the
 * breaker's counters) with `breaker: { failures: 5, probe_after_ms: 1000 }`.
 *
 * Asserted:
 * - writes acknowledged before, during (none succeed) and after the outage are
 *   all readable at the end: no acknowledged write is lost;
 * - with Redis stopped, the breaker opens within 5 failed calls: every call
 *   after the 5th failure answers 503 PRISM_ERR_CIRCUIT_OPEN (with
 *   Retry-After), never reaching the driver; Admin Health shows the circuit open;
 * - the driver is not called while open: Redis is restarted, a PUT made while
 *   the circuit is still open is refused with CIRCUIT_OPEN and the key is
 *   absent from Redis afterwards;
 * - once Redis is back, calls succeed again within the probe interval (plus
 *   the reconnect time) and the circuit reports closed.
 * Fail-fast latency is printed as a diagnostic, not asserted (no timing asserts).
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

const run = randomBytes(3).toString("hex");
const prefix = `prism-breaker-${process.pid}-${run}`;
const dir = mkdtempSync(join(tmpdir(), `prism-breaker-${run}-`));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const PROBE_MS = 1000;

let port = 0;
let redis: PrivateServer | undefined;

/** The private redis-server on `port` (set in before()); restartable with the same data dir. */
const startRedis = (): Promise<void> => (redis ??= privateRedis(port, dir)).start();
const stopRedis = async (): Promise<void> => redis?.stop();

interface Res {
  status: number;
  json: any;
  raw: Buffer;
  headers: Record<string, string | string[] | undefined>;
}

function call(srv: RunningServer, method: string, path: string, body?: Buffer | object): Promise<Res> {
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
        } catch {}
        resolve({ status: res.statusCode!, json, raw, headers: res.headers });
      });
    });
    req.on("error", reject);
    req.end(data);
  });
}

const kv = (key: string) => `/v1/ns/brk/kv/${encodeURIComponent(key)}`;

describe("circuit breaker on a Redis outage", { timeout: 90_000 }, () => {
  let srv: RunningServer | undefined;
  const acked = new Map<string, string>();
  let openedAfter = -1;

  before(async () => {
    port = await freePort();
    await startRedis();
    const config = await validateConfig(
      {
        server: { retry: { max_attempts: 1 } }, // count exactly one driver call per request
        namespaces: [{ name: "brk", backend: { type: "redis", url: `redis://127.0.0.1:${port}`, key_prefix: prefix }, breaker: { failures: 5, probe_after_ms: PROBE_MS } }],
      },
      "breaker-redis.test",
    );
    srv = await startServer({ config, host: "127.0.0.1", grpcPort: 0, httpPort: 0, grpc: false, log: () => {} });
  });

  after(async () => {
    await srv?.close();
    await stopRedis();
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves and acknowledges writes while Redis is up", async () => {
    for (let i = 0; i < 20; i++) {
      const r = await call(srv!, "PUT", kv(`before-${i}`), Buffer.from(`v${i}`));
      assert.equal(r.status, 200, JSON.stringify(r.json));
      acked.set(`before-${i}`, `v${i}`);
    }
    assert.equal(srv!.router.breakerOf("brk")!.state, "closed");
  });

  it("Redis stopped: the breaker opens within 5 failures, then calls fail fast without reaching the driver", async (t) => {
    await stopRedis();
    const reasons: string[] = [];
    for (let i = 0; i < 12; i++) {
      const r = await call(srv!, "PUT", kv(`during-${i}`), Buffer.from("x"));
      if (r.status === 200) acked.set(`during-${i}`, "x"); // cannot happen with Redis down, but would have to survive
      reasons.push(r.json?.error?.reason ?? String(r.status));
      if (r.json?.error?.reason === "PRISM_ERR_CIRCUIT_OPEN") {
        assert.equal(r.status, 503);
        assert.ok(Number(r.headers["retry-after"]) >= 1, "Retry-After on an open circuit");
      }
    }
    openedAfter = reasons.indexOf("PRISM_ERR_CIRCUIT_OPEN");
    assert.ok(openedAfter >= 1 && openedAfter <= 5, `opened after ${openedAfter} failures: ${reasons.join(",")}`);
    assert.ok(reasons.slice(openedAfter).every((r) => r === "PRISM_ERR_CIRCUIT_OPEN"), reasons.join(","));
    assert.ok(reasons.slice(0, openedAfter).every((r) => r === "PRISM_ERR_BACKEND_UNAVAILABLE"), reasons.join(","));
    const b = srv!.router.breakerOf("brk")!;
    assert.equal(b.rejected, 12 - openedAfter, "refused calls never reached the driver");
    // Fail-fast latency, for the report (not asserted).
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) await call(srv!, "GET", kv("before-1"));
    t.diagnostic(`open circuit: ${((performance.now() - t0) / 20).toFixed(2)} ms per HTTP call (incl. a new TCP connection)`);
    const h = await call(srv!, "POST", "/v1/Admin/Health", {});
    const entry = h.json.backends.find((x: any) => x.namespace === "brk");
    assert.match(entry.circuit, /^open/);
    assert.equal(entry.ok, false);
  });

  it("while still open, a write is refused and never reaches Redis (even though Redis is back)", async () => {
    await startRedis();
    const b = srv!.router.breakerOf("brk")!;
    const r = await call(srv!, "PUT", kv("refused-while-open"), Buffer.from("nope"));
    if (r.json?.error?.reason !== "PRISM_ERR_CIRCUIT_OPEN") {
      // The probe interval already passed (slow machine): the call was the probe. Nothing to check here.
      assert.ok(b.state !== "open");
      if (r.status === 200) acked.set("refused-while-open", "nope");
      return;
    }
    const direct = new Redis(`redis://127.0.0.1:${port}`, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await direct.connect();
    const keys = await direct.keys(`${prefix}*refused-while-open*`);
    direct.disconnect();
    assert.deepEqual(keys, [], "the refused write did not reach Redis");
  });

  it("Redis back: Prism recovers within the probe interval (plus reconnect), no acknowledged write is lost", async (t) => {
    const b = srv!.router.breakerOf("brk")!;
    const start = Date.now();
    let ok = false;
    for (let i = 0; i < 200 && !ok; i++) {
      const r = await call(srv!, "PUT", kv("after"), Buffer.from("a"));
      if (r.status === 200) {
        ok = true;
        acked.set("after", "a");
      } else await sleep(25);
    }
    assert.ok(ok, "recovered (bounded poll)");
    // Expected: within the probe interval plus ioredis' reconnect backoff; reported, not asserted (no timing asserts).
    t.diagnostic(`recovered ${Date.now() - start} ms after Redis was back (probe interval ${PROBE_MS} ms)`);
    assert.equal(b.state, "closed");
    for (const [key, value] of acked) {
      const r = await call(srv!, "GET", kv(key));
      assert.equal(r.status, 200, key);
      assert.equal(r.raw.toString(), value, key);
    }
    const h = await call(srv!, "POST", "/v1/Admin/Health", {});
    assert.equal(h.json.backends.find((x: any) => x.namespace === "brk").circuit, "closed");
  });
});
