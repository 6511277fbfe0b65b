/** stream_replay: read from any offset returns the exact suffix; limit + nextOffset paging. */
import assert from "node:assert/strict";
import type { Suite } from "../harness.js";
import type { StreamClient } from "../sdk.js";
import { text } from "../util.js";

async function fill(s: StreamClient, stream: string, n: number): Promise<number[]> {
  const offsets = [];
  for (let i = 0; i < n; i++) offsets.push(await s.append(stream, `e${i}`));
  return offsets;
}

export const stream_replay: Suite = (test) => {
  test("read from an offset returns exactly the suffix from that offset", async (ctx) => {
    const s = ctx.client.stream(await ctx.ns());
    const offsets = await fill(s, "log", 10);
    for (const k of [0, 3, 9]) {
      const { records } = await s.read("log", { from: offsets[k] });
      assert.deepEqual(records.map((r) => r.offset), offsets.slice(k), `from offset ${offsets[k]}`);
      assert.deepEqual(records.map((r) => text(r.payload)), offsets.slice(k).map((_, i) => `e${k + i}`));
    }
    const replay = await s.read("log", { from: offsets[4] });
    const again = await s.read("log", { from: offsets[4] });
    assert.deepEqual(again.records.map((r) => r.offset), replay.records.map((r) => r.offset), "replay is repeatable");
  });

  test("limit + nextOffset paging walks the whole stream once", async (ctx) => {
    const s = ctx.client.stream(await ctx.ns());
    const offsets = await fill(s, "log", 10);
    const seen: number[] = [];
    let from = 1;
    for (let page = 0; page < 20; page++) {
      const { records, nextOffset } = await s.read("log", { from, limit: 3 });
      assert.ok(records.length <= 3);
      if (!records.length) {
        assert.equal(nextOffset, from, "an empty page keeps nextOffset");
        break;
      }
      seen.push(...records.map((r) => r.offset));
      assert.equal(nextOffset, records[records.length - 1]!.offset + 1);
      from = nextOffset;
    }
    assert.deepEqual(seen, offsets);
  });

  test("read past the end is empty; appends after it are read from there", async (ctx) => {
    const s = ctx.client.stream(await ctx.ns());
    const offsets = await fill(s, "log", 3);
    const end = offsets[2]! + 1;
    assert.deepEqual((await s.read("log", { from: end })).records, []);
    const o = await s.append("log", "later");
    const { records } = await s.read("log", { from: end });
    assert.deepEqual(records.map((r) => r.offset), [o]);
    assert.equal(text(records[0]!.payload), "later");
  });
};
