/**
 * RequestBudget (src/ingress/limits.ts): the worker's ceiling on unfinished
 * request bytes, and who gives way when it is full — the stalled holder of
 * the most bytes, for a holder that would hold less; never a holder still
 * receiving, never one smaller than the newcomer.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { RequestBudget, STALLED_MS, type BudgetHolder } from "../../src/ingress/limits.js";

/** A holder as an ingress keeps one: reserve, then count; evict releases everything it holds. */
class Holder implements BudgetHolder {
  held = 0;
  evicted = 0;
  constructor(
    private readonly budget: RequestBudget,
    public lastData: number,
  ) {}
  take(n: number): boolean {
    if (!this.budget.reserve(n, this)) return false;
    this.held += n;
    return true;
  }
  evict(): void {
    this.evicted++;
    this.budget.release(this.held);
    this.held = 0;
  }
}

const stalled = () => Date.now() - STALLED_MS - 1000;
const receiving = () => Date.now();

describe("RequestBudget", () => {
  it("takes bytes up to its ceiling and refuses past it when nobody can give way", () => {
    const b = new RequestBudget(100);
    assert.ok(b.reserve(60));
    assert.ok(b.reserve(40));
    assert.equal(b.reserve(1), false);
    assert.equal(b.refused, 1);
    b.release(40);
    assert.ok(b.reserve(40));
    assert.equal(b.used, 100);
  });

  it("drops the stalled holder of the most bytes for a smaller newcomer, and only as many as needed", () => {
    const b = new RequestBudget(100);
    const big = new Holder(b, stalled());
    const mid = new Holder(b, stalled());
    assert.ok(big.take(60));
    assert.ok(mid.take(40));
    const small = new Holder(b, receiving());
    assert.ok(small.take(10), "the newcomer fits once the largest stalled holder is dropped");
    assert.equal(big.evicted, 1);
    assert.equal(mid.evicted, 0, "one eviction made room: the next holder stays");
    assert.equal(b.evicted, 1);
    assert.equal(b.used, 50);
    assert.equal(small.held, 10);
  });

  it("never drops a holder that is still receiving, nor one that holds no more than the newcomer would", () => {
    const b = new RequestBudget(100);
    const active = new Holder(b, receiving());
    assert.ok(active.take(90));
    const other = new Holder(b, receiving());
    assert.equal(other.take(20), false, "the large holder is still receiving: the newcomer is refused");
    assert.equal(active.evicted, 0);

    const b2 = new RequestBudget(100);
    const a = new Holder(b2, stalled());
    const c = new Holder(b2, stalled());
    assert.ok(a.take(50));
    assert.ok(c.take(50));
    // The newcomer would hold 60: no stalled holder holds more than that.
    const greedy = new Holder(b2, receiving());
    assert.equal(greedy.take(60), false);
    assert.equal(a.evicted + c.evicted, 0);
    // A holder never evicts itself to grow.
    assert.equal(a.take(10), false);
    assert.equal(a.evicted, 0);
  });

  it("a holder that was forgotten (closed) is not evicted; an evict that releases nothing refuses instead of looping", () => {
    const b = new RequestBudget(100);
    const gone = new Holder(b, stalled());
    assert.ok(gone.take(100));
    b.forget(gone);
    assert.equal(new Holder(b, receiving()).take(10), false);
    assert.equal(gone.evicted, 0);

    const b2 = new RequestBudget(100);
    const stuck: BudgetHolder = { held: 0, lastData: stalled(), evict() {} };
    assert.ok(b2.reserve(100, stuck));
    stuck.held = 100;
    assert.equal(new Holder(b2, receiving()).take(10), false);
  });
});
