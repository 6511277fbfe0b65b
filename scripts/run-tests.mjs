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
const r = spawnSync(process.execPath, ["--test", "--test-reporter=spec", "--test-timeout=180000", ...selected], { cwd: root, stdio: "inherit" });
process.exit(r.status ?? 1);
