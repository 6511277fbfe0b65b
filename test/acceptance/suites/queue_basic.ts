/** queue_basic: enqueue, dequeue, ack, nack; one consumer per message; long poll; stale receipts refused. */
import assert from "node:assert/strict";
import type { Suite } from "../harness.js";
import type { QueueClient, QueueMessage } from "../sdk.js";
import { assertBytes, expectCode, sleep, text, within } from "../util.js";

const FAILED_PRECONDITION = 9;
const INVALID_ARGUMENT = 3;

/** Dequeues until the queue answers empty (bounded). */
export async function drain(q: QueueClient, queue: string, max = 10): Promise<QueueMessage[]> {
  const out: QueueMessage[] = [];
  for (let i = 0; i < 100; i++) {
    const got = await q.dequeue(queue, { max });
    if (!got.length) return out;
    out.push(...got);
  }
  assert.fail(`${queue} did not drain`);
}

export const queue_basic: Suite = (test) => {
  test("enqueue, dequeue and ack: payload, attributes, id, receipt, deliveryCount 1", async (ctx) => {
    const q = ctx.client.queue(await ctx.ns());
    const bin = new Uint8Array([0, 9, 0, 255]);
    const id = await q.enqueue("jobs", bin, { attributes: { trace: "t-1", "ключ": "✓" } });
    assert.ok(id, "enqueue returns a message id");
    const got = await q.dequeue("jobs");
    assert.equal(got.length, 1);
    const m = got[0]!;
    assert.equal(m.messageId, id);
    assertBytes(m.payload, bin, "payload");
    assert.deepEqual({ ...m.attributes }, { trace: "t-1", "ключ": "✓" });
    assert.ok(m.receipt, "a receipt");
    assert.equal(m.deliveryCount, 1);
    assert.ok(m.enqueuedAtMs > 0, `enqueuedAtMs > 0, got ${m.enqueuedAtMs}`);
    assert.deepEqual(await q.dequeue("jobs"), [], "leased: not visible to another dequeue");
    await q.ack("jobs", m.receipt);
    assert.deepEqual(await q.dequeue("jobs"), [], "acked: gone");
  });

  test("dequeue max returns up to max; an empty queue answers []", async (ctx) => {
    const q = ctx.client.queue(await ctx.ns());
    assert.deepEqual(await q.dequeue("empty"), []);
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push(await q.enqueue("jobs", `m${i}`));
    const first = await q.dequeue("jobs", { max: 3 });
    assert.equal(first.length, 3);
    const rest = await q.dequeue("jobs", { max: 10 });
    assert.equal(rest.length, 2);
    assert.deepEqual([...first, ...rest].map((m) => m.messageId).sort(), [...ids].sort());
  });

  test("one consumer only: concurrent dequeues never get the same message", async (ctx) => {
    const q = ctx.client.queue(await ctx.ns());
    const n = 30;
    const ids = await Promise.all(Array.from({ length: n }, (_, i) => q.enqueue("work", `m${i}`)));
    assert.equal(new Set(ids).size, n, "distinct message ids");
    const batches = await Promise.all(Array.from({ length: 12 }, () => q.dequeue("work", { max: 3 })));
    const got = batches.flat();
    const seen = got.map((m) => m.messageId);
    assert.equal(new Set(seen).size, seen.length, `a message was delivered twice: ${seen.filter((x, i) => seen.indexOf(x) !== i).join(", ")}`);
    const rest = await drain(q, "work");
    const all = [...seen, ...rest.map((m) => m.messageId)];
    assert.equal(new Set(all).size, all.length, "no duplicates after draining");
    assert.deepEqual(all.sort(), [...ids].sort(), "every message delivered exactly once");
    await Promise.all([...got, ...rest].map((m) => q.ack("work", m.receipt)));
  });

  test("nack makes the message visible again at once, with a new receipt and deliveryCount 2", async (ctx) => {
    const q = ctx.client.queue(await ctx.ns());
    const id = await q.enqueue("jobs", "retry me");
    const [m1] = await q.dequeue("jobs");
    await q.nack("jobs", m1!.receipt);
    const [m2] = await q.dequeue("jobs");
    assert.ok(m2, "redelivered after nack");
    assert.equal(m2.messageId, id);
    assert.equal(m2.deliveryCount, 2);
    assert.notEqual(m2.receipt, m1!.receipt, "a new receipt");
    assert.equal(text(m2.payload), "retry me");
    await expectCode(q.ack("jobs", m1!.receipt), FAILED_PRECONDITION, "ack with the receipt of the nacked delivery");
    await q.ack("jobs", m2.receipt);
  });

  test("a receipt is refused once acked: ack twice and nack after ack → FAILED_PRECONDITION", async (ctx) => {
    const q = ctx.client.queue(await ctx.ns());
    await q.enqueue("jobs", "x");
    const [m] = await q.dequeue("jobs");
    await q.ack("jobs", m!.receipt);
    await expectCode(q.ack("jobs", m!.receipt), FAILED_PRECONDITION, "second ack");
    await expectCode(q.nack("jobs", m!.receipt), FAILED_PRECONDITION, "nack after ack");
    assert.deepEqual(await q.dequeue("jobs"), [], "the refused nack did not requeue");
  });

  test("a receipt from another queue, or a made-up one, is refused", async (ctx) => {
    const q = ctx.client.queue(await ctx.ns());
    await q.enqueue("a", "x");
    const [m] = await q.dequeue("a");
    await expectCode(q.ack("b", m!.receipt), [FAILED_PRECONDITION, 3], "ack on the wrong queue");
    await expectCode(q.ack("a", "not-a-receipt"), [FAILED_PRECONDITION, 3], "ack with a made-up receipt");
    await q.ack("a", m!.receipt);
  });

  test("a malformed receipt → INVALID_ARGUMENT naming `receipt`; a well-formed one whose lease is over → FAILED_PRECONDITION", async (ctx) => {
    const q = ctx.client.queue(await ctx.ns());
    await q.enqueue("rc", "x");
    const [m] = await q.dequeue("rc");
    for (const bad of ["not-a-receipt", `${m!.receipt}!`, `x${m!.receipt}`]) {
      const e = await expectCode(q.ack("rc", bad), INVALID_ARGUMENT, `ack with the malformed receipt ${JSON.stringify(bad)}`);
      assert.match(e.message, /receipt/, `the message names the field: ${e.message}`);
      await expectCode(q.nack("rc", bad), INVALID_ARGUMENT, `nack with the malformed receipt ${JSON.stringify(bad)}`);
    }
    await q.ack("rc", m!.receipt); // the refused calls left the lease alone
    await expectCode(q.ack("rc", m!.receipt), FAILED_PRECONDITION, "ack with the receipt of an acked message (stale)");
    await expectCode(q.nack("rc", m!.receipt), FAILED_PRECONDITION, "nack with the receipt of an acked message (stale)");
  });

  test("long poll: a dequeue waiting on an empty queue receives a message enqueued meanwhile", async (ctx) => {
    const q = ctx.client.queue(await ctx.ns());
    const waiting = q.dequeue("lp", { wait: 10 });
    await sleep(100); // real time: let the poll reach the backend
    const id = await q.enqueue("lp", "arrived");
    const got = await within(waiting, 5000, "long-poll dequeue");
    assert.equal(got.length, 1, "the waiting dequeue got the message");
    assert.equal(got[0]!.messageId, id);
    assert.equal(text(got[0]!.payload), "arrived");
    await q.ack("lp", got[0]!.receipt);
  });

  test("queues are isolated by name and by namespace", async (ctx) => {
    const ns1 = await ctx.ns();
    const ns2 = await ctx.ns({ name: `${ns1}x` });
    const q1 = ctx.client.queue(ns1);
    const q2 = ctx.client.queue(ns2);
    await q1.enqueue("jobs", "ns1");
    assert.deepEqual(await q1.dequeue("jobs2"), [], "another queue name");
    assert.deepEqual(await q2.dequeue("jobs"), [], "another namespace");
    const [m] = await q1.dequeue("jobs");
    assert.equal(text(m!.payload), "ns1");
  });
};
