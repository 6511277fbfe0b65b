// The README's backend × interface matrix must match what the drivers claim.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

test("README backend matrix is generated from the current driver claims", () => {
  const script = fileURLToPath(new URL("../../../scripts/gen-backend-matrix.mjs", import.meta.url));
  const r = spawnSync(process.execPath, [script, "--check"], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr || r.stdout);
});
