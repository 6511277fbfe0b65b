/** pubsub_idempotent: Publish with an idempotency_key publishes once per key within the window. */
import assert from "node:assert/strict";
import type { Suite } from "../harness.js";
import { collect, expectCode, subscribed, text } from "../util.js";
import { FAILED_PRECONDITION, keyed, PAST_WINDOW_MS, REUSED, SHORT_WINDOW_S, untilForgotten } from "./idempotent-util.js";

export const pubsub_idempotent: Suite = (test) => {
  test("the same key twice: the same message id, delivered once", async (ctx) => {
    const ns = await ctx.ns();
    const sub = await subscribed(ctx.client.pubsub(ns).subscribe("orders.created"), "subscribe");
    try {
      const id1 = await keyed.publish(ctx, ns, "orders.created", "m1", "k1");
      const id2 = await keyed.publish(ctx, ns, "orders.created", "m1", "k1");
      assert.equal(id2, id1, "the retry answers the first call's message id");
      const ids = await Promise.all(Array.from({ length: 20 }, () => keyed.publish(ctx, ns, "orders.created", "m2", "k2")));
      assert.equal(new Set(ids).size, 1, "20 concurrent duplicates: one id");
      await ctx.client.pubsub(ns).publish("orders.created", "end"); // unkeyed: marks the end
      const got = await collect(sub, 3, "subscriber");
      assert.deepEqual(got.map((m) => text(m.payload)), ["m1", "m2", "end"], "each keyed message once, then the marker");
      assert.equal(got[0]!.messageId, id1);
    } finally {
      await sub.close();
    }
  });

  test("different keys each publish; a key is scoped to its topic", async (ctx) => {
    const ns = await ctx.ns();
    const sub = await subscribed(ctx.client.pubsub(ns).subscribe("t.a"), "subscribe t.a");
    const sub2 = await subscribed(ctx.client.pubsub(ns).subscribe("t.b"), "subscribe t.b");
    try {
      await keyed.publish(ctx, ns, "t.a", "x", "a");
      await keyed.publish(ctx, ns, "t.a", "x", "b");
      await keyed.publish(ctx, ns, "t.b", "x", "a");
      assert.equal((await collect(sub, 2, "t.a")).length, 2);
      assert.equal((await collect(sub2, 1, "t.b")).length, 1);
    } finally {
      await sub.close();
      await sub2.close();
    }
  });

  test("the same key with a different payload → FAILED_PRECONDITION", async (ctx) => {
    const ns = await ctx.ns();
    await keyed.publish(ctx, ns, "t.a", "first", "k");
    const e = await expectCode(keyed.publish(ctx, ns, "t.a", "second", "k"), FAILED_PRECONDITION, "reused key");
    assert.equal(e.reason, REUSED);
  });

  test("after the window the key is forgotten: a retry publishes again", { slow: true }, async (ctx) => {
    const ns = await ctx.ns({ limits: { idempotency_window_seconds: SHORT_WINDOW_S } });
    const id1 = await keyed.publish(ctx, ns, "t.a", "x", "k");
    await ctx.advance(PAST_WINDOW_MS);
    assert.notEqual(await untilForgotten(id1, () => keyed.publish(ctx, ns, "t.a", "x", "k")), id1, "a new message");
  });
};
