/** Runs `node bin/prism.js …` as a child process for the end-to-end tests. */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const PRISM_BIN = fileURLToPath(new URL("../../../bin/prism.js", import.meta.url));

/** A TCP port free right now on 127.0.0.1 (for cluster mode, whose workers cannot share port 0). */
export { freePort } from "../helpers/private-servers.js";

export interface PrismProcess {
  readonly child: ChildProcess;
  readonly grpcPort: number;
  readonly httpPort: number;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (or the signal name) once the process is gone. */
  readonly exited: Promise<number | string>;
  /** Sends `signal` and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

export function freshDataDir(): string {
  return mkdtempSync(join(tmpdir(), "prism-data-"));
}

/** Spawns `prism serve …` and resolves once it prints its `listening` line. */
export function startPrism(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number; /** Soft limit on open files (ulimit -n) for the process. */ openFiles?: number } = {}): Promise<PrismProcess> {
  // A data directory of its own (config store, embedded files), unless the caller or its prism.yaml names one.
  const env: NodeJS.ProcessEnv = { ...process.env, PRISM_QUIET: "1", PRISM_DATA_DIR: freshDataDir(), ...opts.env };
  delete env.PRISM_CONFIG;
  if (opts.env?.PRISM_CONFIG) env.PRISM_CONFIG = opts.env.PRISM_CONFIG;
  const argv = [PRISM_BIN, "serve", ...args];
  const child =
    opts.openFiles === undefined
      ? spawn(process.execPath, argv, { cwd: opts.cwd ?? ROOT, env, stdio: ["ignore", "pipe", "pipe"] })
      : spawn("/bin/sh", ["-c", `ulimit -n ${opts.openFiles} && exec "$0" "$@"`, process.execPath, ...argv], { cwd: opts.cwd ?? ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  const exited = new Promise<number | string>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal ?? -1)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`prism serve did not start within ${opts.timeoutMs ?? 30_000} ms\nstdout:\n${out}\nstderr:\n${err}`));
    }, opts.timeoutMs ?? 30_000);
    child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /^listening grpc=(\d+) http=(\d+)$/m.exec(out);
      if (!m) return;
      clearTimeout(timer);
      resolve({
        child,
        grpcPort: Number(m[1]),
        httpPort: Number(m[2]),
        stdout: () => out,
        stderr: () => err,
        exited,
        stop: (signal = "SIGTERM") => {
          if (child.exitCode === null && child.signalCode === null) child.kill(signal);
          return exited;
        },
      });
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`prism serve exited (${code}) before listening\nstdout:\n${out}\nstderr:\n${err}`));
    });
  });
}

/** Runs a CLI command to completion. */
export function runPrism(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = { ...process.env, PRISM_QUIET: "1", PRISM_DATA_DIR: freshDataDir(), ...opts.env };
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [PRISM_BIN, ...args], { cwd: opts.cwd ?? ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}
