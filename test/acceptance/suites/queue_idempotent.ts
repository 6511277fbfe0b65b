/** queue_idempotent: Enqueue with an idempotency_key enqueues once per key within the window. */
import assert from "node:assert/strict";
import type { Suite, SuiteContext } from "../harness.js";
import { expectCode, text } from "../util.js";
import { FAILED_PRECONDITION, keyed, PAST_WINDOW_MS, REUSED, SHORT_WINDOW_S, untilForgotten } from "./idempotent-util.js";

/** Every message now visible on the queue (acked, so the queue is empty after). */
async function drain(ctx: SuiteContext, ns: string, queue: string): Promise<string[]> {
  const q = ctx.client.queue(ns);
  const out: string[] = [];
  for (;;) {
    const batch = await q.dequeue(queue, { max: 10 });
    if (!batch.length) return out;
    for (const m of batch) {
      out.push(text(m.payload)!);
      await q.ack(queue, m.receipt);
    }
  }
}

export const queue_idempotent: Suite = (test) => {
  test("the same key twice: the same message id, one message", async (ctx) => {
    const ns = await ctx.ns();
    const id1 = await keyed.enqueue(ctx, ns, "jobs", "job-1", "k1");
    const id2 = await keyed.enqueue(ctx, ns, "jobs", "job-1", "k1");
    assert.ok(id1, "a message id");
    assert.equal(id2, id1, "the retry answers the first call's message id");
    assert.deepEqual(await drain(ctx, ns, "jobs"), ["job-1"], "one message");
    assert.equal(await keyed.enqueue(ctx, ns, "jobs", "job-1", "k1"), id1, "still the same after the message was acked");
    assert.deepEqual(await drain(ctx, ns, "jobs"), [], "and still no second message");
  });

  test("the dequeued message carries the id the keyed enqueue answered", async (ctx) => {
    const ns = await ctx.ns();
    const id = await keyed.enqueue(ctx, ns, "jobs", "p", "k");
    const [m] = await ctx.client.queue(ns).dequeue("jobs");
    assert.ok(m, "a message");
    assert.equal(m.messageId, id);
    assert.equal(text(m.payload), "p");
  });

  test("20 concurrent calls with one key: one message, one id", async (ctx) => {
    const ns = await ctx.ns();
    const ids = await Promise.all(Array.from({ length: 20 }, () => keyed.enqueue(ctx, ns, "jobs", "payload", "dup")));
    assert.equal(new Set(ids).size, 1, `one id for all, got ${new Set(ids).size}`);
    assert.deepEqual(await drain(ctx, ns, "jobs"), ["payload"]);
  });

  test("different keys, and calls without a key, each enqueue", async (ctx) => {
    const ns = await ctx.ns();
    const a = await keyed.enqueue(ctx, ns, "jobs", "same", "a");
    const b = await keyed.enqueue(ctx, ns, "jobs", "same", "b");
    await ctx.client.queue(ns).enqueue("jobs", "same");
    await ctx.client.queue(ns).enqueue("jobs", "same");
    assert.notEqual(a, b);
    assert.equal((await drain(ctx, ns, "jobs")).length, 4);
  });

  test("a key is scoped to its queue and namespace", async (ctx) => {
    const ns1 = await ctx.ns();
    const ns2 = await ctx.ns();
    await keyed.enqueue(ctx, ns1, "q1", "x", "k");
    await keyed.enqueue(ctx, ns1, "q2", "x", "k");
    await keyed.enqueue(ctx, ns2, "q1", "x", "k");
    assert.deepEqual(await drain(ctx, ns1, "q1"), ["x"]);
    assert.deepEqual(await drain(ctx, ns1, "q2"), ["x"]);
    assert.deepEqual(await drain(ctx, ns2, "q1"), ["x"]);
  });

  test("the same key with a different payload or delay → FAILED_PRECONDITION, nothing enqueued", async (ctx) => {
    const ns = await ctx.ns();
    await keyed.enqueue(ctx, ns, "jobs", "first", "k");
    const e = await expectCode(keyed.enqueue(ctx, ns, "jobs", "second", "k"), FAILED_PRECONDITION, "reused key, other payload");
    assert.equal(e.reason, REUSED);
    assert.match(e.message, /idempotency_key/);
    if (ctx.claims.has("queue_delayed")) {
      await expectCode(keyed.enqueue(ctx, ns, "jobs", "first", "k", { delaySeconds: 5 }), FAILED_PRECONDITION, "reused key, other delay");
    }
    assert.deepEqual(await drain(ctx, ns, "jobs"), ["first"]);
  });

  test("an idempotency key over 255 bytes → INVALID_ARGUMENT", async (ctx) => {
    const ns = await ctx.ns();
    await expectCode(keyed.enqueue(ctx, ns, "jobs", "x", "k".repeat(256)), 3, "256-byte key");
    assert.deepEqual(await drain(ctx, ns, "jobs"), []);
  });

  test("after the window the key is forgotten: a retry enqueues again", { slow: true }, async (ctx) => {
    const ns = await ctx.ns({ limits: { idempotency_window_seconds: SHORT_WINDOW_S } });
    const id1 = await keyed.enqueue(ctx, ns, "jobs", "x", "k");
    await ctx.advance(PAST_WINDOW_MS);
    const id2 = await untilForgotten(id1, () => keyed.enqueue(ctx, ns, "jobs", "x", "k"));
    assert.notEqual(id2, id1, "a new message");
    assert.deepEqual(await drain(ctx, ns, "jobs"), ["x", "x"]);
    assert.equal(await keyed.enqueue(ctx, ns, "jobs", "x", "k"), id2, "the new call's record answers now");
  });
};
