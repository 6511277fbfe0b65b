/**
 * keyvalue_idempotent: Set and Delete with an idempotency_key write once per
 * key within the window. Keys are scoped to the namespace and the operation
 * (not to the KeyValue key): the same key on another KeyValue key is a reuse.
 */
import assert from "node:assert/strict";
import type { Suite } from "../harness.js";
import { expectCode, text } from "../util.js";
import { FAILED_PRECONDITION, keyed, PAST_WINDOW_MS, REUSED, SHORT_WINDOW_S, untilForgotten } from "./idempotent-util.js";

export const keyvalue_idempotent: Suite = (test) => {
  test("Set twice with one key: the first version, no second write", async (ctx) => {
    const ns = await ctx.ns();
    const kv = ctx.client.kv(ns);
    const v1 = await keyed.set(ctx, ns, "k", "one", "w1");
    const v2 = (await kv.set("k", "two")).version; // an unkeyed write in between
    assert.ok(v2 > v1);
    assert.equal(await keyed.set(ctx, ns, "k", "one", "w1"), v1, "the retry answers the first version");
    assert.equal(text(await kv.get("k")), "two", "the retry did not write again");
    assert.equal((await kv.getItem("k"))?.version, v2, "no version bump");
  });

  test("20 concurrent Sets with one key: one write", async (ctx) => {
    const ns = await ctx.ns();
    const vs = await Promise.all(Array.from({ length: 20 }, () => keyed.set(ctx, ns, "k", "v", "dup")));
    assert.equal(new Set(vs).size, 1, `one version for all, got ${[...new Set(vs)].join(",")}`);
    assert.equal((await ctx.client.kv(ns).getItem("k"))?.version, vs[0], "the key holds that version: no later write ran");
  });

  test("Delete twice with one key: the first answer, no second delete", async (ctx) => {
    const ns = await ctx.ns();
    const kv = ctx.client.kv(ns);
    await kv.set("k", "v");
    assert.equal(await keyed.delete(ctx, ns, "k", "d1"), true);
    await kv.set("k", "again");
    assert.equal(await keyed.delete(ctx, ns, "k", "d1"), true, "the retry answers the first call's result");
    assert.equal(text(await kv.get("k")), "again", "and deletes nothing");
    assert.equal(await keyed.delete(ctx, ns, "absent", "d2"), false);
    await kv.set("absent", "now");
    assert.equal(await keyed.delete(ctx, ns, "absent", "d2"), false, "false is remembered too");
    assert.equal(text(await kv.get("absent")), "now");
  });

  test("different keys, and calls without a key, each write", async (ctx) => {
    const ns = await ctx.ns();
    const a = await keyed.set(ctx, ns, "k", "v", "a");
    const b = await keyed.set(ctx, ns, "k", "v", "b");
    const c = (await ctx.client.kv(ns).set("k", "v")).version;
    assert.ok(a < b && b < c, `three versions ${a} < ${b} < ${c}`);
  });

  test("a key reused for another value, KeyValue key or TTL → FAILED_PRECONDITION, nothing written", async (ctx) => {
    const ns = await ctx.ns();
    const kv = ctx.client.kv(ns);
    const v = await keyed.set(ctx, ns, "k", "one", "w");
    const e = await expectCode(keyed.set(ctx, ns, "k", "other", "w"), FAILED_PRECONDITION, "other value");
    assert.equal(e.reason, REUSED);
    await expectCode(keyed.set(ctx, ns, "k2", "one", "w"), FAILED_PRECONDITION, "other KeyValue key");
    if (ctx.claims.has("keyvalue_ttl")) await expectCode(keyed.set(ctx, ns, "k", "one", "w", { ttlSeconds: 60 }), FAILED_PRECONDITION, "other TTL");
    assert.equal(await kv.get("k2"), null);
    assert.equal((await kv.getItem("k"))?.version, v);
    // Set and Delete are separate scopes: one key may name one of each.
    assert.equal(await keyed.delete(ctx, ns, "k", "w"), true);
  });

  test("with compare-and-set: the retry of a successful CAS write answers its version, not a conflict", async (ctx) => {
    if (!ctx.claims.has("keyvalue_cas")) return;
    const ns = await ctx.ns();
    const base = (await ctx.client.kv(ns).set("k", "base")).version;
    const v = await keyed.set(ctx, ns, "k", "next", "cas", { expectedVersion: base });
    assert.equal(await keyed.set(ctx, ns, "k", "next", "cas", { expectedVersion: base }), v);
    await expectCode(keyed.set(ctx, ns, "k", "x", "cas2", { expectedVersion: base }), FAILED_PRECONDITION, "a new key with a stale version conflicts");
    assert.equal(text(await ctx.client.kv(ns).get("k")), "next");
  });

  test("after the window the key is forgotten: a retry writes again", { slow: true }, async (ctx) => {
    const ns = await ctx.ns({ limits: { idempotency_window_seconds: SHORT_WINDOW_S } });
    const v1 = await keyed.set(ctx, ns, "k", "v", "w");
    await ctx.advance(PAST_WINDOW_MS);
    const v2 = await untilForgotten(v1, () => keyed.set(ctx, ns, "k", "v", "w"));
    assert.ok(v2 > v1, "a new write");
  });
};
