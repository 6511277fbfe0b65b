/**
 * Servers under test run as their own processes, so their CPU time can be read
 * from /proc and the load generator does not share their event loop.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SERVER_NODE_FLAGS } from "../../src/workers/node-flags.js";

export const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const SERVERS = fileURLToPath(new URL("../servers/", import.meta.url));

export interface ServerProcess {
  readonly name: string;
  readonly pid: number;
  /** The numbers captured from the listening line, by name. */
  readonly ports: Record<string, number>;
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

export function startProcess(name: string, args: string[], listening: RegExp, opts: { env?: NodeJS.ProcessEnv; cleanup?: () => void; timeoutMs?: number } = {}): Promise<ServerProcess> {
  // Each server its own data directory (config store), so runs never see each other's namespaces.
  const dataDir = mkdtempSync(join(tmpdir(), "prism-bench-data-"));
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, PRISM_QUIET: "1", PRISM_DATA_DIR: dataDir, ...opts.env }, stdio: ["ignore", "pipe", "pipe"] });
  child.once("exit", () => rmSync(dataDir, { recursive: true, force: true }));
  let out = "";
  let err = "";
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${name} did not start:\n${out}\n${err}`));
    }, opts.timeoutMs ?? 30_000);
    child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = listening.exec(out);
      if (!m) return;
      clearTimeout(timer);
      const ports: Record<string, number> = {};
      for (const [k, v] of Object.entries(m.groups ?? {})) ports[k] = Number(v);
      resolve({
        name,
        pid: child.pid!,
        ports,
        child,
        stop: async () => {
          if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
          const t = setTimeout(() => child.kill("SIGKILL"), 5000);
          await exited;
          clearTimeout(t);
          opts.cleanup?.();
        },
      });
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`${name} exited before listening:\n${out}\n${err}`));
    });
  });
}

/** A baseline server from bench/servers (prints `listening port=P`). */
export function startBaseline(file: "ws-echo" | "ws-echo-corked" | "ws-broadcast" | "http-hello" | "grpc-echo" | "http2-grpc", args: string[] = []): Promise<ServerProcess> {
  return startProcess([file, ...args].join(" "), [join(SERVERS, `${file}.js`), ...args], /listening port=(?<port>\d+)/);
}

/**
 * `prism serve --workers N` on ephemeral ports with the given YAML config,
 * started as `npm start` starts it (with SERVER_NODE_FLAGS).
 * `nodeArgs` go to node itself (e.g. --cpu-prof).
 */
export function startPrism(yaml: string, opts: { workers?: number; nodeArgs?: string[]; cwd?: string } = {}): Promise<ServerProcess> {
  const dir = mkdtempSync(join(tmpdir(), "prism-bench-"));
  const file = join(dir, "prism.yaml");
  writeFileSync(file, yaml);
  const workers = opts.workers ?? 1;
  // Cluster workers cannot share port 0: pick fixed ephemeral-range ports then.
  const grpc = workers > 1 ? 20000 + Math.floor(Math.random() * 20000) : 0;
  const args = [...SERVER_NODE_FLAGS, ...(opts.nodeArgs ?? []), join(ROOT, "bin/prism.js"), "serve", "--workers", String(workers), "--config", file, "--grpc-port", String(grpc), "--http-port", String(grpc ? grpc + 1 : 0)];
  return startProcess(`prism(workers=${workers})`, args, /listening grpc=(?<grpc>\d+) http=(?<http>\d+)/, { cleanup: () => rmSync(dir, { recursive: true, force: true }) });
}

/** `server` entries (e.g. `{ metrics: false }`) are written as a `server:` block. */
export function memstoreYaml(ns: string, server: Record<string, string | number | boolean> = {}): string {
  const block = Object.entries(server).map(([k, v]) => `  ${k}: ${v}\n`).join("");
  return `${block ? `server:\n${block}` : ""}namespaces:\n  - name: ${ns}\n    backend: { type: memstore }\n`;
}
