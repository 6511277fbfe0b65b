/**
 * The shedding layer's mechanics, exact and clock-driven: token buckets,
 * admission thresholds by priority, the breaker's state machine and its store
 * wrapper, retries (idempotent only, budget, deadline), the deadline wheel.
 * End-to-end behaviour against real processes and backends: test/e2e/overload,
 * breaker-redis, crash-queue, fuzz-ingress.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ManualClock } from "../../src/core/clock.js";
import { RequestContext, type Priority } from "../../src/core/context.js";
import { Code, errors, PrismError, RetryableError } from "../../src/core/errors.js";
import { METHOD_BY_ID } from "../../src/core/methods.js";
import { prism } from "../../src/gen/prism.js";
import { TokenBucket } from "../../src/shedding/rate-limit.js";
import { Admission } from "../../src/shedding/admission.js";
import { LoopLag } from "../../src/shedding/load.js";
import { CircuitBreaker, guardStores, isBackendFailure } from "../../src/shedding/breaker.js";
import { RetryPolicy } from "../../src/shedding/retry.js";
import { TimerWheel, raceDeadline } from "../../src/shedding/deadline.js";
import { configSchema } from "../../src/config/schema.js";
import type { NamespaceRuntime } from "../../src/router/router.js";
import type { KeyValueStore, KvRecord } from "../../src/backends/driver.js";

const GET = METHOD_BY_ID[prism.v1.Method.KV_GET]!;
const SET = METHOD_BY_ID[prism.v1.Method.KV_SET]!;

function ns(name: string, extra: Record<string, unknown> = {}): NamespaceRuntime {
  return { name, config: { name, ...extra } } as unknown as NamespaceRuntime;
}

function ctx(priority?: Priority, m = GET): RequestContext {
  const c = new RequestContext(m, "http", "test");
  c.priority = priority;
  return c;
}

function code(fn: () => void): string {
  try {
    fn();
    return "ok";
  } catch (e) {
    return (e as PrismError).reason;
  }
}

describe("token bucket", () => {
  it("allows burst, then rps, refilled from the clock", () => {
    const clock = new ManualClock();
    const b = new TokenBucket(10, 5, () => clock.now());
    let ok = 0;
    for (let i = 0; i < 20; i++) if (b.take()) ok++;
    assert.equal(ok, 5, "burst");
    clock.advance(100); // 10 rps × 0.1 s = 1 token
    assert.equal(b.take(), true);
    assert.equal(b.take(), false);
    assert.equal(b.retryAfterSeconds(), 1);
    clock.advance(60_000);
    ok = 0;
    for (let i = 0; i < 20; i++) if (b.take()) ok++;
    assert.equal(ok, 5, "never more than burst after a long idle");
  });
});

describe("admission", () => {
  it("sheds low first, critical only at the hard limit", () => {
    let inFlight = 0;
    const a = new Admission({ maxInFlight: 100, maxEventLoopDelayMs: 0, capacityPct: 90 }, () => inFlight);
    const verdict = (p: Priority) => code(() => a.middleware(ctx(p), ns("n")));
    const at = (n: number) => {
      inFlight = n;
      return (["low", "normal", "high", "critical"] as Priority[]).map(verdict).map((r) => (r === "ok" ? "ok" : "shed"));
    };
    assert.deepEqual(at(10), ["ok", "ok", "ok", "ok"]);
    assert.deepEqual(at(63), ["shed", "ok", "ok", "ok"], "low at 70% of 90%");
    assert.deepEqual(at(77), ["shed", "shed", "ok", "ok"], "normal at 85% of 90%");
    assert.deepEqual(at(86), ["shed", "shed", "shed", "ok"], "high at 95% of 90%");
    assert.deepEqual(at(100), ["shed", "shed", "shed", "shed"], "critical at the hard limit");
    a.close();
  });

  it("sheds low priority (only) while the loop stays busier than low_max_utilization for two windows", () => {
    const a = new Admission({ maxInFlight: 100, maxEventLoopDelayMs: 0, capacityPct: 90, lowMaxUtilization: 0.85 }, () => 0);
    const verdicts = () => (["low", "normal", "high", "critical"] as Priority[]).map((p) => code(() => a.middleware(ctx(p), ns("n")))).map((r) => (r === "ok" ? "ok" : "shed"));
    const sig = a.loopSignals;
    sig.endWindow(0, 0.3);
    sig.endWindow(0, 0.99); // one busy window: a burst, not load
    assert.deepEqual(verdicts(), ["ok", "ok", "ok", "ok"]);
    sig.endWindow(0, 0.9); // busy two windows in a row
    assert.equal(sig.utilization, 0.9);
    assert.deepEqual(verdicts(), ["shed", "ok", "ok", "ok"], "only low yields to a busy loop");
    sig.endWindow(0, 0.5);
    assert.deepEqual(verdicts(), ["ok", "ok", "ok", "ok"]);
    a.close();
    const off = new Admission({ maxInFlight: 100, maxEventLoopDelayMs: 0, capacityPct: 90, lowMaxUtilization: 0 }, () => 0);
    off.loopSignals.endWindow(0, 1);
    off.loopSignals.endWindow(0, 1);
    assert.equal(code(() => off.middleware(ctx("low"), ns("n"))), "ok", "0 turns the signal off");
    off.close();
  });

  it("answers RESOURCE_EXHAUSTED with a retry hint; the namespace default priority applies", () => {
    let inFlight = 70;
    const a = new Admission({ maxInFlight: 100, maxEventLoopDelayMs: 0, capacityPct: 90 }, () => inFlight);
    const c = ctx(undefined);
    a.middleware(c, ns("crit", { priority_default: "critical" }));
    assert.equal(c.priority, "critical");
    try {
      a.middleware(ctx(undefined), ns("lowly", { priority_default: "low" }));
      assert.fail("not shed");
    } catch (e) {
      assert.ok(e instanceof RetryableError);
      assert.equal(e.code, Code.RESOURCE_EXHAUSTED);
      assert.equal(e.reason, "PRISM_ERR_OVERLOADED");
      assert.match(e.message, /retry after 1s/);
      assert.equal(e.retryAfterSeconds, 1);
    }
    inFlight = 0;
    a.close();
  });

  it("applies the namespace rate limit and default deadline", () => {
    const a = new Admission({ maxInFlight: 0, maxEventLoopDelayMs: 0, capacityPct: 90 }, () => 0);
    const n = ns("limited", { rate_limit: { rps: 1, burst: 3 }, default_timeout_ms: 5000 });
    const results = Array.from({ length: 5 }, () => code(() => a.middleware(ctx("critical"), n)));
    assert.deepEqual(results, ["ok", "ok", "ok", "PRISM_ERR_RATE_LIMITED", "PRISM_ERR_RATE_LIMITED"]);
    const c = ctx("low");
    const before = Date.now();
    try {
      a.middleware(c, ns("timed", { default_timeout_ms: 5000 }));
    } catch {}
    assert.ok(c.deadline >= before + 5000 && c.deadline <= Date.now() + 5000);
    const own = ctx("low");
    own.deadline = 42;
    a.middleware(own, ns("timed2", { default_timeout_ms: 5000 }));
    assert.equal(own.deadline, 42, "a caller's deadline is kept");
    a.close();
  });
});

describe("circuit breaker", () => {
  it("counts only availability failures", () => {
    assert.equal(isBackendFailure(errors.unavailable("x")), true);
    assert.equal(isBackendFailure(errors.deadline("x")), true);
    assert.equal(isBackendFailure(errors.internal("x")), true);
    assert.equal(isBackendFailure(new Error("boom")), true);
    assert.equal(isBackendFailure(errors.invalidArgument("k", "bad")), false);
    assert.equal(isBackendFailure(errors.casConflict("k", "exists")), false);
    assert.equal(isBackendFailure(errors.staleReceipt("q")), false);
  });

  it("opens after N consecutive failures, fails fast without calling the store, half-opens, closes on success", async () => {
    const clock = new ManualClock();
    const b = new CircuitBreaker("test", { failures: 3, probeAfterMs: 1000 }, clock);
    let calls = 0;
    let down = true;
    const flaky: KeyValueStore = {
      async get(): Promise<KvRecord | null> {
        calls++;
        if (down) throw errors.unavailable("flaky");
        return null;
      },
      async set() {
        calls++;
        throw errors.casConflict("k", "exists");
      },
      async delete() {
        return false;
      },
      async exists() {
        return false;
      },
    };
    const kv = guardStores({ keyvalue: flaky }, b).keyvalue!;
    assert.equal(kv.scan, undefined, "optional methods the driver lacks stay absent");
    // A CAS conflict is not a failure and resets the count.
    await assert.rejects(kv.get("k"));
    await assert.rejects(kv.get("k"));
    await assert.rejects(kv.set("k", new Uint8Array(), {}), { reason: "PRISM_ERR_CAS_CONFLICT" });
    assert.equal(b.state, "closed");
    for (let i = 0; i < 3; i++) await assert.rejects(kv.get("k"), { reason: "PRISM_ERR_BACKEND_UNAVAILABLE" });
    assert.equal(b.state, "open");
    const before = calls;
    for (let i = 0; i < 10; i++) await assert.rejects(kv.get("k"), { code: Code.UNAVAILABLE, reason: "PRISM_ERR_CIRCUIT_OPEN" });
    assert.equal(calls, before, "the store is not called while open");
    assert.equal(b.rejected, 10);
    clock.advance(1000);
    assert.equal(b.state, "half_open");
    // Probe fails: open again for another interval.
    await assert.rejects(kv.get("k"), { reason: "PRISM_ERR_BACKEND_UNAVAILABLE" });
    assert.equal(b.state, "open");
    await assert.rejects(kv.get("k"), { reason: "PRISM_ERR_CIRCUIT_OPEN" });
    clock.advance(1000);
    down = false;
    // One probe at a time: while it is pending, others fail fast.
    const probe = kv.get("k");
    await assert.rejects(kv.get("k"), { reason: "PRISM_ERR_CIRCUIT_OPEN" });
    assert.equal(await probe, null);
    assert.equal(b.state, "closed");
    assert.equal(await kv.get("k"), null);
  });
});

describe("retries", () => {
  const n = ns("r");
  it("retries UNAVAILABLE with jitter, up to maxAttempts", async () => {
    const p = new RetryPolicy({ maxAttempts: 3, baseBackoffMs: 1, maxBackoffMs: 2, budgetRatio: 0.1, maxTokens: 10 });
    let attempts = 0;
    const res = await p.invoke(async () => {
      if (++attempts < 3) throw errors.unavailable("blip");
      return { ok: true };
    }, n, {}, ctx());
    assert.deepEqual(res, { ok: true });
    assert.equal(attempts, 3);
    attempts = 0;
    await assert.rejects(p.invoke(async () => (attempts++, Promise.reject(errors.unavailable("down"))), n, {}, ctx()));
    assert.equal(attempts, 3);
  });

  it("does not retry other errors, an open circuit, or past the deadline", async () => {
    const p = new RetryPolicy({ maxAttempts: 5, baseBackoffMs: 50, maxBackoffMs: 50, budgetRatio: 0.1, maxTokens: 10 }, () => 0.99);
    for (const err of [errors.invalidArgument("k", "x"), errors.circuitOpen("b", 5, 1), errors.deadline("x"), errors.internal("x")]) {
      let attempts = 0;
      await assert.rejects(p.invoke(async () => (attempts++, Promise.reject(err)), n, {}, ctx()));
      assert.equal(attempts, 1, err.reason);
    }
    const c = ctx();
    c.deadline = Date.now() + 10; // backoff would be ~49 ms: past the deadline
    let attempts = 0;
    await assert.rejects(p.invoke(async () => (attempts++, Promise.reject(errors.unavailable("x"))), n, {}, c));
    assert.equal(attempts, 1);
  });

  it("spends a budget: at most ~budgetRatio extra calls once the starting balance is gone", async () => {
    const p = new RetryPolicy({ maxAttempts: 2, baseBackoffMs: 0, maxBackoffMs: 0, budgetRatio: 0.1, maxTokens: 5 });
    let attempts = 0;
    const calls = 200;
    for (let i = 0; i < calls; i++) await p.invoke(async () => (attempts++, Promise.reject(errors.unavailable("down"))), n, {}, ctx()).catch(() => {});
    const extra = attempts - calls;
    assert.ok(extra <= 5 + calls * 0.1 + 1, `retries ${extra}`);
    assert.ok(extra >= calls * 0.1 - 1, `retries ${extra}`);
  });
});

describe("deadline wheel", () => {
  it("expires entries by tick, removes settled ones", () => {
    let now = 1000;
    const w = new TimerWheel(10, () => now);
    const fired: string[] = [];
    const e = (name: string) => ({ wheelTick: -1, expire: () => fired.push(name) });
    const a = e("a");
    const b = e("b");
    const c = e("c");
    w.add(a, 1015);
    w.add(b, 1031);
    w.add(c, 1031);
    w.remove(c);
    assert.equal(w.pending, 2);
    now = 1019;
    w.advance();
    assert.deepEqual(fired, []);
    now = 1020;
    w.advance();
    assert.deepEqual(fired, ["a"]);
    now = 5000; // a long pause: everything due fires
    w.advance();
    assert.deepEqual(fired, ["a", "b"]);
    assert.equal(w.pending, 0);
  });

  it("abandons a call at its deadline with DEADLINE_EXCEEDED and cancels its context", async () => {
    const c = ctx();
    c.deadline = Date.now() + 30;
    const signal = c.signal;
    await assert.rejects(raceDeadline(c, new Promise(() => {})), { code: Code.DEADLINE_EXCEEDED });
    assert.equal(signal.aborted, true, "long polls see the abort");
    const d = ctx();
    d.deadline = Date.now() + 60_000;
    assert.deepEqual(await raceDeadline(d, Promise.resolve({ v: 1 })), { v: 1 });
    await assert.rejects(raceDeadline(d, Promise.reject(errors.unavailable("x"))), { code: Code.UNAVAILABLE });
    const past = ctx();
    past.deadline = Date.now() - 1;
    await assert.rejects(raceDeadline(past, Promise.resolve({})), { code: Code.DEADLINE_EXCEEDED });
  });
});

describe("config", () => {
  it("defaults and namespace fields", () => {
    const c = configSchema.parse({
      namespaces: [{ name: "a", backend: { type: "memstore" }, priority_default: "low", rate_limit: { rps: 5 }, default_timeout_ms: 100, breaker: { failures: 2 } }],
    });
    assert.deepEqual(c.server.shedding, { max_in_flight: 10_000, max_event_loop_delay_ms: 500, capacity_pct: 90, low_max_utilization: 0.85 });
    assert.deepEqual(c.server.breaker, { failures: 5, probe_after_ms: 30_000 });
    assert.equal(c.server.backpressure.policy, "disconnect");
    assert.deepEqual(c.namespaces[0]!.breaker, { failures: 2, probe_after_ms: 30_000 });
    assert.throws(() => configSchema.parse({ namespaces: [{ name: "a", backend: { type: "memstore" }, priority_default: "urgent" }] }));
    assert.throws(() => configSchema.parse({ server: { backpressure: { policy: "queue" } } }));
  });
});

describe("event-loop lag signal", () => {
  it("reports the smaller of the last two windows' maxima: one stall sheds nothing, sustained lag does", () => {
    const lag = new LoopLag();
    lag.endWindow(0);
    lag.endWindow(400); // one stall
    assert.equal(lag.delayMs, 0);
    lag.endWindow(0);
    assert.equal(lag.delayMs, 0);
    lag.endWindow(300);
    lag.endWindow(250); // two windows behind in a row
    assert.equal(lag.delayMs, 250);
    lag.endWindow(5);
    assert.equal(lag.delayMs, 5);
  });

  it("measures a loop kept busy across windows with Node's native delay monitor", async () => {
    const lag = new LoopLag(10, 30);
    lag.start();
    try {
      // Busy the loop for 150 ms at a time, letting timers run in between: every window sees a stall.
      for (let i = 0; i < 4; i++) {
        const until = performance.now() + 150;
        while (performance.now() < until);
        await new Promise((r) => setImmediate(r));
      }
      // A slower machine only makes the measured lag larger.
      assert.ok(lag.delayMs >= 50, `delay ${lag.delayMs} ms`);
      // The loop ran callbacks most of the time: performance.eventLoopUtilization() says so.
      assert.ok(lag.utilization > 0.5, `utilization ${lag.utilization}`);
    } finally {
      lag.stop();
    }
  });
});
