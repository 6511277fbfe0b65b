/**
 * The SDK works standalone, as a user installs it (issue 16): `npm pack`
 * clients/typescript, `npm install` the tarball offline into a fresh project
 * outside the repository, then an ESM consumer (import), a CommonJS consumer
 * (require) and TypeScript consumers (ESM .mts and CommonJS .cts, type-checked
 * with `tsc` against the installed types, a deliberate type error must fail)
 * each call a live Prism started in-process (ws, grpc and http: one transport each).
 *
 * Offline: the tarball's own dependencies must come from the npm cache. When the
 * cache cannot serve them (ENOTCACHED), the project is seeded with the
 * repository's installed copies of exactly the SDK's dependency closure (npm then
 * accepts them as satisfying the tarball's ranges); the install itself is still
 * npm's, offline. If npm still cannot install, the test is skipped with the reason
 * (fails where PRISM_REQUIRE_TOOLS=1 / CI=true: test/helpers/required-tools.ts).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { ROOT } from "./serve-process.js";
import { startServer, type RunningServer } from "../../src/server.js";
import { defaultConfig } from "../../src/config/load.js";
import { skipOrFail } from "../helpers/required-tools.js";

const run = promisify(execFile);
const SDK = join(ROOT, "clients/typescript");
const TSC = join(ROOT, "node_modules/typescript/bin/tsc");
const NPM_ENV = { ...process.env, npm_config_audit: "false", npm_config_fund: "false", npm_config_update_notifier: "false" };

let server: RunningServer;
let dir: string;

before(async () => {
  server = await startServer({ config: defaultConfig(), host: "127.0.0.1", grpcPort: 0, httpPort: 0, log: () => {} });
  dir = mkdtempSync(join(tmpdir(), "prism-sdk-pack-"));
});
after(async () => {
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The SDK's runtime dependencies and theirs, as installed in the repository. */
function dependencyClosure(): string[] {
  const seen = new Set<string>();
  const todo = Object.keys((JSON.parse(readFileSync(join(SDK, "package.json"), "utf8")) as { dependencies?: object }).dependencies ?? {});
  while (todo.length) {
    const name = todo.pop()!;
    if (seen.has(name)) continue;
    seen.add(name);
    const pj = join(ROOT, "node_modules", name, "package.json");
    if (!existsSync(pj)) continue;
    todo.push(...Object.keys((JSON.parse(readFileSync(pj, "utf8")) as { dependencies?: object }).dependencies ?? {}));
  }
  return [...seen];
}

async function npmInstallOffline(project: string, tarball: string): Promise<{ ok: true; how: string } | { ok: false; why: string }> {
  const install = () => run("npm", ["install", "--offline", "--no-audit", "--no-fund", "--ignore-scripts", tarball], { cwd: project, env: NPM_ENV, timeout: 60_000 });
  try {
    await install();
    return { ok: true, how: "from the npm cache" };
  } catch (e) {
    const msg = String((e as { stderr?: string }).stderr ?? e);
    if (!/ENOTCACHED/.test(msg)) return { ok: false, why: msg.slice(0, 500) };
  }
  for (const name of dependencyClosure()) {
    const from = join(ROOT, "node_modules", name);
    if (!existsSync(from)) continue;
    mkdirSync(dirname(join(project, "node_modules", name)), { recursive: true });
    cpSync(from, join(project, "node_modules", name), { recursive: true, dereference: true });
  }
  try {
    await install();
    return { ok: true, how: "with the dependency closure seeded from the repository (npm cache lacks it)" };
  } catch (e) {
    return { ok: false, why: String((e as { stderr?: string }).stderr ?? e).slice(0, 500) };
  }
}

const CONSUMER_BODY = (tag: string) => `
  const prism = await connect(process.env.PRISM_ADDR, { timeoutMs: 5000, autoIdempotency: true });
  const key = "pack/${tag}/" + process.pid;
  await prism.kv("default").set(key, "${tag}");
  const value = Buffer.from(await prism.kv("default").get(key)).toString();
  let code = -1;
  try { await prism.kv("no-such-namespace").get("k"); } catch (e) { if (e instanceof PrismError) code = e.code; }
  const state = prism.state;
  await prism.close();
  console.log(JSON.stringify({ value, notFound: code === Code.NOT_FOUND, state, closed: prism.state }));
`;

test("npm pack → offline install in a fresh project → ESM, CommonJS and TypeScript consumers call a live Prism", { timeout: 120_000 }, async (t) => {
  let t0 = Date.now();
  const step = (what: string) => {
    console.log(`# ${what}: ${Date.now() - t0} ms`);
    t0 = Date.now();
  };
  const packed = await run("npm", ["pack", "--pack-destination", dir], { cwd: SDK, env: NPM_ENV, timeout: 60_000 });
  const tarball = join(dir, packed.stdout.trim().split("\n").pop()!);
  assert.ok(existsSync(tarball), `npm pack wrote ${tarball}`);

  const project = join(dir, "app");
  mkdirSync(project);
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "prism-sdk-consumer", version: "1.0.0", private: true }));
  const installed = await npmInstallOffline(project, tarball);
  if (!installed.ok) return skipOrFail(t, `npm cannot install the packed SDK offline: ${installed.why}`);
  step(`npm pack + install of ${tarball.split("/").pop()} offline ${installed.how}`);
  const pkgDir = join(project, "node_modules/@prism/client");
  assert.ok(existsSync(join(pkgDir, "dist/cjs/index.js")), "the tarball ships the CommonJS build");
  assert.ok(!readdirSync(join(pkgDir, "dist")).includes(".tsbuildinfo"), "no build metadata in the tarball");

  const env = (addr: string) => ({ ...process.env, PRISM_ADDR: addr });
  const ws = `ws://127.0.0.1:${server.httpPort}`;
  const grpc = `grpc://127.0.0.1:${server.grpcPort}`;
  const http = `http://127.0.0.1:${server.httpPort}`;
  const expect = (out: string, tag: string) =>
    assert.deepEqual(JSON.parse(out.trim().split("\n").pop()!), { value: tag, notFound: true, state: "ready", closed: "closed" });

  // ESM: import
  writeFileSync(join(project, "esm.mjs"), `import { connect, Code, PrismError } from "@prism/client";\n${CONSUMER_BODY("esm")}`);
  expect((await run(process.execPath, ["esm.mjs"], { cwd: project, env: env(ws), timeout: 20_000 })).stdout, "esm");

  // CommonJS: require (resolves to dist/cjs through the "require" condition)
  writeFileSync(
    join(project, "cjs.cjs"),
    `const { connect, Code, PrismError } = require("@prism/client");\n` +
      `if (!require.resolve("@prism/client").includes("/dist/cjs/")) throw new Error("require resolved " + require.resolve("@prism/client"));\n` +
      `(async () => {${CONSUMER_BODY("cjs")}})().catch((e) => { console.error(e); process.exit(1); });\n`,
  );
  expect((await run(process.execPath, ["cjs.cjs"], { cwd: project, env: env(grpc), timeout: 20_000 })).stdout, "cjs");
  step("ESM and CommonJS consumers");

  // TypeScript: ESM (.mts) and CommonJS (.cts) consumers, type-checked against the installed declarations.
  const typed = `
import { connect, Code, PrismError, type Prism, type ConnectionState, type CallOptions, type QueueMessage } from "@prism/client";
export async function main(addr: string, tag: string): Promise<void> {
  const states: ConnectionState[] = [];
  const prism: Prism = await connect(addr, { timeoutMs: 5000, reconnect: { initialDelayMs: 50, maxDelayMs: 1000, jitter: 0.2 }, onState: (s) => states.push(s), token: async () => "t", apiKey: "k" });
  prism.on("state", (s: ConnectionState) => void s);
  const call: CallOptions = { signal: new AbortController().signal, timeoutMs: 2000 };
  const kv = prism.kv("default");
  await kv.set("pack/" + tag, tag, { idempotencyKey: "k-" + tag + "-" + process.pid, ttl: 60, ...call });
  const value: Uint8Array | null = await kv.get("pack/" + tag, call);
  const msgs: QueueMessage[] = await prism.queue("default").dequeue("pack-" + tag, { wait: 0, ...call });
  let code = -1;
  try { await prism.kv("no-such-namespace").get("k"); } catch (e) { if (e instanceof PrismError) code = e.code; }
  const state = prism.state;
  await prism.close();
  console.log(JSON.stringify({ value: Buffer.from(value!).toString(), notFound: code === Code.NOT_FOUND && msgs.length === 0 && states[0] === "connecting", state, closed: prism.state }));
}
`;
  writeFileSync(join(project, "lib.mts"), typed);
  writeFileSync(join(project, "main.mts"), `import { main } from "./lib.mjs";\nawait main(process.env.PRISM_ADDR!, "ts-esm");\n`);
  writeFileSync(join(project, "libc.cts"), typed);
  writeFileSync(join(project, "main.cts"), `import { main } from "./libc.cjs";\nmain(process.env.PRISM_ADDR!, "ts-cjs").catch((e) => { console.error(e); process.exit(1); });\n`);
  const tsconfig = (files: string[], outDir: string) => ({
    compilerOptions: { module: "nodenext", moduleResolution: "nodenext", target: "es2022", strict: true, outDir, typeRoots: [join(ROOT, "node_modules/@types")], types: ["node"], skipLibCheck: false },
    files,
  });
  // The types are real (not `any`): a misuse is a compile error, and the only one (one tsc run, the
  // library declarations checked too: skipLibCheck off).
  writeFileSync(join(project, "bad.mts"), `import { connect } from "@prism/client";\nconst p = await connect("ws://x");\nconst n: number = await p.kv("d").get("k");\nvoid n;\n`);
  writeFileSync(join(project, "tsconfig.json"), JSON.stringify(tsconfig(["main.mts", "main.cts", "bad.mts"], "out")));
  const diagnostics = await run(process.execPath, [TSC, "-p", "tsconfig.json"], { cwd: project, timeout: 60_000 }).then(
    () => "",
    (e: { stdout?: string }) => e.stdout ?? "tsc failed without output",
  );
  const errors = diagnostics.split("\n").filter((l) => /error TS\d+/.test(l));
  assert.equal(errors.length, 1, `exactly the deliberate type error:\n${diagnostics}`);
  assert.match(errors[0]!, /^bad\.mts\(3,7\): error TS2322/, diagnostics);
  step("tsc");
  expect((await run(process.execPath, ["out/main.mjs"], { cwd: project, env: env(http), timeout: 20_000 })).stdout, "ts-esm");
  expect((await run(process.execPath, ["out/main.cjs"], { cwd: project, env: env(ws), timeout: 20_000 })).stdout, "ts-cjs");
  step("TypeScript consumers");
});
