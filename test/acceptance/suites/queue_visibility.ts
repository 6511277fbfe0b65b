/** queue_visibility: leases expire and redeliver with a rising count; ExtendVisibility; stale and malformed receipts. */
import assert from "node:assert/strict";
import type { Suite } from "../harness.js";
import { expectCode, text } from "../util.js";

const INVALID_ARGUMENT = 3;
const FAILED_PRECONDITION = 9;

export const queue_visibility: Suite = (test) => {
  test("an unacked message is redelivered after its visibility timeout, with a rising deliveryCount", { slow: true }, async (ctx) => {
    const q = ctx.client.queue(await ctx.ns());
    const id = await q.enqueue("jobs", "payload");
    const [m1] = await q.dequeue("jobs", { visibilityTimeout: 2 });
    assert.equal(m1!.deliveryCount, 1);
    await ctx.advance(1000);
    assert.deepEqual(await q.dequeue("jobs"), [], "invisible before the timeout");
    await ctx.advance(1100);
    const [m2] = await q.dequeue("jobs", { visibilityTimeout: 2 });
    assert.ok(m2, "redelivered after the timeout");
    assert.equal(m2.messageId, id);
    assert.equal(m2.deliveryCount, 2);
    assert.notEqual(m2.receipt, m1!.receipt);
    assert.equal(text(m2.payload), "payload");
    await ctx.advance(2100);
    const [m3] = await q.dequeue("jobs", { visibilityTimeout: 2 });
    assert.ok(m3, "redelivered again");
    assert.equal(m3.deliveryCount, 3);
    await q.ack("jobs", m3.receipt);
  });

  test("the namespace's visibility timeout applies when the dequeue names none", { slow: true }, async (ctx) => {
    const q = ctx.client.queue(await ctx.ns());
    const vis = ctx.limits.visibility_timeout_seconds! * 1000;
    await q.enqueue("jobs", "x");
    const [m1] = await q.dequeue("jobs");
    await ctx.advance(vis - 1000);
    assert.deepEqual(await q.dequeue("jobs"), [], "still leased 1 s before the namespace timeout");
    await ctx.advance(1100);
    const [m2] = await q.dequeue("jobs");
    assert.equal(m2?.deliveryCount, 2, "redelivered after the namespace timeout");
    await expectCode(q.ack("jobs", m1!.receipt), FAILED_PRECONDITION, "ack with the first receipt");
  });

  test("ExtendVisibility prevents redelivery until the new deadline", { slow: true }, async (ctx) => {
    const q = ctx.client.queue(await ctx.ns());
    await q.enqueue("jobs", "long job");
    const [m1] = await q.dequeue("jobs", { visibilityTimeout: 2 });
    await ctx.advance(1500);
    await q.extendVisibility("jobs", m1!.receipt, 3);
    await ctx.advance(1500);
    assert.deepEqual(await q.dequeue("jobs"), [], "3 s after dequeue (past the original 2 s lease): still leased");
    await q.ack("jobs", m1!.receipt);
    await ctx.advance(2000);
    assert.deepEqual(await q.dequeue("jobs"), [], "acked within the extended lease: never redelivered");
  });

  test("an extended lease that runs out redelivers", { slow: true }, async (ctx) => {
    const q = ctx.client.queue(await ctx.ns());
    await q.enqueue("jobs", "x");
    const [m1] = await q.dequeue("jobs", { visibilityTimeout: 1 });
    await q.extendVisibility("jobs", m1!.receipt, 2);
    await ctx.advance(1500);
    assert.deepEqual(await q.dequeue("jobs"), [], "within the extension");
    await ctx.advance(700);
    const [m2] = await q.dequeue("jobs");
    assert.equal(m2?.deliveryCount, 2, "redelivered once the extension ran out");
  });

  test("a stale receipt (after redelivery) is refused for ack, nack and extendVisibility", { slow: true }, async (ctx) => {
    const q = ctx.client.queue(await ctx.ns());
    await q.enqueue("jobs", "x");
    const [m1] = await q.dequeue("jobs", { visibilityTimeout: 1 });
    await ctx.advance(1100);
    const [m2] = await q.dequeue("jobs", { visibilityTimeout: 30 });
    assert.ok(m2, "redelivered");
    await expectCode(q.ack("jobs", m1!.receipt), FAILED_PRECONDITION, "ack with a stale receipt");
    await expectCode(q.nack("jobs", m1!.receipt), FAILED_PRECONDITION, "nack with a stale receipt");
    await expectCode(q.extendVisibility("jobs", m1!.receipt, 5), FAILED_PRECONDITION, "extendVisibility with a stale receipt");
    assert.deepEqual(await q.dequeue("jobs"), [], "the refused nack did not release the current lease");
    await q.ack("jobs", m2.receipt);
    assert.deepEqual(await q.dequeue("jobs"), []);
  });

  test("extendVisibility: a malformed receipt → INVALID_ARGUMENT naming `receipt`; a well-formed one whose lease is over → FAILED_PRECONDITION", async (ctx) => {
    const q = ctx.client.queue(await ctx.ns());
    await q.enqueue("rc", "x");
    const [m] = await q.dequeue("rc", { visibilityTimeout: 30 });
    assert.ok(m, "dequeued");
    for (const bad of ["not-a-receipt", `${m.receipt}!`, `x${m.receipt}`]) {
      const e = await expectCode(q.extendVisibility("rc", bad, 5), INVALID_ARGUMENT, `extendVisibility with the malformed receipt ${JSON.stringify(bad)}`);
      assert.match(e.message, /receipt/, `the message names the field: ${e.message}`);
    }
    assert.deepEqual(await q.dequeue("rc"), [], "the refused calls left the lease alone");
    await q.extendVisibility("rc", m.receipt, 5);
    await q.ack("rc", m.receipt);
    await expectCode(q.extendVisibility("rc", m.receipt, 5), FAILED_PRECONDITION, "extendVisibility with the receipt of an acked message (stale)");
    assert.deepEqual(await q.dequeue("rc"), [], "acked: the refused extension brought nothing back");
  });

  test("an acked message is never redelivered", { slow: true }, async (ctx) => {
    const q = ctx.client.queue(await ctx.ns());
    await q.enqueue("jobs", "a");
    await q.enqueue("jobs", "b");
    const got = await q.dequeue("jobs", { max: 2, visibilityTimeout: 1 });
    assert.equal(got.length, 2);
    const acked = got[0]!;
    await q.ack("jobs", acked.receipt);
    await ctx.advance(1100);
    const again = await q.dequeue("jobs", { max: 10 });
    assert.deepEqual(again.map((m) => m.messageId), [got[1]!.messageId], "only the unacked one returns");
  });
};
