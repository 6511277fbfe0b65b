// The gateway's count of calls in progress (admission control's load signal and
// drain()'s list to cancel) is a list linked through the request contexts:
// calls that settle in any order leave it consistent, and drain() reaches
// every call still open.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { RequestContext } from "../../src/core/context.js";
import { METHOD_BY_PATH } from "../../src/core/methods.js";

const DEQUEUE = METHOD_BY_PATH.get("/prism.v1.Queue/Dequeue")!;
const ENQUEUE = METHOD_BY_PATH.get("/prism.v1.Queue/Enqueue")!;
const GET = METHOD_BY_PATH.get("/prism.v1.KeyValue/Get")!;

const ctxOf = (m: typeof GET) => new RequestContext(m, "internal", "test");
const tick = () => new Promise((r) => setTimeout(r, 5));

test("calls that settle out of order keep the in-progress count right, and drain() cancels the ones left", { timeout: 15_000 }, async () => {
  const config = await validateConfig({ namespaces: [{ name: "q", backend: { type: "memstore" } }] }, "inflight-test");
  const server = await startServer({ config, grpc: false, http: false, log: () => {}, accessLog: false });
  const gw = server.gateway;
  // Long polls are in progress but not load: counted apart (longPollsWaiting), not in inFlightCount.
  const inProgress = () => gw.inFlightCount + gw.longPollsWaiting;
  try {
    assert.equal(inProgress(), 0);
    // Five long polls on five queues: each ends only when its queue gets a message, or at drain.
    const polls = [0, 1, 2, 3, 4].map((i) => gw.unary(ctxOf(DEQUEUE), { namespace: "q", queue: `q${i}`, maxMessages: 1, waitSeconds: 20 }) as Promise<{ messages: unknown[] }>);
    while (inProgress() < 5) await tick();
    assert.equal(inProgress(), 5);
    assert.equal(gw.longPollsWaiting, 5);
    assert.equal(gw.inFlightCount, 0, "waiting long polls are not the shedding load");

    // A short call in between counts while it runs and leaves no trace.
    await gw.unary(ctxOf(GET), { namespace: "q", key: "k" });
    assert.equal(inProgress(), 5);

    // Release the middle, the first and the last one started (head, middle and tail of the list).
    for (const i of [2, 0, 4]) {
      await gw.unary(ctxOf(ENQUEUE), { namespace: "q", queue: `q${i}`, payload: Buffer.from(`m${i}`) });
      const got = await polls[i]!;
      assert.equal(got.messages.length, 1, `poll ${i} got its message`);
    }
    assert.equal(inProgress(), 2);

    // One context passed twice while it is in progress counts once (as a Set did).
    const twice = ctxOf(DEQUEUE);
    const a = gw.unary(twice, { namespace: "q", queue: "t", maxMessages: 1, waitSeconds: 20 });
    const b = gw.unary(twice, { namespace: "q", queue: "t", maxMessages: 1, waitSeconds: 20 });
    while (inProgress() < 3) await tick();
    assert.equal(inProgress(), 3);

    // drain() cancels every call still open: polls 1 and 3 and the doubled one answer empty.
    await gw.drain(10_000);
    for (const i of [1, 3]) assert.deepEqual((await polls[i]!).messages, []);
    await Promise.allSettled([a, b]);
    assert.equal(inProgress(), 0);
  } finally {
    await server.close();
  }
});
