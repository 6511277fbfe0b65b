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

// ---------------------------------------------------------------- helpers the new scenarios rely on

import { prism as pb } from "../../src/gen/prism.js";
import { bytesField, fieldLength } from "../../bench/lib/ws-client.js";
import { memstoreYaml } from "../../bench/lib/spawn.js";
import { validateConfig } from "../../src/config/load.js";
import { parse as parseYaml } from "yaml";

test("bytesField finds the payload of a PubSubMessage and of a PublishRequest without decoding them", () => {
  const payload = Buffer.alloc(64, 7);
  payload.writeDoubleLE(1234.5, 0);
  const msg = pb.v1.PubSubMessage.encode({ topic: "bench.fanout", payload, attributes: { a: "b" }, messageId: "m-1", publishTimeMs: 1_700_000_000_000 }).finish();
  const framed = Buffer.concat([Buffer.alloc(6), msg]); // server frame header
  const at = bytesField(framed, 6, framed.length, 2);
  assert.equal(fieldLength, 64);
  assert.equal(framed.readDoubleLE(at), 1234.5);
  const req = pb.v1.PublishRequest.encode({ namespace: "ns", topic: "t", payload }).finish();
  const at2 = bytesField(req, 0, req.length, 3);
  assert.deepEqual(Buffer.from(req.subarray(at2, at2 + fieldLength)), payload);
  assert.equal(bytesField(req, 0, req.length, 9), -1);
});

test("the metrics-overhead scenario's server keys are valid prism.yaml (server.metrics, server.access_log_sample)", async () => {
  for (const metrics of [true, false]) {
    const cfg = await validateConfig(parseYaml(memstoreYaml("benchns", { metrics, access_log_sample: 0 })), "bench.yaml");
    assert.equal(cfg.server.metrics, metrics);
    assert.equal(cfg.server.access_log_sample, 0);
    assert.equal(cfg.namespaces[0]!.name, "benchns");
  }
  assert.equal(memstoreYaml("x").startsWith("namespaces:"), true);
});

test("histogramQuantiles: bucket bounds of the quantiles, summed over the matching series only", async () => {
  const { histogramQuantiles } = await import("../../bench/lib/scenarios.js");
  const text = [
    "# HELP prism_request_duration_seconds x",
    'prism_request_duration_seconds_bucket{namespace="a",method="KeyValue/Get",le="0.0001"} 900',
    'prism_request_duration_seconds_bucket{namespace="a",method="KeyValue/Get",le="0.00025"} 985',
    'prism_request_duration_seconds_bucket{namespace="a",method="KeyValue/Get",le="0.0005"} 995',
    'prism_request_duration_seconds_bucket{namespace="a",method="KeyValue/Get",le="+Inf"} 1000',
    'prism_request_duration_seconds_bucket{namespace="b",method="KeyValue/Get",le="0.0001"} 0',
    'prism_request_duration_seconds_bucket{namespace="b",method="KeyValue/Get",le="0.00025"} 0',
    'prism_request_duration_seconds_bucket{namespace="b",method="KeyValue/Get",le="0.0005"} 0',
    'prism_request_duration_seconds_bucket{namespace="b",method="KeyValue/Get",le="+Inf"} 1000',
    'prism_request_duration_seconds_bucket{namespace="a",method="KeyValue/Set",le="0.0001"} 0',
    'prism_request_duration_seconds_bucket{namespace="a",method="KeyValue/Set",le="+Inf"} 50',
  ].join("\n");
  // Namespace a alone: 90% within 0.1 ms, 99.5% within 0.5 ms.
  assert.deepEqual(histogramQuantiles(text, "prism_request_duration_seconds", 'namespace="a",method="KeyValue/Get"', [0.5, 0.99]), [0.1, 0.5]);
  // Both namespaces: half of 2000 within 0.1 ms; the p99 is past the last finite bucket.
  assert.deepEqual(histogramQuantiles(text, "prism_request_duration_seconds", 'method="KeyValue/Get"', [0.45, 0.5, 0.99]), [0.1, Infinity, Infinity]);
  assert.equal(histogramQuantiles(text, "prism_request_duration_seconds", 'method="Queue/Ack"', [0.5]), undefined);
});
