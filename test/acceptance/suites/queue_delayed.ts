/** queue_delayed: delayed enqueue and nack with requeueAfter. */
import assert from "node:assert/strict";
import type { Suite } from "../harness.js";
import { text } from "../util.js";

export const queue_delayed: Suite = (test) => {
  test("a delayed message is invisible until its delay passes", { slow: true }, async (ctx) => {
    const q = ctx.client.queue(await ctx.ns());
    const id = await q.enqueue("later", "delayed", { delaySeconds: 2 });
    assert.deepEqual(await q.dequeue("later"), [], "at once");
    await ctx.advance(1000);
    assert.deepEqual(await q.dequeue("later"), [], "after 1 s");
    await ctx.advance(1100);
    const [m] = await q.dequeue("later");
    assert.ok(m, "visible after 2.1 s");
    assert.equal(m.messageId, id);
    assert.equal(m.deliveryCount, 1);
    assert.equal(text(m.payload), "delayed");
  });

  test("a delayed message does not hold back the ones behind it", { slow: true }, async (ctx) => {
    const q = ctx.client.queue(await ctx.ns());
    await q.enqueue("mix", "late", { delaySeconds: 1 });
    await q.enqueue("mix", "now");
    const first = await q.dequeue("mix", { max: 10 });
    assert.deepEqual(first.map((m) => text(m.payload)), ["now"]);
    await ctx.advance(1100);
    const second = await q.dequeue("mix", { max: 10 });
    assert.deepEqual(second.map((m) => text(m.payload)), ["late"]);
  });

  test("nack with requeueAfter: not visible before, visible after, deliveryCount 2", { slow: true }, async (ctx) => {
    const q = ctx.client.queue(await ctx.ns());
    const id = await q.enqueue("jobs", "retry later");
    const [m1] = await q.dequeue("jobs");
    await q.nack("jobs", m1!.receipt, { requeueAfter: 2 });
    assert.deepEqual(await q.dequeue("jobs"), [], "at once");
    await ctx.advance(1000);
    assert.deepEqual(await q.dequeue("jobs"), [], "after 1 s");
    await ctx.advance(1100);
    const [m2] = await q.dequeue("jobs");
    assert.ok(m2, "visible after 2.1 s");
    assert.equal(m2.messageId, id);
    assert.equal(m2.deliveryCount, 2);
  });
};
