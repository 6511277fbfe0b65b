// The Python SDK across a Prism restart (sync and asyncio clients): a read, and a write carrying
// an idempotency key, issued while Prism is down are sent again once the channel reconnects and
// answer after the restart; a write without a key, and any call on a client with retry=False,
// raise Unavailable at once (they may have taken effect, so the SDK does not repeat them).
// The Python side is clients/python/tests/scripts/retry_probe.py; this test kills and restarts
// `prism serve` on the same gRPC port between its steps.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { ROOT, freePort, startPrism, type PrismProcess } from "./serve-process.js";
import { skipOrFail } from "../helpers/required-tools.js";
import { RETRY } from "@prism/client";

const PYTHON = process.env.PRISM_TEST_PYTHON || "/usr/bin/python3";
const PROBE = join(ROOT, "clients/python/tests/scripts/retry_probe.py");

const pythonMissing: string | undefined = (() => {
  if (!existsSync(PYTHON)) return `${PYTHON} is missing (apt-get install python3 python3-grpcio python3-protobuf)`;
  const r = spawnSync(PYTHON, ["-c", "import grpc, google.protobuf"], { encoding: "utf8" });
  if (r.status !== 0) return `${PYTHON} lacks grpc or protobuf (apt-get install python3-grpcio python3-protobuf)`;
  return undefined;
})();

describe("Python SDK: retries across a Prism restart", { timeout: 90_000 }, () => {
  test("the Python SDK's table of retryable calls is the TypeScript SDK's", (t) => {
    if (pythonMissing) return skipOrFail(t, pythonMissing);
    const r = spawnSync(PYTHON, ["-c", "import json, sys; sys.path.insert(0, 'clients/python'); from prism_client._options import RETRY; print(json.dumps(RETRY, sort_keys=True))"], { cwd: ROOT, encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const sorted = (o: Record<string, string>) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1)));
    assert.deepEqual(JSON.parse(r.stdout), sorted({ ...RETRY }));
  });

  for (const mode of ["sync", "async"] as const) {
    test(`${mode} client: reads and keyed writes are retried after the restart; unkeyed writes and retry=False raise Unavailable`, async (t) => {
      if (pythonMissing) return skipOrFail(t, pythonMissing);
      const grpcPort = await freePort();
      const args = ["--grpc-port", String(grpcPort), "--http-port", "0"];
      let prism: PrismProcess | undefined = await startPrism(args);
      const env: NodeJS.ProcessEnv = { ...process.env, PRISM_ADDR: `127.0.0.1:${grpcPort}` };
      delete env.PYTHONPATH;
      const py = spawn(PYTHON, [PROBE, mode], { cwd: ROOT, env, stdio: ["pipe", "pipe", "pipe"] });
      let stderr = "";
      py.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number | null>((r) => py.once("exit", (code) => r(code)));
      const lines = createInterface({ input: py.stdout })[Symbol.asyncIterator]();
      const next = async (): Promise<string> => {
        const r = await lines.next();
        if (r.done) throw new Error(`the probe ended early (exit ${await exited}): ${stderr.slice(-2000)}`);
        return r.value;
      };
      const seen: Record<string, string> = {};
      const step = async (name: string): Promise<string> => {
        const line = await next();
        assert.ok(line.startsWith(`${name}`), `expected "${name} …", got ${JSON.stringify(line)} (stderr: ${stderr.slice(-1000)})`);
        seen[name] = line.slice(name.length + 1);
        return seen[name]!;
      };
      try {
        await step("ready");
        await prism.stop("SIGKILL");
        prism = undefined;
        py.stdin.write("down\n");
        assert.match(await step("nokey"), /^Unavailable -$/, "a Set without a key is not repeated");
        assert.match(await step("noretry"), /^Unavailable -$/, "retry=False: the Get raises");
        await step("waiting");
        // Both calls made their first attempt against the dead port; let them sit in their retry, then come back.
        await new Promise((r) => setTimeout(r, 500));
        prism = await startPrism(args);
        assert.equal(await step("get"), "ok None", "the Get was answered by the restarted Prism (memstore: the key is gone)");
        assert.match(await step("keyed"), /^ok \d+$/, "the keyed Set was applied after the restart");
        assert.equal(await step("after"), "ok b'y'", "and its value is there");
        assert.equal(await exited, 0, stderr);
        t.diagnostic(`${mode}: ${JSON.stringify(seen)}`);
      } finally {
        py.kill();
        await prism?.stop();
      }
    });
  }
});
