/**
 * Test helpers: free ports, and PRIVATE redis-server / nats-server processes
 * (own free port, own data dir under os.tmpdir()) that a test may stop and
 * restart without touching the shared servers on 6379 / 4222.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { connect, createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

/** A TCP port free right now on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Whether something accepts TCP connections on 127.0.0.1:port. */
export function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => (s.destroy(), resolve(true)));
    s.once("error", () => resolve(false));
  });
}

/** Whether `cmd --version` runs (the binary is installed). */
export function haveBinary(cmd: string): Promise<boolean> {
  return new Promise((resolve) => {
    const p = spawn(cmd, ["--version"], { stdio: "ignore" });
    p.once("error", () => resolve(false));
    p.once("exit", (code) => resolve(code === 0));
  });
}

/**
 * One server process on a fixed port that can be started again after a stop
 * (same port, same data dir: what it persisted survives).
 */
export class PrivateServer {
  private proc: ChildProcess | undefined;

  constructor(
    readonly name: string,
    readonly port: number,
    private readonly cmd: string,
    private readonly args: readonly string[],
  ) {}

  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null;
  }

  /** Spawns it and resolves once the port accepts connections (throws after timeoutMs). */
  async start(timeoutMs = 10_000): Promise<void> {
    this.proc = spawn(this.cmd, this.args as string[], { stdio: "ignore" });
    const end = Date.now() + timeoutMs;
    while (!(await tcpOpen(this.port))) {
      if (Date.now() > end) throw new Error(`private ${this.name} did not start on port ${this.port}`);
      await sleep(25);
    }
  }

  /** SIGTERM (or `signal`: SIGKILL for a crash), and resolves once it exited. No-op when not running. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once("exit", r));
    p.kill(signal);
    await exited;
  }
}

/** redis-server with AOF (appendfsync always), no RDB snapshots, data in `dir`; `extra` adds arguments. */
export function privateRedis(port: number, dir: string, extra: readonly string[] = []): PrivateServer {
  return new PrivateServer("redis-server", port, "redis-server", [
    "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", dir, ...extra,
  ]);
}

/** nats-server with JetStream, its store in `dir`. */
export function privateNats(port: number, dir: string): PrivateServer {
  return new PrivateServer("nats-server", port, "nats-server", ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir]);
}
