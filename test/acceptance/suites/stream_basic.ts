/** stream_basic: append with increasing offsets (first is 1), read from the start, isolation. */
import assert from "node:assert/strict";
import type { Suite } from "../harness.js";
import { assertBytes, text } from "../util.js";

export const stream_basic: Suite = (test) => {
  test("append returns increasing offsets starting at 1", async (ctx) => {
    const s = ctx.client.stream(await ctx.ns());
    const offsets = [];
    for (let i = 0; i < 5; i++) offsets.push(await s.append("events", `e${i}`));
    assert.equal(offsets[0], 1, "first offset is 1");
    for (let i = 1; i < offsets.length; i++) assert.ok(offsets[i]! > offsets[i - 1]!, `offsets increase: ${offsets.join(", ")}`);
  });

  test("read returns every record in order with payload bytes, attributes and a timestamp", async (ctx) => {
    const s = ctx.client.stream(await ctx.ns());
    const bin = new Uint8Array([0, 0, 7, 0]);
    const o1 = await s.append("events", bin, { kind: "bin" });
    const o2 = await s.append("events", new Uint8Array(0));
    const o3 = await s.append("events", "three", { "ключ": "значение" });
    const { records, nextOffset } = await s.read("events");
    assert.deepEqual(records.map((r) => r.offset), [o1, o2, o3]);
    assertBytes(records[0]!.payload, bin, "binary payload");
    assert.deepEqual({ ...records[0]!.attributes }, { kind: "bin" });
    assertBytes(records[1]!.payload, new Uint8Array(0), "empty payload");
    assert.equal(text(records[2]!.payload), "three");
    assert.deepEqual({ ...records[2]!.attributes }, { "ключ": "значение" });
    for (const r of records) assert.ok(r.timestampMs > 0, `timestampMs > 0, got ${r.timestampMs}`);
    assert.equal(nextOffset, o3 + 1, "nextOffset = last offset + 1");
  });

  test("read with a limit returns the first records and the offset to continue from", async (ctx) => {
    const s = ctx.client.stream(await ctx.ns());
    for (let i = 0; i < 5; i++) await s.append("events", `e${i}`);
    const { records, nextOffset } = await s.read("events", { limit: 2 });
    assert.deepEqual(records.map((r) => text(r.payload)), ["e0", "e1"]);
    assert.equal(nextOffset, records[1]!.offset + 1);
  });

  test("a stream never appended to reads empty", async (ctx) => {
    const s = ctx.client.stream(await ctx.ns());
    const { records } = await s.read("nothing-here");
    assert.deepEqual(records, []);
  });

  test("concurrent appends get distinct offsets and all read back in offset order", async (ctx) => {
    const s = ctx.client.stream(await ctx.ns());
    const offsets = await Promise.all(Array.from({ length: 20 }, (_, i) => s.append("busy", `e${i}`)));
    assert.equal(new Set(offsets).size, 20, "distinct offsets");
    const { records } = await s.read("busy", { limit: 100 });
    assert.deepEqual(records.map((r) => r.offset), [...offsets].sort((a, b) => a - b));
    for (const r of records) assert.equal(text(r.payload), `e${offsets.indexOf(r.offset)}`, `payload at offset ${r.offset}`);
  });

  test("streams are isolated by name and namespace; each starts at offset 1", async (ctx) => {
    const ns1 = await ctx.ns();
    const ns2 = await ctx.ns({ name: `${ns1}x` });
    const a = ctx.client.stream(ns1);
    const b = ctx.client.stream(ns2);
    await a.append("s1", "a1");
    await a.append("s1", "a2");
    assert.equal(await a.append("s2", "other stream"), 1, "another stream starts at 1");
    assert.equal(await b.append("s1", "other namespace"), 1, "another namespace starts at 1");
    assert.deepEqual((await a.read("s1")).records.map((r) => text(r.payload)), ["a1", "a2"]);
    assert.deepEqual((await b.read("s1")).records.map((r) => text(r.payload)), ["other namespace"]);
  });
};
