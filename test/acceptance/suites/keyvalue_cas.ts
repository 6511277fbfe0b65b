/** keyvalue_cas: ifAbsent and expectedVersion, atomic with the write. */
import assert from "node:assert/strict";
import type { Suite } from "../harness.js";
import { expectCode, text } from "../util.js";

const FAILED_PRECONDITION = 9;

export const keyvalue_cas: Suite = (test) => {
  test("ifAbsent writes an absent key and refuses an existing one with FAILED_PRECONDITION", async (ctx) => {
    const kv = ctx.client.kv(await ctx.ns());
    const a = await kv.set("k", "first", { ifAbsent: true });
    assert.ok(a.version > 0);
    await expectCode(kv.set("k", "second", { ifAbsent: true }), FAILED_PRECONDITION, "ifAbsent on an existing key");
    assert.equal(text(await kv.get("k")), "first", "the refused write changed nothing");
    assert.equal((await kv.getItem("k"))?.version, a.version);
    await kv.delete("k");
    await kv.set("k", "third", { ifAbsent: true });
    assert.equal(text(await kv.get("k")), "third", "ifAbsent after delete");
  });

  test("expectedVersion: mismatch → FAILED_PRECONDITION, match → success with a higher version", async (ctx) => {
    const kv = ctx.client.kv(await ctx.ns());
    const v1 = (await kv.set("k", "one")).version;
    await expectCode(kv.set("k", "bad", { expectedVersion: v1 + 1000 }), FAILED_PRECONDITION, "expectedVersion mismatch");
    assert.equal(text(await kv.get("k")), "one");
    const v2 = (await kv.set("k", "two", { expectedVersion: v1 })).version;
    assert.ok(v2 > v1, `new version ${v2} > ${v1}`);
    assert.equal(text(await kv.get("k")), "two");
    await expectCode(kv.set("k", "stale", { expectedVersion: v1 }), FAILED_PRECONDITION, "the old version no longer matches");
    assert.equal(text(await kv.get("k")), "two");
  });

  test("expectedVersion 0 means 'must be absent'; a non-zero version on an absent key is refused", async (ctx) => {
    const kv = ctx.client.kv(await ctx.ns());
    await expectCode(kv.set("k", "x", { expectedVersion: 1 }), FAILED_PRECONDITION, "expectedVersion 1 on an absent key");
    assert.equal(await kv.get("k"), null);
    await kv.set("k", "created", { expectedVersion: 0 });
    assert.equal(text(await kv.get("k")), "created");
    await expectCode(kv.set("k", "again", { expectedVersion: 0 }), FAILED_PRECONDITION, "expectedVersion 0 on an existing key");
  });

  test("concurrent writers with the same expectedVersion: exactly one wins", async (ctx) => {
    const kv = ctx.client.kv(await ctx.ns());
    const v = (await kv.set("k", "base")).version;
    const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => kv.set("k", `w${i}`, { expectedVersion: v })));
    const won = results.flatMap((r, i) => (r.status === "fulfilled" ? [i] : []));
    assert.equal(won.length, 1, `exactly one winner, got ${won.length}`);
    for (const r of results) if (r.status === "rejected") assert.equal((r.reason as { code?: number }).code, FAILED_PRECONDITION);
    assert.equal(text(await kv.get("k")), `w${won[0]}`);
  });

  test("concurrent ifAbsent writers: exactly one wins", async (ctx) => {
    const kv = ctx.client.kv(await ctx.ns());
    const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => kv.set("k", `w${i}`, { ifAbsent: true })));
    const won = results.flatMap((r, i) => (r.status === "fulfilled" ? [i] : []));
    assert.equal(won.length, 1, `exactly one winner, got ${won.length}`);
    assert.equal(text(await kv.get("k")), `w${won[0]}`);
  });
};
