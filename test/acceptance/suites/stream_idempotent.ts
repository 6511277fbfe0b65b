/** stream_idempotent: Append with an idempotency_key appends once per key within the window. */
import assert from "node:assert/strict";
import type { Suite, SuiteContext } from "../harness.js";
import { expectCode, text } from "../util.js";
import { FAILED_PRECONDITION, keyed, PAST_WINDOW_MS, REUSED, SHORT_WINDOW_S, untilForgotten } from "./idempotent-util.js";

async function all(ctx: SuiteContext, ns: string, stream: string): Promise<{ offset: number; payload: string }[]> {
  const { records } = await ctx.client.stream(ns).read(stream, { limit: 1000 });
  return records.map((r) => ({ offset: r.offset, payload: text(r.payload)! }));
}

export const stream_idempotent: Suite = (test) => {
  test("the same key twice: the same offset, one record", async (ctx) => {
    const ns = await ctx.ns();
    const o1 = await keyed.append(ctx, ns, "events", "e1", "k1");
    const o2 = await keyed.append(ctx, ns, "events", "e1", "k1");
    assert.ok(o1 > 0);
    assert.equal(o2, o1, "the retry answers the first call's offset");
    await ctx.client.stream(ns).append("events", "later");
    assert.equal(await keyed.append(ctx, ns, "events", "e1", "k1"), o1, "still the first offset after another append");
    assert.deepEqual((await all(ctx, ns, "events")).map((r) => r.payload), ["e1", "later"]);
  });

  test("20 concurrent calls with one key: one record, one offset", async (ctx) => {
    const ns = await ctx.ns();
    const offs = await Promise.all(Array.from({ length: 20 }, () => keyed.append(ctx, ns, "events", "p", "dup")));
    assert.equal(new Set(offs).size, 1, `one offset for all, got ${[...new Set(offs)].join(",")}`);
    const recs = await all(ctx, ns, "events");
    assert.equal(recs.length, 1);
    assert.equal(recs[0]!.offset, offs[0]);
  });

  test("different keys, and calls without a key, each append", async (ctx) => {
    const ns = await ctx.ns();
    const a = await keyed.append(ctx, ns, "events", "same", "a");
    const b = await keyed.append(ctx, ns, "events", "same", "b");
    await ctx.client.stream(ns).append("events", "same");
    assert.ok(b > a);
    assert.equal((await all(ctx, ns, "events")).length, 3);
  });

  test("a key is scoped to its stream", async (ctx) => {
    const ns = await ctx.ns();
    await keyed.append(ctx, ns, "s1", "x", "k");
    await keyed.append(ctx, ns, "s2", "x", "k");
    assert.equal((await all(ctx, ns, "s1")).length, 1);
    assert.equal((await all(ctx, ns, "s2")).length, 1);
  });

  test("the same key with a different payload or attributes → FAILED_PRECONDITION, nothing appended", async (ctx) => {
    const ns = await ctx.ns();
    await keyed.append(ctx, ns, "events", "first", "k", { a: "1" });
    const e = await expectCode(keyed.append(ctx, ns, "events", "second", "k", { a: "1" }), FAILED_PRECONDITION, "reused key, other payload");
    assert.equal(e.reason, REUSED);
    await expectCode(keyed.append(ctx, ns, "events", "first", "k", { a: "2" }), FAILED_PRECONDITION, "reused key, other attributes");
    assert.deepEqual((await all(ctx, ns, "events")).map((r) => r.payload), ["first"]);
  });

  test("after the window the key is forgotten: a retry appends again", { slow: true }, async (ctx) => {
    const ns = await ctx.ns({ limits: { idempotency_window_seconds: SHORT_WINDOW_S } });
    const o1 = await keyed.append(ctx, ns, "events", "x", "k");
    await ctx.advance(PAST_WINDOW_MS);
    const o2 = await untilForgotten(o1, () => keyed.append(ctx, ns, "events", "x", "k"));
    assert.ok(o2 > o1, "a new record");
    assert.equal((await all(ctx, ns, "events")).length, 2);
  });
};
