/** stream_consumer_groups: shared consumption without duplicates, redelivery after the claim timeout, ack. */
import assert from "node:assert/strict";
import type { Suite } from "../harness.js";
import { sleep, text, within } from "../util.js";

export const stream_consumer_groups: Suite = (test) => {
  test("two consumers of a group share the records without duplication", async (ctx) => {
    const s = ctx.client.stream(await ctx.ns());
    const offsets = [];
    for (let i = 0; i < 10; i++) offsets.push(await s.append("orders", `o${i}`));
    const a1 = await s.readGroup("orders", "billing", "c1", { count: 4 });
    const b1 = await s.readGroup("orders", "billing", "c2", { count: 4 });
    const a2 = await s.readGroup("orders", "billing", "c1", { count: 10 });
    const b2 = await s.readGroup("orders", "billing", "c2", { count: 10 });
    assert.equal(a1.length, 4);
    assert.equal(b1.length, 4);
    const all = [...a1, ...b1, ...a2, ...b2];
    const seen = all.map((r) => r.offset);
    assert.equal(new Set(seen).size, seen.length, `a record went to two consumers: ${seen.join(", ")}`);
    assert.deepEqual([...seen].sort((x, y) => x - y), offsets, "every record delivered");
    for (const r of all) {
      assert.equal(r.deliveryCount, 1, `deliveryCount of ${r.offset}`);
      assert.equal(text(r.payload), `o${offsets.indexOf(r.offset)}`);
    }
    assert.equal(await s.ack("orders", "billing", seen), 10);
  });

  test("a new group starts at the oldest record; groups are independent", async (ctx) => {
    const s = ctx.client.stream(await ctx.ns());
    for (let i = 0; i < 3; i++) await s.append("orders", `o${i}`);
    const g1 = await s.readGroup("orders", "g1", "c", { count: 10 });
    assert.deepEqual(g1.map((r) => text(r.payload)), ["o0", "o1", "o2"]);
    assert.equal(g1[0]!.offset, 1);
    await s.ack("orders", "g1", g1.map((r) => r.offset));
    const g2 = await s.readGroup("orders", "g2", "c", { count: 10 });
    assert.deepEqual(g2.map((r) => text(r.payload)), ["o0", "o1", "o2"], "g2 sees everything g1 acked");
    await s.append("orders", "o3");
    assert.deepEqual((await s.readGroup("orders", "g1", "c")).map((r) => text(r.payload)), ["o3"], "g1 continues after its position");
  });

  test("an unacked record is redelivered after the claim timeout with deliveryCount 2; acked ones never", { slow: true }, async (ctx) => {
    const s = ctx.client.stream(await ctx.ns());
    const claimMs = ctx.limits.stream_claim_timeout_seconds! * 1000;
    const [o1, o2, o3] = [await s.append("jobs", "a"), await s.append("jobs", "b"), await s.append("jobs", "c")];
    const first = await s.readGroup("jobs", "workers", "c1", { count: 10 });
    assert.deepEqual(first.map((r) => r.offset), [o1, o2, o3]);
    assert.equal(await s.ack("jobs", "workers", [o1!, o3!]), 2);
    await ctx.advance(claimMs - 1000);
    assert.deepEqual(await s.readGroup("jobs", "workers", "c2", { count: 10 }), [], "pending but not yet past the claim timeout");
    await ctx.advance(2000);
    const again = await s.readGroup("jobs", "workers", "c2", { count: 10 });
    assert.deepEqual(again.map((r) => r.offset), [o2], "only the unacked record comes back");
    assert.equal(again[0]!.deliveryCount, 2);
    assert.equal(text(again[0]!.payload), "b");
    assert.equal(await s.ack("jobs", "workers", [o2!]), 1);
    await ctx.advance(claimMs + 1000);
    assert.deepEqual(await s.readGroup("jobs", "workers", "c1", { count: 10 }), [], "acked records are never redelivered");
  });

  test("ack counts only pending offsets", async (ctx) => {
    const s = ctx.client.stream(await ctx.ns());
    const o1 = await s.append("acks", "a");
    const o2 = await s.append("acks", "b");
    await s.readGroup("acks", "g", "c", { count: 1 });
    assert.equal(await s.ack("acks", "g", [o2]), 0, "never delivered: not pending");
    assert.equal(await s.ack("acks", "g", [o1, 999]), 1);
    assert.equal(await s.ack("acks", "g", [o1]), 0, "already acked");
  });

  test("a blocking readGroup receives a record appended while it waits", async (ctx) => {
    const s = ctx.client.stream(await ctx.ns());
    await s.readGroup("live", "g", "c", { count: 10 }); // creates the group on an empty stream
    const waiting = s.readGroup("live", "g", "c", { count: 10, block: 10_000 });
    await sleep(100); // real time: let the read reach the backend
    const o = await s.append("live", "fresh");
    const got = await within(waiting, 5000, "blocking readGroup");
    assert.deepEqual(got.map((r) => r.offset), [o]);
    assert.equal(text(got[0]!.payload), "fresh");
  });
};
