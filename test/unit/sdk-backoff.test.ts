/**
 * The TypeScript SDK's reconnect backoff (clients/typescript/src/backoff.ts):
 * `backoffOptions` validates and resolves `reconnect: {…}`, `delayFor` gives
 * the delay before attempt n: initialDelayMs · 2ⁿ, capped at maxDelayMs, then
 * spread by ±jitter with the injected random source (Math.random by default).
 *
 * backoff.ts is internal (not in the package's exports), so it is loaded from
 * the SDK's ESM build, the same file `@prism/client` runs.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Code, PrismError } from "@prism/client";
import type * as BackoffModule from "../../clients/typescript/src/backoff.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const { backoffOptions, delayFor, BACKOFF_DEFAULTS } = (await import(pathToFileURL(join(ROOT, "clients/typescript/dist/backoff.js")).href)) as typeof BackoffModule;

/** A random source that always answers `r`. */
const fixed = (r: number) => () => r;
/** The largest value Math.random can return. */
const ALMOST_1 = 1 - Number.EPSILON / 2;

/** A small seeded PRNG (mulberry32): reproducible spreads. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function expectInvalid(fn: () => unknown, option: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof PrismError, `a PrismError, got ${e}`);
    assert.equal(e.code, Code.INVALID_ARGUMENT);
    assert.match(e.message, new RegExp(`reconnect\\.${option}`), "the message names the option");
    return true;
  });
}

test("backoffOptions: defaults, overrides, and a maxDelayMs below initialDelayMs raised to it", () => {
  assert.deepEqual(BACKOFF_DEFAULTS, { initialDelayMs: 100, maxDelayMs: 5000, jitter: 0.2, waitMs: 5000 });
  assert.deepEqual(backoffOptions(), BACKOFF_DEFAULTS);
  assert.deepEqual(backoffOptions({}), BACKOFF_DEFAULTS);
  assert.notEqual(backoffOptions(), BACKOFF_DEFAULTS, "a copy: the defaults are never mutated");
  assert.deepEqual(backoffOptions({ initialDelayMs: 50, maxDelayMs: 1000, jitter: 0.5, waitMs: 200 }), { initialDelayMs: 50, maxDelayMs: 1000, jitter: 0.5, waitMs: 200 });
  assert.deepEqual(backoffOptions({ initialDelayMs: 0, maxDelayMs: 0, jitter: 0, waitMs: 0 }), { initialDelayMs: 0, maxDelayMs: 0, jitter: 0, waitMs: 0 }, "0 is allowed everywhere");
  assert.equal(backoffOptions({ jitter: 1 }).jitter, 1);
  assert.equal(backoffOptions({ initialDelayMs: 8000 }).maxDelayMs, 8000, "the default cap below the first delay: raised to it");
  assert.deepEqual(backoffOptions({ initialDelayMs: 300, maxDelayMs: 100 }), { ...BACKOFF_DEFAULTS, initialDelayMs: 300, maxDelayMs: 300 });
  assert.deepEqual(BACKOFF_DEFAULTS, { initialDelayMs: 100, maxDelayMs: 5000, jitter: 0.2, waitMs: 5000 }, "still the defaults");
});

test("backoffOptions: a negative, NaN or infinite delay, or a jitter outside [0, 1], is INVALID_ARGUMENT naming the option", () => {
  for (const k of ["initialDelayMs", "maxDelayMs", "waitMs"] as const) {
    for (const bad of [-1, -0.5, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) expectInvalid(() => backoffOptions({ [k]: bad }), k);
  }
  for (const bad of [-0.01, 1.01, 2, Number.NaN, Number.POSITIVE_INFINITY]) expectInvalid(() => backoffOptions({ jitter: bad }), "jitter");
});

test("delayFor: exponential from initialDelayMs, capped at maxDelayMs (no spread at random 0.5)", () => {
  const b = backoffOptions();
  const mid = fixed(0.5);
  assert.deepEqual(
    Array.from({ length: 10 }, (_, n) => delayFor(b, n, mid)),
    [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000],
  );
  const c = backoffOptions({ initialDelayMs: 30, maxDelayMs: 1000 });
  assert.deepEqual(
    Array.from({ length: 8 }, (_, n) => delayFor(c, n, mid)),
    [30, 60, 120, 240, 480, 960, 1000, 1000],
  );
  // Far attempts stay at the cap (the exponent is bounded: no Infinity, no NaN).
  for (const n of [31, 100, 1_000, 1e6]) assert.equal(delayFor(b, n, mid), 5000, `attempt ${n}`);
  assert.equal(delayFor(backoffOptions({ initialDelayMs: 0 }), 5, mid), 0, "no initial delay: reconnects at once");
  const flat = backoffOptions({ initialDelayMs: 700, maxDelayMs: 700 });
  assert.deepEqual([0, 1, 2, 9].map((n) => delayFor(flat, n, mid)), [700, 700, 700, 700], "initial = max: a constant delay");
});

test("delayFor: the spread is ±jitter around the capped delay, linear in the random draw", () => {
  const b = backoffOptions(); // jitter 0.2
  // The extremes of the random source give the bounds exactly.
  assert.equal(delayFor(b, 0, fixed(0)), 80);
  assert.equal(delayFor(b, 0, fixed(ALMOST_1)), 120);
  assert.equal(delayFor(b, 0, fixed(0.25)), 90);
  assert.equal(delayFor(b, 0, fixed(0.75)), 110);
  assert.equal(delayFor(b, 3, fixed(0)), 640);
  assert.equal(delayFor(b, 3, fixed(ALMOST_1)), 960);
  // At the cap the spread is around maxDelayMs, not around the uncapped delay.
  assert.equal(delayFor(b, 20, fixed(0)), 4000);
  assert.equal(delayFor(b, 20, fixed(ALMOST_1)), 6000);
  // jitter 0: the random source has no effect; jitter 1: anywhere from 0 to twice the delay.
  const none = backoffOptions({ jitter: 0 });
  for (const r of [0, 0.3, ALMOST_1]) assert.equal(delayFor(none, 2, fixed(r)), 400);
  const full = backoffOptions({ jitter: 1 });
  assert.equal(delayFor(full, 2, fixed(0)), 0);
  assert.equal(delayFor(full, 2, fixed(ALMOST_1)), 800);
});

test("delayFor: many draws stay within the bounds and cover them (seeded, and with Math.random)", () => {
  for (const [jitter, n] of [
    [0.2, 0],
    [0.2, 4],
    [0.5, 2],
    [0.2, 12],
  ] as const) {
    const b = backoffOptions({ jitter });
    const base = Math.min(b.maxDelayMs, b.initialDelayMs * 2 ** n);
    const lo = Math.round(base * (1 - jitter));
    const hi = Math.round(base * (1 + jitter));
    for (const [source, random] of [
      ["seeded", seeded(1234 + n)],
      ["Math.random", undefined],
    ] as const) {
      const draws = Array.from({ length: 2000 }, () => delayFor(b, n, random));
      const min = Math.min(...draws);
      const max = Math.max(...draws);
      assert.ok(min >= lo && max <= hi, `${source}, jitter ${jitter}, attempt ${n}: ${min}..${max} within ${lo}..${hi}`);
      // Spread out over the range (2000 uniform draws: the extreme tenths are each hit with certainty in practice).
      const width = hi - lo;
      assert.ok(min <= lo + width * 0.1 && max >= hi - width * 0.1, `${source}, jitter ${jitter}, attempt ${n}: ${min}..${max} covers ${lo}..${hi}`);
      assert.ok(new Set(draws).size > Math.min(50, width / 2), `${source}: many distinct delays (${new Set(draws).size})`);
      const mean = draws.reduce((s, d) => s + d, 0) / draws.length;
      assert.ok(Math.abs(mean - base) < width * 0.05, `${source}: centred on ${base} (mean ${mean.toFixed(1)})`);
    }
  }
});
