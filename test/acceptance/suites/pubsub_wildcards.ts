/** pubsub_wildcards: `*` matches one token, `>` (last) one or more. */
import assert from "node:assert/strict";
import type { Suite, SuiteContext } from "../harness.js";
import { collect, text } from "../util.js";
import { withSubs } from "./pubsub_basic.js";

/**
 * Publishes the non-matching topics first, then the matching ones: delivery
 * per subscription is in order, so any leak shows up among the first
 * messages received.
 */
async function expectMatches(ctx: SuiteContext, pattern: string, nonMatching: string[], matching: string[]): Promise<void> {
  const ns = await ctx.ns();
  const ps = ctx.client.pubsub(ns);
  await withSubs(ctx, ns, [pattern], async ([sub]) => {
    for (const t of nonMatching) await ps.publish(t, `no:${t}`);
    for (const t of matching) await ps.publish(t, `yes:${t}`);
    const got = await collect(sub!, matching.length, `subscriber ${pattern}`);
    assert.deepEqual(got.map((m) => m.topic), matching, `${pattern} receives exactly ${matching.join(", ")}`);
    assert.deepEqual(got.map((m) => text(m.payload)), matching.map((t) => `yes:${t}`));
  });
}

export const pubsub_wildcards: Suite = (test) => {
  test("orders.* gets orders.created, not orders.eu.created, orders or ordersx.a", (ctx) =>
    expectMatches(ctx, "orders.*", ["orders.eu.created", "ordersx.a", "orders", "x.orders.created"], ["orders.created", "orders.updated"]));

  test("orders.> gets orders.created and orders.eu.created, not orders or ordersx.a", (ctx) =>
    expectMatches(ctx, "orders.>", ["orders", "ordersx.a", "x.orders.created"], ["orders.created", "orders.eu.created", "orders.eu.de.shipped"]));

  test("*.created gets orders.created and users.created, not orders.eu.created", (ctx) =>
    expectMatches(ctx, "*.created", ["orders.eu.created", "created", "orders.createdx"], ["orders.created", "users.created"]));

  test("a.*.c and > combine; a bare > gets everything", async (ctx) => {
    await expectMatches(ctx, "a.*.c", ["a.c", "a.b.c.d", "a.b.d"], ["a.b.c", "a.x.c"]);
    await expectMatches(ctx, ">", [], ["a", "b.c", "d.e.f"]);
  });

  test("wildcard and exact subscriptions on one namespace each get their own matches", async (ctx) => {
    const ns = await ctx.ns();
    const ps = ctx.client.pubsub(ns);
    await withSubs(ctx, ns, ["orders.*", "orders.>", "orders.created"], async ([star, gt, exact]) => {
      await ps.publish("orders.eu.created", "1");
      await ps.publish("orders.created", "2");
      const [s, g, e] = await Promise.all([collect(star!, 1, "orders.*"), collect(gt!, 2, "orders.>"), collect(exact!, 1, "orders.created")]);
      assert.deepEqual(s.map((m) => m.topic), ["orders.created"]);
      assert.deepEqual(g.map((m) => m.topic), ["orders.eu.created", "orders.created"]);
      assert.deepEqual(e.map((m) => m.topic), ["orders.created"]);
    });
  });
};
