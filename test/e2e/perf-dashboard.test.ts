/**
 * The performance dashboard (perf/dashboard): served on port 0 over two recorded
 * results, loaded in headless Chromium; the dumped DOM must hold one chart per
 * scenario with one point per run carrying the recorded value.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { ROOT } from "./serve-process.js";

interface Dashboard {
  port: number;
  close(): Promise<void>;
}
type StartDashboard = (o: { port?: number; resultsDir?: string }) => Promise<Dashboard>;

const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].find((p) => existsSync(p));

function measurement(opsPerSec: number, p50: number, p99: number) {
  return { ops: opsPerSec * 5, errors: 0, opsPerSec, latency: { p50, p90: p99 / 2, p99, p999: p99 * 2, max: p99 * 3 }, cpuUsPerOp: 8, serverBusy: 1, clientBusy: 1 };
}

function result(date: string, commit: string, wsRatio: number, httpRatio: number, wsP99: number, queueOps: number) {
  return {
    version: 1,
    date,
    commit,
    dirty: false,
    node: "v20",
    machine: { cpus: 2, model: "test", loadavg: [0, 0, 0] },
    secondsPerMeasurement: 5,
    rows: [
      { id: "ws-kv-get-memstore", title: "KeyValue Get, WebSocket", kind: "throughput", prism: measurement(100_000 * wsRatio, 1, wsP99), prismRssMb: 100, baselineName: "ws echo", baseline: measurement(100_000, 1, 2), ratio: wsRatio, target: ">=150K ops/s and >=0.75x ws echo", met: true, command: "x" },
      { id: "http-kv-get-memstore", title: "KeyValue Get, HTTP", kind: "throughput", prism: measurement(60_000 * httpRatio, 1, 3), prismRssMb: 100, baselineName: "node:http hello", baseline: measurement(60_000, 1, 2), ratio: httpRatio, target: ">=0.60x node:http hello", met: true, command: "x" },
      { id: "ws-queue-memstore", title: "Queue, WebSocket", kind: "throughput", prism: measurement(queueOps, 2, 9), prismRssMb: 100, baselineName: "-", command: "x" },
      { id: "idle-rss-per-worker", title: "Idle RSS", kind: "memory", prism: measurement(0, -1, -1), prismRssMb: 80, baselineName: "-", target: "<=60 MB", met: false, command: "x" },
    ],
  };
}

function dumpDom(url: string, profile: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      CHROMIUM!,
      ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run", `--user-data-dir=${profile}`, "--dump-dom", url],
      { timeout: 90_000, maxBuffer: 1 << 24 },
      (err, stdout, stderr) => (err ? reject(new Error(`chromium failed: ${err.message}\n${stderr}`)) : resolve(stdout)),
    );
  });
}

/** The inner markup of the chart svg of `scenario` / `metric`. */
function chartOf(dom: string, scenario: string, metric: string): string {
  const m = new RegExp(`<svg[^>]*data-scenario="${scenario}"[^>]*data-metric="${metric}"[^>]*>([\\s\\S]*?)</svg>`).exec(dom);
  assert.ok(m, `no ${metric} chart for ${scenario}`);
  return m[1]!;
}

const pointValues = (svg: string, series: string) => [...svg.matchAll(new RegExp(`<circle[^>]*class="point"[^>]*data-series="${series}"[^>]*data-value="([^"]+)"`, "g"))].map((m) => Number(m[1]));

test("perf dashboard renders ratio and p99 charts for every recorded run", { skip: CHROMIUM ? false : "Chromium is not installed (apt-get install -y chromium)", timeout: 120_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "prism-dash-"));
  const { startDashboard } = (await import(pathToFileURL(join(ROOT, "perf/dashboard/server.mjs")).href)) as { startDashboard: StartDashboard };
  const dash = await startDashboard({ port: 0, resultsDir: join(dir, "results") });
  try {
    const results = join(dir, "results");
    await import("node:fs").then((fs) => fs.mkdirSync(results));
    // Written out of order: the dashboard sorts runs by date.
    writeFileSync(join(results, "b.json"), JSON.stringify(result("2025-02-01T10:00:00.000Z", "bbbbbbb", 0.9, 0.7, 7.5, 40_000)));
    writeFileSync(join(results, "a.json"), JSON.stringify(result("2025-01-01T10:00:00.000Z", "aaaaaaa", 0.8, 0.65, 6.25, 30_000)));
    writeFileSync(join(results, "broken.json"), "{ not json");

    const dom = await dumpDom(`http://127.0.0.1:${dash.port}/`, join(dir, "profile"));
    assert.match(dom, /data-rendered="2"/, "the page did not render both runs");

    const ws = chartOf(dom, "ws-kv-get-memstore", "ratio");
    assert.deepEqual(pointValues(ws, "ratio"), [0.8, 0.9]);
    assert.match(ws, /<path[^>]*d="M[\d.]+,[\d.]+ L[\d.]+,[\d.]+"/, "the ratio line is missing");
    assert.deepEqual(pointValues(chartOf(dom, "http-kv-get-memstore", "ratio"), "ratio"), [0.65, 0.7]);
    assert.match(chartOf(dom, "http-kv-get-memstore", "ratio"), /class="guide"/, "the 0.60x target line is missing");

    const lat = chartOf(dom, "ws-kv-get-memstore", "p99");
    assert.deepEqual(pointValues(lat, "Prism p99"), [6.25, 7.5]);
    assert.deepEqual(pointValues(lat, "ws echo p99"), [2, 2]);

    // A throughput row without a baseline (queue) is charted as absolute ops/s, not as an empty ratio chart.
    assert.doesNotMatch(dom, /<svg[^>]*data-scenario="ws-queue-memstore"[^>]*data-metric="ratio"/);
    assert.deepEqual(pointValues(chartOf(dom, "ws-queue-memstore", "ops"), "Prism ops/s"), [30_000, 40_000]);
    assert.match(dom, /<td>ws-queue-memstore<\/td>/);

    // Memory rows have no ratio chart but appear in the latest-run table.
    assert.doesNotMatch(dom, /data-scenario="idle-rss-per-worker"/);
    assert.match(dom, /<td>idle-rss-per-worker<\/td>/);
    assert.match(dom, /missed: &lt;=60 MB/);
  } finally {
    await dash.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
