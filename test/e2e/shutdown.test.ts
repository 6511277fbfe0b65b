// Graceful shutdown: new calls are refused with UNAVAILABLE, calls in progress
// answer, long polls end early without leasing anything, and nothing the
// gateway did not deliver is acked or lost.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { connect, Code, PrismError } from "@prism/client";
import { startServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { ManualClock } from "../../src/core/clock.js";
import { RequestContext } from "../../src/core/context.js";
import { METHOD_BY_PATH } from "../../src/core/methods.js";

async function config(file: string) {
  return validateConfig({ server: { data_dir: dirname(file) }, namespaces: [{ name: "jobs", backend: { type: "sqlite", path: basename(file) } }] }, "shutdown-test");
}

// The poll waits up to 20 s: only the drain can end it (empty) within the 15 s timeout.
test("close() ends a long poll with no messages, leases nothing, and the message survives the restart", { timeout: 15_000 }, async () => {
  const file = join(mkdtempSync(join(tmpdir(), "prism-shutdown-")), "q.sqlite");
  const clock = new ManualClock();
  const opts = { config: await config(file), clock, host: "127.0.0.1", grpcPort: 0, httpPort: 0, log: () => {} };
  let server = await startServer(opts);
  let prism = await connect(`ws://127.0.0.1:${server.httpPort}`);
  const q = prism.queue("jobs");
  await q.enqueue("work", "later", { delaySeconds: 60 });
  const poll = q.dequeue("work", { wait: 20 });
  while (server.gateway.longPollsWaiting === 0) await new Promise((r) => setTimeout(r, 5)); // long polls: counted apart from the in-flight load

  const closing = server.close();
  assert.deepEqual(await poll, [], "the long poll answers (empty) instead of failing or hanging");
  await closing;
  await prism.close();

  server = await startServer(opts);
  prism = await connect(`ws://127.0.0.1:${server.httpPort}`);
  clock.advance(61_000);
  const [m] = await prism.queue("jobs").dequeue("work");
  assert.ok(m, "the delayed message is still there");
  assert.equal(new TextDecoder().decode(m.payload), "later");
  assert.equal(m.deliveryCount, 1, "it was never leased during shutdown");
  await prism.queue("jobs").ack("work", m.receipt);
  await prism.close();
  await server.close();
});

// The long poll waits up to 20 s and the grace is 60 s: only the drain's cancel can end it
// within this test's 15 s timeout.
test("while draining, new calls get UNAVAILABLE (shutting down) and calls in progress still answer", { timeout: 15_000 }, async () => {
  const file = join(mkdtempSync(join(tmpdir(), "prism-shutdown-")), "q.sqlite");
  const server = await startServer({ config: await config(file), host: "127.0.0.1", grpcPort: 0, httpPort: 0, log: () => {} });
  const prism = await connect(`ws://127.0.0.1:${server.httpPort}`);
  try {
    const poll = prism.queue("jobs").dequeue("work", { wait: 20 });
    while (server.gateway.longPollsWaiting === 0) await new Promise((r) => setTimeout(r, 5)); // long polls: counted apart from the in-flight load
    const draining = server.gateway.drain(60_000);

    const ctx = new RequestContext(METHOD_BY_PATH.get("/prism.v1.KeyValue/Get")!, "internal", "test");
    await assert.rejects(server.gateway.unary(ctx, { namespace: "jobs", key: "k" }), (e: unknown) => {
      assert.equal((e as PrismError).code, Code.UNAVAILABLE);
      assert.equal((e as PrismError).reason, "PRISM_ERR_SHUTTING_DOWN");
      return true;
    });
    assert.deepEqual(await poll, []);
    await draining;
    assert.equal(server.gateway.inFlightCount + server.gateway.longPollsWaiting, 0);
  } finally {
    await prism.close();
    await server.close();
  }
});
