/**
 * The SDK's WebSocket transport keeps one deadline sweep per connection (issue
 * 19): with timeoutMs set, every call made after the in-flight count had dropped
 * to zero used to start a new 50 ms sweep interval without stopping the last
 * (20,000 sequential Gets left 20,000 live intervals after close(), and the
 * client slowed to a crawl). The sweeps are unref'd, so to count them in
 * process.getActiveResourcesInfo() the test makes setInterval's timers ignore
 * unref() while the SDK runs.
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect } from "@prism/client";
import { startServer, type RunningServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";

const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;

describe("SDK: no timer leak with timeoutMs", { timeout: 60_000 }, () => {
  let srv: RunningServer;
  const realSetInterval = globalThis.setInterval;

  before(async () => {
    srv = await startServer({ config: await validateConfig({ namespaces: [{ name: "default", backend: { type: "memstore" } }] }, "t"), host: "127.0.0.1", grpc: false, httpPort: 0, log: () => {} });
  });
  after(async () => {
    globalThis.setInterval = realSetInterval;
    await srv.close();
  });

  it("2000 sequential Gets leave no interval behind, during or after close()", async () => {
    await new Promise((r) => setTimeout(r, 100));
    const before = timers();
    // Intervals created from here on stay counted even when the SDK unrefs them.
    globalThis.setInterval = ((...args: Parameters<typeof setInterval>) => {
      const t = realSetInterval(...args);
      t.unref = () => t;
      return t;
    }) as typeof setInterval;
    const c = await connect(`ws://127.0.0.1:${srv.httpPort}`, { timeoutMs: 5000 });
    const kv = c.kv("default");
    await kv.set("k", "v");
    let peak = 0;
    for (let i = 0; i < 2000; i++) {
      await kv.get("k");
      if (i % 100 === 0) peak = Math.max(peak, timers() - before);
    }
    await c.close();
    globalThis.setInterval = realSetInterval;
    await new Promise((r) => setTimeout(r, 200));
    const left = timers() - before;
    assert.ok(peak <= 3, `at most a few timers while running, saw ${peak} more than before`);
    assert.ok(left <= 1, `${left} timers left after close()`);
  });
});
