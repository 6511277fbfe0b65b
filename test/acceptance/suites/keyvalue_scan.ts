/** keyvalue_scan: prefix scans in byte order, cursor pagination complete and without duplicates under concurrent writes. */
import assert from "node:assert/strict";
import type { Suite } from "../harness.js";
import type { KvClient, KvItem } from "../sdk.js";
import { byteOrder, text } from "../util.js";

async function scanAll(kv: KvClient, prefix: string, limit: number, between?: (page: number) => Promise<void>): Promise<KvItem[]> {
  const out: KvItem[] = [];
  let cursor = "";
  for (let page = 0; page < 1000; page++) {
    const res = await kv.scanPage({ prefix, cursor, limit });
    assert.ok(res.items.length <= limit, `page ${page}: ${res.items.length} items > limit ${limit}`);
    out.push(...res.items);
    if (!res.nextCursor) return out;
    cursor = res.nextCursor;
    await between?.(page);
  }
  assert.fail("scan did not finish within 1000 pages");
}

const pad = (i: number) => String(i).padStart(3, "0");

export const keyvalue_scan: Suite = (test) => {
  test("scan returns exactly the prefix's keys in UTF-8 byte order, with values and versions", async (ctx) => {
    const kv = ctx.client.kv(await ctx.ns());
    // UTF-16 and UTF-8 orders differ: U+FF21 sorts after U+1F511 in UTF-16 but before it in UTF-8.
    const keys = ["p/b", "p/a", "p/ключ", "p/🔑", "p/\uFF21", "p/a/nested", "p/Z", "p/"];
    for (const k of keys) await kv.set(k, `v:${k}`);
    await kv.set("q/other", "x");
    await kv.set("p", "not under p/");
    const res = await kv.scanPage({ prefix: "p/" });
    assert.equal(res.nextCursor, "", "one page holds them all");
    assert.deepEqual(res.items.map((i) => i.key), byteOrder(keys));
    for (const it of res.items) {
      assert.equal(text(it.value), `v:${it.key}`);
      assert.equal(it.version, (await kv.getItem(it.key))?.version, `version of ${it.key}`);
    }
  });

  test("pagination with a small limit is complete and without duplicates", async (ctx) => {
    const kv = ctx.client.kv(await ctx.ns());
    const keys = Array.from({ length: 25 }, (_, i) => `k/${pad(i)}`);
    await Promise.all(keys.map((k) => kv.set(k, k)));
    const all = await scanAll(kv, "k/", 4);
    assert.deepEqual(all.map((i) => i.key), keys);
    const viaIterator: string[] = [];
    for await (const it of kv.scan("k/", { limit: 3 })) viaIterator.push(it.key);
    assert.deepEqual(viaIterator, keys, "scan() async iterator");
  });

  test("keys present for the whole scan appear exactly once while keys are inserted between pages", async (ctx) => {
    const kv = ctx.client.kv(await ctx.ns());
    const keys = Array.from({ length: 30 }, (_, i) => `k/${pad(i * 10)}`);
    await Promise.all(keys.map((k) => kv.set(k, "orig")));
    const inserted: string[] = [];
    const all = await scanAll(kv, "k/", 4, async (page) => {
      // before, inside and after the cursor position: k/000x sorts first, k/1x5 lands mid-scan, k/999x last
      const fresh = [`k/000-${page}`, `k/${pad(page * 40 + 5)}-${page}`, `k/999-${page}`];
      inserted.push(...fresh);
      await Promise.all(fresh.map((k) => kv.set(k, "new")));
    });
    const seen = all.map((i) => i.key);
    assert.equal(new Set(seen).size, seen.length, `duplicates in scan: ${seen.filter((k, i) => seen.indexOf(k) !== i).join(", ")}`);
    const missing = keys.filter((k) => !seen.includes(k));
    assert.deepEqual(missing, [], "every key present for the whole scan appears");
    const unknown = seen.filter((k) => !keys.includes(k) && !inserted.includes(k));
    assert.deepEqual(unknown, [], "only real keys");
    assert.deepEqual(seen, byteOrder(seen), "pages are in byte order");
  });

  test("keysOnly returns the keys without values", async (ctx) => {
    const kv = ctx.client.kv(await ctx.ns());
    await kv.set("a/1", "some value");
    await kv.set("a/2", new Uint8Array(1000));
    const res = await kv.scanPage({ prefix: "a/", keysOnly: true });
    assert.deepEqual(res.items.map((i) => i.key), ["a/1", "a/2"]);
    for (const it of res.items) assert.ok(it.value == null || it.value.length === 0, `${it.key}: value omitted, got ${it.value?.length} bytes`);
    const viaIterator: string[] = [];
    for await (const it of kv.scan("a/", { keysOnly: true })) viaIterator.push(it.key);
    assert.deepEqual(viaIterator, ["a/1", "a/2"]);
  });

  test("prefix isolation: 'user:' excludes 'users:', 'user' and 'use'", async (ctx) => {
    const kv = ctx.client.kv(await ctx.ns());
    for (const k of ["user:1", "user:2", "users:1", "user", "use", "usea", "user;", "user9"]) await kv.set(k, k);
    const res = await kv.scanPage({ prefix: "user:" });
    assert.deepEqual(res.items.map((i) => i.key), ["user:1", "user:2"]);
  });

  test("an empty prefix scans the whole namespace and nothing of another (prefix-named) namespace", async (ctx) => {
    const ns1 = await ctx.ns();
    const ns2 = await ctx.ns({ name: `${ns1}x` });
    const kv1 = ctx.client.kv(ns1);
    const kv2 = ctx.client.kv(ns2);
    await kv1.set("one", "1");
    await kv1.set("two", "2");
    await kv2.set("three", "3");
    assert.deepEqual((await scanAll(kv1, "", 100)).map((i) => i.key), ["one", "two"]);
    assert.deepEqual((await scanAll(kv2, "", 100)).map((i) => i.key), ["three"]);
  });

  test("deleted keys do not appear; an unmatched prefix returns an empty, complete page", async (ctx) => {
    const kv = ctx.client.kv(await ctx.ns());
    await kv.set("d/1", "x");
    await kv.set("d/2", "x");
    await kv.delete("d/1");
    assert.deepEqual((await scanAll(kv, "d/", 10)).map((i) => i.key), ["d/2"]);
    const none = await kv.scanPage({ prefix: "nothing/" });
    assert.deepEqual(none.items, []);
    assert.equal(none.nextCursor, "");
  });
};
