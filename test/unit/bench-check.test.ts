/** The perf:check gate (bench/check.ts): which ratios count as regressions. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { regressions, type Baseline } from "../../bench/check.js";

const baseline: Baseline = {
  tolerance: 0.25,
  from: { date: "2025-01-01T00:00:00.000Z", commit: "abc1234", secondsPerMeasurement: 3 },
  ratios: { ws: 0.8, grpc: 1.0 },
};

test("ratios within the tolerance pass, including improvements", () => {
  assert.deepEqual(regressions(baseline, { ws: 0.61, grpc: 1.4 }), []);
  assert.deepEqual(regressions(baseline, { ws: 0.6, grpc: 0.75 }), []);
});

test("a ratio more than the tolerance below its baseline fails, naming the scenario and the floor", () => {
  const bad = regressions(baseline, { ws: 0.59, grpc: 1.0 });
  assert.equal(bad.length, 1);
  assert.match(bad[0]!, /^ws: ratio 0\.590 < 0\.600 \(baseline 0\.800 - 25%\)$/);
});

test("a scenario of the baseline without a result fails", () => {
  assert.deepEqual(regressions(baseline, { ws: 0.8 }), ["grpc: no result"]);
});
