/**
 * The node flags of serving processes: cluster workers add the ones the
 * primary's own execArgv does not set, and `npm start` passes the same ones
 * to a single-process server.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { SERVER_NODE_FLAGS, serverNodeFlags } from "../../src/workers/node-flags.js";
import { ROOT } from "../e2e/serve-process.js";

test("workers get the server flags the user did not set", () => {
  assert.deepEqual(serverNodeFlags([]), [...SERVER_NODE_FLAGS]);
  assert.deepEqual(serverNodeFlags(["--cpu-prof"]), [...SERVER_NODE_FLAGS]);
  assert.deepEqual(serverNodeFlags(["--v8-pool-size=4"]), [], "the user's value wins");
  assert.deepEqual(serverNodeFlags(["--v8-pool-size", "4"]), []);
  assert.deepEqual(serverNodeFlags(["--v8-pool-size-x=4"]), [...SERVER_NODE_FLAGS], "a flag with a longer name is another flag");
});

test("npm start passes the server flags to a single-process server", () => {
  const start = (JSON.parse(readFileSync(`${ROOT}/package.json`, "utf8")) as { scripts: Record<string, string> }).scripts.start!;
  for (const flag of SERVER_NODE_FLAGS) assert.ok(start.split(" ").includes(flag), `npm start: ${start}`);
});
