/** queue_dead_letter: after max_deliveries, a message moves to `<queue>.dlq` with its payload; never lost. */
import assert from "node:assert/strict";
import type { Suite } from "../harness.js";
import { assertBytes, expectCode, text } from "../util.js";
import { drain } from "./queue_basic.js";

const FAILED_PRECONDITION = 9;

export const queue_dead_letter: Suite = (test) => {
  test("nacked max_deliveries times, the message moves to <queue>.dlq with payload and attributes", async (ctx) => {
    const q = ctx.client.queue(await ctx.ns());
    const max = ctx.limits.max_deliveries!;
    const payload = new Uint8Array([0, 1, 2, 0, 3]);
    const id = await q.enqueue("orders", payload, { attributes: { k: "v" } });
    let last = "";
    for (let n = 1; n <= max; n++) {
      const [m] = await q.dequeue("orders");
      assert.ok(m, `delivery ${n}`);
      assert.equal(m.deliveryCount, n);
      last = m.receipt;
      await q.nack("orders", m.receipt);
    }
    assert.deepEqual(await q.dequeue("orders"), [], `not delivered a ${max + 1}th time`);
    const dlq = await q.dequeue("orders.dlq");
    assert.equal(dlq.length, 1, "on the dead-letter queue");
    assertBytes(dlq[0]!.payload, payload, "dead-lettered payload");
    assert.equal(dlq[0]!.attributes.k, "v", "dead-lettered attributes");
    await expectCode(q.ack("orders", last), FAILED_PRECONDITION, "the last receipt after dead-lettering");
    await q.ack("orders.dlq", dlq[0]!.receipt);
    assert.deepEqual(await q.dequeue("orders.dlq"), [], "acked on the DLQ");
    assert.ok(id);
  });

  test("a dead-letter queue is terminal: its messages are redelivered, never moved to <queue>.dlq.dlq", async (ctx) => {
    const q = ctx.client.queue(await ctx.ns());
    const max = ctx.limits.max_deliveries!;
    await q.enqueue("orders.dlq", "parked");
    for (let n = 1; n <= max + 1; n++) {
      const [m] = await q.dequeue("orders.dlq");
      assert.ok(m, `delivery ${n} from the DLQ`);
      assert.equal(m.deliveryCount, n);
      assert.equal(text(m.payload), "parked");
      if (n <= max) await q.nack("orders.dlq", m.receipt);
      else await q.ack("orders.dlq", m.receipt);
    }
    assert.deepEqual(await q.dequeue("orders.dlq.dlq"), [], "nothing was moved further");
  });

  test("visibility timeouts count as deliveries: expired max_deliveries times → DLQ", { slow: true }, async (ctx) => {
    const q = ctx.client.queue(await ctx.ns());
    const max = ctx.limits.max_deliveries!;
    const useVis = ctx.claims.has("queue_visibility");
    const leaseMs = (useVis ? 1 : ctx.limits.visibility_timeout_seconds!) * 1000;
    await q.enqueue("jobs", "timeout victim");
    for (let n = 1; n <= max; n++) {
      const [m] = await q.dequeue("jobs", useVis ? { visibilityTimeout: 1 } : {});
      assert.equal(m?.deliveryCount, n, `delivery ${n}`);
      await ctx.advance(leaseMs + 100);
    }
    assert.deepEqual(await q.dequeue("jobs"), [], "not delivered again");
    const dlq = await q.dequeue("jobs.dlq");
    assert.equal(dlq.map((m) => text(m.payload)).join(), "timeout victim");
  });

  test("never lost: every message ends up acked or on the DLQ, once", async (ctx) => {
    const q = ctx.client.queue(await ctx.ns());
    const max = ctx.limits.max_deliveries!;
    const ids = [];
    for (let i = 0; i < 6; i++) ids.push(await q.enqueue("mixed", `m${i}`));
    const acked: string[] = [];
    // Ack even-numbered payloads on their 2nd delivery; nack everything else.
    for (let round = 0; round < max + 2; round++) {
      const got = await q.dequeue("mixed", { max: 10 });
      for (const m of got) {
        const even = Number(text(m.payload)!.slice(1)) % 2 === 0;
        if (even && m.deliveryCount === 2) {
          await q.ack("mixed", m.receipt);
          acked.push(m.messageId);
        } else await q.nack("mixed", m.receipt);
      }
    }
    assert.deepEqual(await q.dequeue("mixed"), [], "nothing left on the queue");
    const dead = (await drain(q, "mixed.dlq")).map((m) => m.messageId);
    assert.equal(new Set(dead).size, dead.length, "no duplicates on the DLQ");
    assert.deepEqual([...acked, ...dead].sort(), [...ids].sort(), "acked + dead-lettered = all, once");
    assert.equal(dead.length, 3);
  });
};
