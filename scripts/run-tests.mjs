// Runs every compiled test file under dist/test with Node's own test runner.
// Usage: node scripts/run-tests.mjs [filter...]  (filters match file paths)
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { spawnSync } from "node:child_process";

const root = new URL("..", import.meta.url).pathname;
const filters = process.argv.slice(2);
const files = [];
(function walk(dir) {
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) walk(p);
    else if (p.endsWith(".test.js")) files.push(relative(root, p));
  }
})(join(root, "dist/test"));
const selected = files.filter((f) => !filters.length || filters.some((x) => f.includes(x))).sort();
if (!selected.length) {
  console.error("no test files matched");
  process.exit(1);
}
// Test files run two at a time (PRISM_TEST_CONCURRENCY): most of their time is spent waiting on
// backends, processes and sockets, so two files share this 2-core machine without slowing each
// other much, and the suite stays inside CI's 15 minutes. Every file uses its own names, ports and
// prefixes, so files never see each other's data.
const concurrency = Math.max(1, Number(process.env.PRISM_TEST_CONCURRENCY ?? 2) || 1);
// A file (and a test without its own timeout) gets 3 minutes; PRISM_BIG_TESTS=1 adds the 5 GiB Claim
// Check transfers (minutes each), so the limit is then 30 minutes.
const timeoutMs = process.env.PRISM_BIG_TESTS === "1" ? 1_800_000 : 180_000;
const r = spawnSync(process.execPath, ["--test", "--test-reporter=spec", `--test-timeout=${timeoutMs}`, `--test-concurrency=${concurrency}`, ...selected], { cwd: root, stdio: "inherit" });
process.exit(r.status ?? 1);
