/** pubsub_basic: exact-topic subscriptions, fan-out, order, bytes and attributes, isolation. */
import assert from "node:assert/strict";
import type { Suite, SuiteContext } from "../harness.js";
import type { SubscriptionClient } from "../sdk.js";
import { assertBytes, bytes, collect, subscribed, text } from "../util.js";

/** Runs fn with live subscriptions and always closes them. */
export async function withSubs<T>(ctx: SuiteContext, ns: string, patterns: string[], fn: (subs: SubscriptionClient[]) => Promise<T>): Promise<T> {
  const ps = ctx.client.pubsub(ns);
  const subs = patterns.map((p) => ps.subscribe(p));
  try {
    await Promise.all(subs.map((s, i) => subscribed(s, `subscribe ${patterns[i]}`)));
    return await fn(subs);
  } finally {
    await Promise.all(subs.map((s) => s.close().catch(() => {})));
  }
}

export const pubsub_basic: Suite = (test) => {
  test("a subscriber receives bytes, attributes and the message id, in publish order", async (ctx) => {
    const ns = await ctx.ns();
    const ps = ctx.client.pubsub(ns);
    await withSubs(ctx, ns, ["orders.created"], async ([sub]) => {
      const bin = new Uint8Array([0, 255, 0, 1, 0]);
      const id1 = await ps.publish("orders.created", bin, { kind: "binary", "x-ключ": "значение" });
      const id2 = await ps.publish("orders.created", new Uint8Array(0));
      const id3 = await ps.publish("orders.created", "third");
      assert.ok(id1 && id2 && id3, "publish returns message ids");
      const got = await collect(sub!, 3, "subscriber");
      assert.deepEqual(got.map((m) => m.messageId), [id1, id2, id3]);
      assert.deepEqual(got.map((m) => m.topic), ["orders.created", "orders.created", "orders.created"]);
      assertBytes(got[0]!.payload, bin, "binary payload");
      assert.deepEqual({ ...got[0]!.attributes }, { kind: "binary", "x-ключ": "значение" });
      assertBytes(got[1]!.payload, new Uint8Array(0), "empty payload");
      assert.equal(text(got[2]!.payload), "third");
    });
  });

  test("fan-out: 3 subscribers each receive every message, in order", async (ctx) => {
    const ns = await ctx.ns();
    const ps = ctx.client.pubsub(ns);
    await withSubs(ctx, ns, ["fan.out", "fan.out", "fan.out"], async (subs) => {
      const sent = Array.from({ length: 10 }, (_, i) => `m${i}`);
      for (const m of sent) await ps.publish("fan.out", m);
      const all = await Promise.all(subs.map((s, i) => collect(s, sent.length, `subscriber ${i}`)));
      for (const [i, got] of all.entries()) assert.deepEqual(got.map((m) => text(m.payload)), sent, `subscriber ${i}`);
    });
  });

  test("an exact subscription gets only its topic", async (ctx) => {
    const ns = await ctx.ns();
    const ps = ctx.client.pubsub(ns);
    await withSubs(ctx, ns, ["a.b"], async ([sub]) => {
      // Non-matching messages first: delivery is in order, so a leak would arrive before the match.
      await ps.publish("a.c", "no");
      await ps.publish("a.b.c", "no");
      await ps.publish("a", "no");
      await ps.publish("a.bb", "no");
      await ps.publish("a.b", "yes");
      const [m] = await collect(sub!, 1, "a.b subscriber");
      assert.equal(m!.topic, "a.b");
      assert.equal(text(m!.payload), "yes");
    });
  });

  test("namespaces are isolated: a subscriber never sees another namespace's messages", async (ctx) => {
    const ns1 = await ctx.ns();
    const ns2 = await ctx.ns({ name: `${ns1}x` });
    await withSubs(ctx, ns1, ["t.x"], async ([sub]) => {
      await ctx.client.pubsub(ns2).publish("t.x", "other namespace");
      await ctx.client.pubsub(ns1).publish("t.x", "mine");
      const [m] = await collect(sub!, 1, "ns1 subscriber");
      assert.equal(text(m!.payload), "mine");
    });
  });

  test("publish with no subscriber succeeds; a later subscriber starts from live messages", async (ctx) => {
    const ns = await ctx.ns();
    const ps = ctx.client.pubsub(ns);
    assert.ok(await ps.publish("nobody.listens", bytes("lost")));
    await withSubs(ctx, ns, ["nobody.listens"], async ([sub]) => {
      await ps.publish("nobody.listens", "live");
      const [m] = await collect(sub!, 1, "late subscriber");
      assert.equal(text(m!.payload), "live");
    });
  });

  test("a closed subscription ends its iterator; other subscriptions keep receiving", async (ctx) => {
    const ns = await ctx.ns();
    const ps = ctx.client.pubsub(ns);
    await withSubs(ctx, ns, ["c.x", "c.x"], async ([a, b]) => {
      await a!.close();
      await ps.publish("c.x", "after close");
      const [m] = await collect(b!, 1, "still-open subscriber");
      assert.equal(text(m!.payload), "after close");
      const it = a![Symbol.asyncIterator]();
      const r = await collect_end(it);
      assert.equal(r, true, "closed subscription's iterator is done");
    });
  });
};

async function collect_end(it: AsyncIterator<unknown>): Promise<boolean> {
  // After close, the iterator must finish (possibly after already-buffered messages).
  for (let i = 0; i < 10; i++) {
    const r = await Promise.race([it.next(), new Promise<"timeout">((res) => setTimeout(res, 2000, "timeout").unref())]);
    if (r === "timeout") return false;
    if (r.done) return true;
  }
  return false;
}
