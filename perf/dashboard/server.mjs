#!/usr/bin/env node
// `npm run perf:dashboard [-- --port P --results DIR]`: serves perf/dashboard/index.html
// with every perf/results/*.json inlined (no CDN, no build step), and /results.json.
import { createServer } from "node:http";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const HERE = fileURLToPath(new URL(".", import.meta.url));
export const DEFAULT_RESULTS = join(HERE, "..", "results");

/** Every result file of `dir`, oldest first, each with its file name. */
export function loadResults(dir) {
  let files = [];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith(".json"));
  } catch {
    return [];
  }
  const out = [];
  for (const f of files) {
    try {
      const r = JSON.parse(readFileSync(join(dir, f), "utf8"));
      if (r && Array.isArray(r.rows)) out.push({ file: f, ...r });
    } catch {
      /* a partial or foreign file: skip it */
    }
  }
  return out.sort((a, b) => String(a.date).localeCompare(String(b.date)));
}

/** Starts the dashboard server. Resolves with its port and a close(). */
export function startDashboard({ port = 0, host = "127.0.0.1", resultsDir = DEFAULT_RESULTS } = {}) {
  const page = readFileSync(join(HERE, "index.html"), "utf8");
  const server = createServer((req, res) => {
    const url = (req.url ?? "/").split("?")[0];
    if (url === "/" || url === "/index.html") {
      const data = JSON.stringify(loadResults(resultsDir)).replace(/</g, "\\u003c");
      const body = page.replace("__RESULTS__", () => data);
      res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" }).end(body);
    } else if (url === "/results.json") {
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(loadResults(resultsDir)));
    } else res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      resolve({ port: server.address().port, close: () => new Promise((r) => server.close(() => r())) });
    });
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({ options: { port: { type: "string" }, host: { type: "string" }, results: { type: "string" } } });
  const d = await startDashboard({ port: Number(values.port ?? process.env.PERF_DASHBOARD_PORT ?? 8990), host: values.host ?? "127.0.0.1", resultsDir: values.results ?? DEFAULT_RESULTS });
  console.log(`perf dashboard: http://${values.host ?? "127.0.0.1"}:${d.port}/  (results: ${values.results ?? DEFAULT_RESULTS})`);
}
