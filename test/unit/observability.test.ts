/** Unit tests of src/observability: metric families, env switches, log level resolution. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { AggregatorRegistry, Registry } from "prom-client";
import { CounterFamily, HistogramFamily } from "../../src/observability/series.js";
import { tracingEnabled } from "../../src/observability/tracing.js";
import { resolveLevel } from "../../src/observability/logging.js";
import { parseProm, select } from "../e2e/observability-helpers.js";

test("histogram family renders cumulative buckets, sum and count", async () => {
  const reg = new Registry();
  const h = new HistogramFamily("t_seconds", "test", [0.1, 1]).register(reg);
  const s = h.child({ a: "x" });
  for (const v of [0.05, 0.1, 0.5, 2]) s.observe(v);
  const prom = parseProm(await reg.metrics());
  assert.deepEqual(
    select(prom, "t_seconds_bucket", { a: "x" }).map((b) => [b.labels.le, b.value]),
    [["0.1", 2], ["1", 3], ["+Inf", 4]],
  );
  assert.equal(select(prom, "t_seconds_count")[0]!.value, 4);
  assert.equal(select(prom, "t_seconds_sum")[0]!.value, 2.65);
});

test("families aggregate across registries like prom-client's own metrics", async () => {
  const regs = [new Registry(), new Registry()];
  for (const [i, reg] of regs.entries()) {
    const c = new CounterFamily("t_total", "test").register(reg);
    c.child({ ns: "a" }).value += i + 1;
    c.child({ ns: "b" }).value += 10;
    new HistogramFamily("t_h", "test", [1]).register(reg).child({ ns: "a" }).observe(0.5);
  }
  const agg = AggregatorRegistry.aggregate(await Promise.all(regs.map((r) => r.getMetricsAsJSON())));
  const prom = parseProm(await agg.metrics());
  assert.equal(select(prom, "t_total", { ns: "a" })[0]!.value, 3);
  assert.equal(select(prom, "t_total", { ns: "b" })[0]!.value, 20);
  assert.equal(select(prom, "t_h_bucket", { ns: "a", le: "1" })[0]!.value, 2);
});

test("child() returns the same series for the same labels", () => {
  const c = new CounterFamily("t2_total", "test");
  assert.equal(c.child({ a: "1", b: "2" }), c.child({ a: "1", b: "2" }));
  assert.notEqual(c.child({ a: "1" }), c.child({ a: "2" }));
});

test("tracing is off unless the OTEL environment asks for it", () => {
  assert.equal(tracingEnabled({}), false);
  assert.equal(tracingEnabled({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://x:4318" }), true);
  assert.equal(tracingEnabled({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://x:4318/v1/traces" }), true);
  assert.equal(tracingEnabled({ OTEL_TRACES_EXPORTER: "otlp" }), true);
  assert.equal(tracingEnabled({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://x:4318", OTEL_SDK_DISABLED: "true" }), false);
  assert.equal(tracingEnabled({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://x:4318", OTEL_TRACES_EXPORTER: "none" }), false);
});

test("log level: PRISM_LOG_LEVEL, then PRISM_QUIET, then the config", () => {
  assert.equal(resolveLevel("debug", {}), "debug");
  assert.equal(resolveLevel("debug", { PRISM_QUIET: "1" }), "warn");
  assert.equal(resolveLevel("debug", { PRISM_QUIET: "1", PRISM_LOG_LEVEL: "ERROR" }), "error");
  assert.equal(resolveLevel("info", { PRISM_LOG_LEVEL: "bogus" }), "info");
});
