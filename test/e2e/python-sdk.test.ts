// The Python SDK (clients/python, package prism_client) against a live Prism:
// its pytest suite (clients/python/tests) checks the acceptance semantics of
// KeyValue, PubSub, Queue, Stream and Admin through the sync and the asyncio
// client (and Claim Check streaming on claim-check namespaces), on memstore namespaces (and a Redis one when Redis is reachable),
// on both gRPC servers; and the credentials it sends (API key, JWT bearer)
// against a Prism with an `auth:` block.
// Debian's /usr/bin/python3 with python3-grpcio, python3-protobuf and
// python3-pytest runs it (scripts/install-tools.sh installs them); without
// them the test is skipped and says why, or fails where PRISM_REQUIRE_TOOLS=1 /
// CI=true (test/helpers/required-tools.ts).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { createHash, generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer, type RunningServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { ROOT } from "./serve-process.js";
import { skipOrFail as skip } from "../helpers/required-tools.js";

// Debian's interpreter (`python3` on PATH may be a pyenv shim without the Debian packages).
const PYTHON = process.env.PRISM_TEST_PYTHON || "/usr/bin/python3";
const SDK = join(ROOT, "clients/python");
const NS = "py-mem";
const NS_KVONLY = "py-kvonly";
const NS_REDIS = "py-redis";
/** Claim Check: payloads on the filesystem (server.data_dir/payloads), claims fronted by a queue resp. keys. */
const NS_CLAIM = "py-claim";
const NS_CLAIM_KV = "py-claim-kv";

/** Why the suite cannot run here, or undefined when it can. */
const pythonMissing: string | undefined = (() => {
  if (!existsSync(PYTHON)) return `${PYTHON} is missing (apt-get install python3 python3-grpcio python3-protobuf python3-pytest)`;
  const r = spawnSync(PYTHON, ["-c", "import grpc, google.protobuf, pytest"], { encoding: "utf8" });
  if (r.status !== 0) return `${PYTHON} lacks grpc, protobuf or pytest (apt-get install python3-grpcio python3-protobuf python3-pytest): ${(r.stderr || "").trim().split("\n").pop()}`;
  return undefined;
})();

function redisReachable(): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect({ host: "127.0.0.1", port: 6379 });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(500, () => done(false));
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
  });
}

/**
 * An `auth:` block with one API key and one JWT issuer (an ES256 key in a JWKS
 * file), both mapped to a role that may read and write py-* namespaces but not
 * administer; the key and a token minted for it, for the suite's test_auth.py.
 */
function authSetup(dir: string): { auth: object; apiKey: string; jwt: string } {
  mkdirSync(dir, { recursive: true });
  const apiKey = randomBytes(18).toString("base64url");
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwksFile = join(dir, "jwks.json");
  writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...publicKey.export({ format: "jwk" }), kid: "py-sdk", alg: "ES256", use: "sig" }] }));
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const unsigned = `${b64({ alg: "ES256", kid: "py-sdk", typ: "JWT" })}.${b64({ iss: "prism-py-sdk-test", aud: "prism", sub: "py-user", iat: now, exp: now + 3600 })}`;
  const jwt = `${unsigned}.${sign("sha256", Buffer.from(unsigned), { key: privateKey, dsaEncoding: "ieee-p1363" }).toString("base64url")}`;
  const auth = {
    jwt: { issuer: "prism-py-sdk-test", audience: "prism", jwks_file: jwksFile, algorithms: ["ES256"] },
    api_keys: [{ name: "py-sdk", hash: `sha256:${createHash("sha256").update(apiKey).digest("hex")}`, roles: ["rw"] }],
    roles: { rw: [{ namespaces: ["py-*"], permissions: ["read", "write"] }] },
    grants: [{ role: "rw", principals: ["jwt:py-user"] }],
  };
  return { auth, apiKey, jwt };
}

describe("Python SDK (clients/python)", () => {
  test("the package's descriptor set is the committed contract (byte-identical)", () => {
    const shipped = readFileSync(join(SDK, "prism_client/descriptor.binpb"));
    const contract = readFileSync(join(ROOT, "proto/prism/v1/descriptor.binpb"));
    assert.ok(shipped.equals(contract), "clients/python/prism_client/descriptor.binpb is stale: cp proto/prism/v1/descriptor.binpb clients/python/prism_client/");
  });

  const IMPLS = ["http2", "grpc-js"] as const;
  const servers = new Map<string, RunningServer>();
  let authed: { server: RunningServer; apiKey: string; jwt: string } | undefined;
  let redis = false;
  const dataDir = mkdtempSync(join(tmpdir(), "prism-python-sdk-"));

  before(async () => {
    if (pythonMissing) return;
    redis = await redisReachable();
    for (const impl of IMPLS) {
      const namespaces: unknown[] = [
        // max_deliveries 2 and a 1 s claim timeout keep the dead-letter and redelivery cases short.
        { name: NS, backend: { type: "memstore" }, limits: { max_deliveries: 2, stream_claim_timeout_seconds: 1 } },
        { name: NS_KVONLY, primitives: ["keyvalue"], backend: { type: "memstore" } },
        { name: NS_CLAIM, pattern: "claim-check", slots: { payloads: { type: "filesystem", root: "payloads" }, messages: { type: "memstore" } }, options: { fronts: "queue" } },
        { name: NS_CLAIM_KV, pattern: "claim-check", slots: { payloads: { type: "filesystem", root: "payloads" }, messages: { type: "memstore" } }, options: { fronts: "keyvalue" } },
      ];
      if (redis) {
        namespaces.push({
          name: NS_REDIS,
          primitives: ["keyvalue"],
          backend: { type: "redis", url: "redis://127.0.0.1:6379", key_prefix: `prism-py-sdk-${impl}-${process.pid}-${Date.now()}:` },
        });
      }
      const config = await validateConfig({ server: { data_dir: join(dataDir, impl), grpc_server: impl }, namespaces }, `python-sdk-${impl}`);
      servers.set(impl, await startServer({ config, grpcPort: 0, httpPort: 0, host: "127.0.0.1", log: () => {} }));
    }
    const authDir = join(dataDir, "auth");
    const { auth, apiKey, jwt } = authSetup(authDir);
    const config = await validateConfig(
      { server: { data_dir: authDir, allowed_paths: [authDir] }, auth, namespaces: [{ name: NS, backend: { type: "memstore" } }] },
      "python-sdk-auth",
    );
    authed = { server: await startServer({ config, grpcPort: 0, httpPort: 0, host: "127.0.0.1", log: () => {} }), apiKey, jwt };
  });

  after(async () => {
    for (const s of [...servers.values(), authed?.server]) await s?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  /** pytest on the suite against one server; asynchronous, since the in-process server must keep serving meanwhile. */
  function pytest(impl: string, port: number, extra: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string }> {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      ...extra,
      PRISM_ADDR: `127.0.0.1:${port}`,
      PRISM_TEST_NS: NS,
      PRISM_TEST_NS_KVONLY: NS_KVONLY,
      PRISM_TEST_KV_NAMESPACES: redis ? `${NS},${NS_REDIS}` : NS,
      PRISM_TEST_NS_CLAIM: NS_CLAIM,
      PRISM_TEST_NS_CLAIM_KV: NS_CLAIM_KV,
      PRISM_TEST_CLAIM_PAYLOADS_DIR: join(dataDir, impl, "payloads"),
      PYTHONDONTWRITEBYTECODE: "1", // leave no __pycache__ in the tree (-p no:cacheprovider: no .pytest_cache)
    };
    delete env.PYTHONPATH; // conftest.py puts clients/python first
    return new Promise((resolve) => {
      execFile(
        PYTHON,
        ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "clients/python/tests"],
        { cwd: ROOT, env, timeout: 120_000, maxBuffer: 16 << 20 },
        (err, stdout, stderr) => {
          const code = err ? (err as { code?: unknown }).code : 0;
          resolve({ code: typeof code === "number" ? code : null, out: `${stdout}${stderr}` });
        },
      );
    });
  }

  test("pytest clients/python/tests passes against a live Prism, on both gRPC servers (sync and asyncio clients)", async (t) => {
    if (pythonMissing) return skip(t, pythonMissing);
    if (!redis) console.log("# Redis at 127.0.0.1:6379 unreachable: the KeyValue tests run on memstore only");
    // Both runs at once: the suite waits on leases and TTLs, not on the CPU.
    // The credential tests (test_auth.py) once, with the http2 run.
    const authEnv = { PRISM_TEST_AUTH_ADDR: `127.0.0.1:${authed!.server.grpcPort}`, PRISM_TEST_API_KEY: authed!.apiKey, PRISM_TEST_JWT: authed!.jwt };
    const runs = await Promise.all(IMPLS.map((impl) => pytest(impl, servers.get(impl)!.grpcPort, impl === "http2" ? authEnv : {})));
    for (const [i, r] of runs.entries()) {
      const impl = IMPLS[i];
      assert.equal(r.code, 0, `pytest against server.grpc_server ${impl} failed (exit ${r.code}):\n${r.out}`);
      const summary = /(\d+) passed/.exec(r.out);
      assert.ok(summary && Number(summary[1]) >= 40, `fewer tests than expected ran against ${impl}:\n${r.out}`);
      const skipped = r.out.trim().split("\n").filter((line) => line.startsWith("SKIPPED"));
      for (const line of skipped) console.log(`# ${impl}: ${line}`);
      if (impl === "http2") assert.ok(!skipped.some((l) => l.includes("test_auth.py")), `the credential tests did not run:\n${r.out}`);
      assert.ok(!skipped.some((l) => l.includes("test_claim_check.py")), `the Claim Check tests did not run against ${impl}:\n${r.out}`);
      console.log(`# ${impl}: ${r.out.trim().split("\n").pop()}`);
    }
  });
});
