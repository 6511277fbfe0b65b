/**
 * Tests that need a tool outside npm (Debian's python3-grpcio, python3-protobuf,
 * python3-pytest, protoc; an offline `npm install`) skip with a printed reason
 * when it is missing, except where the tools are required: PRISM_REQUIRE_TOOLS=1
 * (.ci/run sets it; CI=true implies it unless PRISM_REQUIRE_TOOLS=0). There a
 * missing tool fails the test, so CI cannot go green without running it.
 */
import assert from "node:assert/strict";
import type { TestContext } from "node:test";

export const TOOLS_REQUIRED = (process.env.PRISM_REQUIRE_TOOLS || (process.env.CI === "true" ? "1" : "0")) === "1";

/** Skips `t` saying why, or, where the tools are required, fails it saying why. */
export function skipOrFail(t: TestContext, reason: string): void {
  if (TOOLS_REQUIRED) {
    assert.fail(`${reason}\n(required: PRISM_REQUIRE_TOOLS=1 or CI=true makes a missing tool a failure, not a skip; scripts/install-tools.sh installs the Debian tools)`);
  }
  console.log(`# skipped: ${reason}`);
  t.skip(reason);
}
