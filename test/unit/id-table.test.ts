// IdTable (src/core/id-table.ts), the WebSocket session's map of calls in flight,
// checked against a Map on the id patterns clients produce.
import { test } from "node:test";
import assert from "node:assert/strict";
import { IdTable } from "../../src/core/id-table.js";

/** A seeded xorshift, so a failure replays. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

function check(t: IdTable<{ id: number }>, model: Map<number, { id: number }>, probe: number[]): void {
  assert.equal(t.size, model.size);
  for (const id of probe) assert.equal(t.get(id), model.get(id), `get(${id})`);
  const vals = t.values().map((v) => v.id).sort((a, b) => a - b);
  assert.deepEqual(vals, [...model.keys()].sort((a, b) => a - b));
}

test("ids reused from a small window (the bench client: id = slot), in flight count rising and falling", () => {
  const t = new IdTable<{ id: number }>();
  const model = new Map<number, { id: number }>();
  const r = rng(7);
  for (let round = 0; round < 2000; round++) {
    // A loop turn: some requests arrive, then some are answered.
    const arrive = Math.floor(r() * 64);
    for (let k = 0; k < arrive; k++) {
      const id = Math.floor(r() * 64);
      if (model.has(id)) continue;
      const v = { id };
      t.set(id, v);
      model.set(id, v);
    }
    for (const id of [...model.keys()]) {
      if (r() < 0.7) {
        assert.equal(t.delete(id), true);
        model.delete(id);
      }
    }
    assert.equal(t.delete(1000 + round), false, "deleting an absent id");
    if (round % 97 === 0) check(t, model, [...Array(70).keys()]);
  }
  check(t, model, [...Array(70).keys()]);
});

test("increasing ids (the SDK), wrapping past 0xffffffff, many rehashes, values() and clear()", () => {
  const t = new IdTable<{ id: number }>();
  const model = new Map<number, { id: number }>();
  const r = rng(42);
  let next = 0xffffffff - 5000;
  const ids: number[] = [];
  for (let i = 0; i < 40_000; i++) {
    next = next >= 0xffffffff ? 1 : next + 1;
    const v = { id: next };
    t.set(next, v);
    model.set(next, v);
    ids.push(next);
    // Answer out of order, keeping up to ~300 in flight.
    while (model.size > 1 + Math.floor(r() * 300)) {
      const k = ids.splice(Math.floor(r() * ids.length), 1)[0]!;
      assert.equal(t.delete(k), true);
      model.delete(k);
    }
    if (i % 1999 === 0) check(t, model, [...ids.slice(-20), 0, 0xffffffff, next + 1]);
  }
  check(t, model, ids.slice(0, 50));
  // Overwriting a present id keeps one entry.
  const id = ids[0]!;
  const replacement = { id };
  t.set(id, replacement);
  assert.equal(t.get(id), replacement);
  assert.equal(t.size, model.size);
  t.clear();
  assert.equal(t.size, 0);
  assert.deepEqual(t.values(), []);
  assert.equal(t.get(id), undefined);
  t.set(id, replacement);
  assert.equal(t.get(id), replacement);
});
