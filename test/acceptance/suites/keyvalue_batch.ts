/** keyvalue_batch: batchGet / batchSet / batchDelete, in request order, bytes exact. */
import assert from "node:assert/strict";
import type { Suite } from "../harness.js";
import { assertBytes, text } from "../util.js";

export const keyvalue_batch: Suite = (test) => {
  test("batchSet returns one increasing version per entry; batchGet answers in key order with null for absent", async (ctx) => {
    const kv = ctx.client.kv(await ctx.ns());
    const bin = new Uint8Array([0, 1, 0, 2, 0]);
    const v0 = await kv.set("b", "old");
    const versions = await kv.batchSet([
      { key: "a", value: "1" },
      { key: "b", value: "2" },
      { key: "bin", value: bin },
      { key: "empty", value: new Uint8Array(0) },
      { key: "ключ/🔑", value: "u" },
    ]);
    assert.equal(versions.length, 5);
    for (const v of versions) assert.ok(v > 0, `version > 0, got ${v}`);
    assert.ok(versions[1]! > v0.version, "overwritten key's version increases");
    const got = await kv.batchGet(["ключ/🔑", "missing", "empty", "bin", "b", "a"]);
    assert.equal(got.length, 6);
    assert.equal(text(got[0]), "u");
    assert.equal(got[1], null, "absent key → null");
    assert.notEqual(got[2], null, "empty value is found");
    assertBytes(got[2], new Uint8Array(0), "empty value");
    assertBytes(got[3], bin, "binary value with zero bytes");
    assert.equal(text(got[4]), "2");
    assert.equal(text(got[5]), "1");
    assert.equal((await kv.getItem("a"))?.version, versions[0]);
  });

  test("batchDelete counts only the keys that existed", async (ctx) => {
    const kv = ctx.client.kv(await ctx.ns());
    await kv.batchSet([
      { key: "x", value: "1" },
      { key: "y", value: "2" },
      { key: "z", value: "3" },
    ]);
    assert.equal(await kv.batchDelete(["x", "nope", "z"]), 2);
    assert.deepEqual((await kv.batchGet(["x", "y", "z"])).map(text), [null, "2", null]);
    assert.equal(await kv.batchDelete(["x", "z"]), 0);
  });

  test("empty batches are answered", async (ctx) => {
    const kv = ctx.client.kv(await ctx.ns());
    assert.deepEqual(await kv.batchGet([]), []);
    assert.deepEqual(await kv.batchSet([]), []);
    assert.equal(await kv.batchDelete([]), 0);
  });

  test("a batch of 200 entries round-trips", async (ctx) => {
    const kv = ctx.client.kv(await ctx.ns());
    const entries = Array.from({ length: 200 }, (_, i) => ({ key: `k${i}`, value: `v${i}` }));
    assert.equal((await kv.batchSet(entries)).length, 200);
    const got = await kv.batchGet(entries.map((e) => e.key));
    assert.deepEqual(got.map(text), entries.map((e) => e.value));
  });
};
