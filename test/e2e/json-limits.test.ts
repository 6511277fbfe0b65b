/**
 * A JSON body's parse cost is bounded before parsing (issue 19): a 5.6 MB body
 * with 500,000 keys used to block the event loop for about a second (JSON.parse
 * of a dictionary-mode object, then the converters) before being refused. Now a
 * byte scan counts keys and nesting first: such bodies get 413 (too many keys)
 * or 400 (too deep) at once. Asserted: the refusals, the event loop's largest
 * delay while four such bodies are refused in a loop (bound 250 ms, generous:
 * measured ~20 ms; before: ~1 s per body), and /healthz meanwhile.
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { startServer, type RunningServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";

describe("JSON bodies: keys and depth bounded before parsing", { timeout: 60_000 }, () => {
  let srv: RunningServer;
  const post = async (body: string) => {
    const r = await fetch(`http://127.0.0.1:${srv.httpPort}/v1/KeyValue/Get`, { method: "POST", headers: { "content-type": "application/json" }, body });
    return { status: r.status, json: (await r.json()) as any };
  };

  before(async () => {
    srv = await startServer({ config: await validateConfig({ namespaces: [{ name: "default", backend: { type: "memstore" } }] }, "t"), host: "127.0.0.1", grpc: false, httpPort: 0, log: () => {} });
  });
  after(() => srv.close());

  it("500,000 keys: 413 without blocking the event loop; /healthz keeps answering", async (t) => {
    const parts = ['{"namespace":"default","key":"x"'];
    for (let i = 0; i < 500_000; i++) parts.push(`,"k${i}":1`);
    const big = parts.join("") + "}";
    assert.ok(big.length > 5_000_000);
    const h = monitorEventLoopDelay({ resolution: 10 });
    h.enable();
    const health: number[] = [];
    let attacking = true;
    const probe = (async () => {
      while (attacking) {
        const t0 = performance.now();
        await (await fetch(`http://127.0.0.1:${srv.httpPort}/healthz`)).arrayBuffer();
        health.push(performance.now() - t0);
      }
    })();
    for (let i = 0; i < 4; i++) {
      const r = await post(big);
      assert.equal(r.status, 413);
      assert.equal(r.json.error.reason, "PRISM_ERR_JSON_TOO_COMPLEX");
      assert.match(r.json.error.message, /more than 20000 object keys/);
    }
    attacking = false;
    await probe;
    h.disable();
    const maxMs = h.max / 1e6;
    health.sort((a, b) => a - b);
    t.diagnostic(`event-loop delay max ${maxMs.toFixed(1)} ms; /healthz median ${health[Math.floor(health.length / 2)]?.toFixed(1)} ms over ${health.length}`);
    // The client side (building and sending 5.6 MB) shares this loop: the bound is generous.
    assert.ok(maxMs < 250, `event loop blocked ${maxMs.toFixed(0)} ms`);
  });

  it("deep nesting is 400; ordinary bodies (a 1000-entry BatchSet) are served", async () => {
    const deep = await post(`{"namespace":"default","key":"x","a":${"[".repeat(100)}${"]".repeat(100)}}`);
    assert.equal(deep.status, 400);
    assert.match(deep.json.error.message, /nests deeper than 64/);
    const entries = Array.from({ length: 1000 }, (_, i) => ({ key: `b${i}`, value: Buffer.from("v").toString("base64") }));
    const r = await fetch(`http://127.0.0.1:${srv.httpPort}/v1/KeyValue/BatchSet`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ namespace: "default", entries }) });
    assert.equal(r.status, 200, await r.text());
    // Keys inside strings do not count: a value full of ':' and '{' is fine.
    const tricky = await post(JSON.stringify({ namespace: "default", key: ":{[".repeat(300) }));
    assert.equal(tricky.status, 200);
  });
});
