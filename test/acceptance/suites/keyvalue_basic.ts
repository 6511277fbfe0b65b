/** keyvalue_basic: get, set, delete, exists; values are bytes, keys any UTF-8; namespaces isolated. */
import assert from "node:assert/strict";
import type { Suite } from "../harness.js";
import { assertBytes, bytes, expectCode, random, text } from "../util.js";

export const keyvalue_basic: Suite = (test) => {
  test("set then get round-trips a value; getItem carries a version", async (ctx) => {
    const kv = ctx.client.kv(await ctx.ns());
    const { version } = await kv.set("greeting", "hello");
    assert.ok(version > 0, `version > 0, got ${version}`);
    assert.equal(text(await kv.get("greeting")), "hello");
    const item = await kv.getItem("greeting");
    assert.ok(item, "getItem found");
    assert.equal(item.version, version);
    assert.equal(text(item.value), "hello");
    assert.equal(await kv.exists("greeting"), true);
  });

  test("binary values containing zero bytes round-trip exactly", async (ctx) => {
    const kv = ctx.client.kv(await ctx.ns());
    const zeros = new Uint8Array([0, 0, 1, 0, 255, 0, 0]);
    const all = new Uint8Array(512).map((_, i) => i % 256);
    await kv.set("zeros", zeros);
    await kv.set("all-bytes", all);
    await kv.set("only-zero", new Uint8Array(3));
    assertBytes(await kv.get("zeros"), zeros, "zeros");
    assertBytes(await kv.get("all-bytes"), all, "all 256 byte values");
    assertBytes(await kv.get("only-zero"), new Uint8Array(3), "three zero bytes");
  });

  test("an empty value is found with length 0, distinct from an absent key (null)", async (ctx) => {
    const kv = ctx.client.kv(await ctx.ns());
    await kv.set("empty", new Uint8Array(0));
    const v = await kv.get("empty");
    assert.notEqual(v, null, "empty value must not read as absent");
    assertBytes(v, new Uint8Array(0), "empty value");
    assert.equal(await kv.exists("empty"), true);
    const item = await kv.getItem("empty");
    assert.ok(item && item.version > 0, "getItem of an empty value is found");
    assert.equal(item.value.length, 0);
    assert.equal(await kv.get("absent"), null);
    assert.equal(await kv.getItem("absent"), null);
    assert.equal(await kv.exists("absent"), false);
  });

  test("a 1 MiB value round-trips", async (ctx) => {
    const kv = ctx.client.kv(await ctx.ns());
    const big = random(1024 * 1024);
    await kv.set("big", big);
    assertBytes(await kv.get("big"), big, "1 MiB value");
  });

  test("unicode keys, with '/', spaces and URL-special characters, are distinct keys", async (ctx) => {
    const kv = ctx.client.kv(await ctx.ns());
    const keys = ["ключ/🔑/キー", "a/b/c", "/leading", "trailing/", "with space", "pct%2Fliteral", "q?x=1&y=2#frag", "plus+sign", "ключ"];
    for (const [i, k] of keys.entries()) await kv.set(k, `v${i}`);
    for (const [i, k] of keys.entries()) assert.equal(text(await kv.get(k)), `v${i}`, `key ${JSON.stringify(k)}`);
    assert.equal(await kv.get("a%2Fb%2Fc"), null, "a percent-encoded spelling is another key");
    assert.equal(await kv.delete("ключ/🔑/キー"), true);
    assert.equal(await kv.get("ключ/🔑/キー"), null);
    assert.equal(text(await kv.get("ключ")), `v${keys.length - 1}`);
  });

  test("overwrite returns the new value and a higher version", async (ctx) => {
    const kv = ctx.client.kv(await ctx.ns());
    const a = await kv.set("k", "one");
    const b = await kv.set("k", "two");
    assert.ok(b.version > a.version, `version ${b.version} > ${a.version}`);
    assert.equal(text(await kv.get("k")), "two");
    assert.equal((await kv.getItem("k"))?.version, b.version);
  });

  test("delete: true for an existing key, false for a missing one", async (ctx) => {
    const kv = ctx.client.kv(await ctx.ns());
    assert.equal(await kv.delete("never-set"), false);
    await kv.set("k", "v");
    assert.equal(await kv.delete("k"), true);
    assert.equal(await kv.get("k"), null);
    assert.equal(await kv.exists("k"), false);
    assert.equal(await kv.delete("k"), false, "second delete");
  });

  test("a deleted key can be set again", async (ctx) => {
    const kv = ctx.client.kv(await ctx.ns());
    await kv.set("k", "1");
    await kv.delete("k");
    const b = await kv.set("k", "2");
    assert.ok(b.version > 0);
    assert.equal(text(await kv.get("k")), "2");
    assert.equal(await kv.exists("k"), true);
  });

  test("namespaces are isolated, even when one name is a prefix of the other", async (ctx) => {
    const ns1 = await ctx.ns();
    const ns2 = await ctx.ns({ name: `${ns1}x` });
    const kv1 = ctx.client.kv(ns1);
    const kv2 = ctx.client.kv(ns2);
    await kv1.set("shared", "one");
    assert.equal(await kv2.get("shared"), null, "ns2 must not see ns1's key");
    await kv2.set("shared", "two");
    assert.equal(text(await kv1.get("shared")), "one");
    assert.equal(text(await kv2.get("shared")), "two");
    assert.equal(await kv2.delete("shared"), true);
    assert.equal(text(await kv1.get("shared")), "one");
  });

  test("an unknown namespace → NOT_FOUND; an empty key → INVALID_ARGUMENT", async (ctx) => {
    await expectCode(ctx.client.kv(ctx.uid("acc-no-such-ns")).get("k"), 5, "get in an unknown namespace");
    const kv = ctx.client.kv(await ctx.ns());
    await expectCode(kv.set("", "v"), 3, "set with an empty key");
    await kv.set("k", bytes("v"));
  });
};
