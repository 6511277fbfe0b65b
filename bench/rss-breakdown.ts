/**
 * Where idle RSS goes: each step imports one more group of the modules Prism
 * loads at start, in a fresh Node process, and prints RSS and V8 heap after a
 * full GC. The last step starts the real server (memstore, --workers 1) and
 * reads it at 2 s and once V8's memory reducer has run (15 s idle).
 *   node dist/bench/rss-breakdown.js
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { ROOT, memstoreYaml, startPrism } from "./lib/spawn.js";
import { SERVER_NODE_FLAGS } from "../src/workers/node-flags.js";
import { sleep } from "./lib/ws-load.js";

const dist = (p: string) => pathToFileURL(join(ROOT, "dist", p)).href;

/** Cumulative: step i imports everything of steps 0..i. Every step runs with the server's node flags. */
export const STEPS: { name: string; imports: string[] }[] = [
  { name: "node (empty process)", imports: [] },
  { name: "+ node:http, node:http2, node:cluster, node:worker_threads (built-ins)", imports: ["node:http", "node:http2", "node:cluster", "node:worker_threads"] },
  // CommonJS packages are require()d, as the server does (src/core/require-cjs.ts).
  { name: "+ ws, bufferutil", imports: ["cjs:ws", "cjs:bufferutil"] },
  { name: "+ protobufjs + generated codecs (src/gen/prism.js)", imports: [dist("src/gen/prism.js")] },
  { name: "+ prom-client", imports: ["cjs:prom-client"] },
  { name: "+ pino", imports: ["cjs:pino"] },
  // Not loaded by a serving process: grpc-js (only with server.grpc_server: grpc-js), zod and yaml (config is validated in a child process, or by the primary).
  { name: "+ all Prism modules a server loads (dist/src/server.js)", imports: [dist("src/server.js")] },
  { name: "+ memstore driver", imports: [dist("src/backends/memstore/index.js")] },
];

function measure(imports: string[]): Mem {
  const load = (m: string) => (m.startsWith("cjs:") ? `Promise.resolve(require(${JSON.stringify(m.slice(4))}))` : `import(${JSON.stringify(m)})`);
  const code = `const require = (await import("node:module")).createRequire(${JSON.stringify(pathToFileURL(join(ROOT, "package.json")).href)});
${imports.map((m, i) => `await ${load(m)}.then((x) => (globalThis.k${i} = x));`).join("\n")}
for (let i = 0; i < 3; i++) { global.gc(); await new Promise((r) => setTimeout(r, 50)); }
const st = (await import("node:fs")).readFileSync("/proc/self/status", "utf8");
const kb = (k) => Number(st.split("\\n").find((l) => l.startsWith(k + ":")).split(/ +|\\t/).filter(Boolean)[1]) * 1024;
const m = process.memoryUsage(); process.stdout.write(JSON.stringify({ rss: m.rss, heap: m.heapUsed, anon: kb("RssAnon"), file: kb("RssFile") }));`;
  return JSON.parse(execFileSync(process.execPath, [...SERVER_NODE_FLAGS, "--expose-gc", "--input-type=module", "-e", code], { cwd: ROOT }).toString()) as Mem;
}

interface Mem {
  rss: number;
  heap: number;
  /** Private anonymous memory (heap, code space, malloc): what each worker pays for itself. */
  anon: number;
  /** File-backed pages (the node binary, shared libraries): shared between worker processes. */
  file: number;
}

function statusOf(pid: number): Mem {
  const st = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(st.split("\n").find((l) => l.startsWith(`${k}:`))!.split(/\s+/)[1]) * 1024;
  return { rss: kb("VmRSS"), heap: -1, anon: kb("RssAnon"), file: kb("RssFile") };
}

const mb = (b: number) => (b / (1024 * 1024)).toFixed(1);

async function main(): Promise<void> {
  const all: string[] = [];
  let prev = 0;
  const line = (m: Mem, name: string) => {
    console.log(`${mb(m.rss).padStart(7)} ${(prev ? `${m.rss >= prev ? "+" : ""}${mb(m.rss - prev)}` : "").padStart(6)}  ${mb(m.anon).padStart(7)}  ${mb(m.file).padStart(7)}  ${m.heap >= 0 ? mb(m.heap).padStart(7) : "      -"}  ${name}`);
    prev = m.rss;
  };
  console.log(" RSS MB     +MB  anon MB  file MB  heap MB  step (anon: private to the process; file: node binary and libraries, shared)");
  for (const s of STEPS) {
    all.push(...s.imports);
    line(measure(all), s.name);
  }
  const p = await startPrism(memstoreYaml("bench"));
  try {
    await sleep(2000);
    line(statusOf(p.pid), "prism serve --workers 1 (memstore), listening, 2 s idle");
    await sleep(13_000);
    line(statusOf(p.pid), "the same, 15 s idle (after V8's memory reducer)");
  } finally {
    await p.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
