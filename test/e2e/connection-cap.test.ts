/**
 * File descriptors (issue 19): with a 512 open-files limit, 600 idle
 * connections used to make new clients fail with ECONNRESET (the process
 * could not accept: EMFILE), for minutes, since idle connections are only
 * closed after idle_timeout_ms (120 s).
 *
 * A real `prism serve` child under `ulimit -n 256` (default max_connections:
 * 256 − 64 = 192 per worker) with the default timeouts, so no timeout closes
 * anything during the test. The attack holds 500 connections across both
 * ports: silent TCP connections, HTTP keep-alive connections that made one
 * request and went quiet, and idle WebSockets. Meanwhile well-behaved clients
 * make calls on new connections (one connection per call) and on a keep-alive
 * connection: ≥ 95% succeed, because at the cap a new connection takes the
 * place of the one quiet longest. The process keeps serving afterwards, its
 * open descriptors stay under the limit, and the same attack against
 * `max_connections: 0` (no cap) makes new clients fail, which shows the
 * attack is real.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { connect as netConnect, type Socket } from "node:net";
import { readdirSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, request } from "node:http";
import { connect as h2connect } from "node:http2";
import WebSocket from "ws";
import { startPrism, type PrismProcess } from "./serve-process.js";

const OPEN_FILES = 256;
const ATTACK = 500;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function tcp(port: number): Promise<Socket | undefined> {
  return new Promise((resolve) => {
    const s = netConnect(port, "127.0.0.1", () => resolve(s));
    s.on("error", () => resolve(undefined));
  });
}

/** One GET on a connection of its own (Connection: close): true on 200/404. */
function freshGet(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ host: "127.0.0.1", port, path: "/v1/ns/default/kv/good", agent: false, timeout: 5000, headers: { connection: "close" } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode === 200 || res.statusCode === 404));
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(false));
    req.end();
  });
}

function keepAliveGet(port: number, agent: Agent): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ host: "127.0.0.1", port, path: "/v1/ns/default/kv/good", agent, timeout: 5000 }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode === 200 || res.statusCode === 404));
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(false));
    req.end();
  });
}

/** Attack connections: silent TCP on both ports, HTTP keep-alive after one request, idle WebSockets. */
async function attack(p: PrismProcess): Promise<{ held: () => number; close(): void }> {
  const socks: Socket[] = [];
  const wss: WebSocket[] = [];
  for (let i = 0; i < ATTACK; i++) {
    const kind = i % 4;
    if (kind === 0 || kind === 1) {
      const s = await tcp(kind === 0 ? p.httpPort : p.grpcPort);
      if (s) socks.push(s);
    } else if (kind === 2) {
      const s = await tcp(p.httpPort);
      if (!s) continue;
      s.on("data", () => {});
      s.write("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
      socks.push(s);
    } else {
      const ws = new WebSocket(`ws://127.0.0.1:${p.httpPort}/v1/ws`);
      ws.on("error", () => {});
      wss.push(ws);
    }
    if (i % 50 === 49) await sleep(20);
  }
  return {
    held: () => socks.filter((s) => !s.destroyed).length + wss.filter((w) => w.readyState === WebSocket.OPEN).length,
    close() {
      for (const s of socks) s.destroy();
      for (const w of wss) w.terminate();
    },
  };
}

function openFds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

async function withPrism<T>(extra: string[], fn: (p: PrismProcess) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), "prism-cap-"));
  const cfg = join(dir, "prism.yaml");
  writeFileSync(cfg, [...(extra.length ? ["server:", ...extra] : []), "namespaces:", "  - name: default", "    backend: { type: memstore }", ""].join("\n"));
  const p = await startPrism(["--config", cfg, "--workers", "1", "--grpc-port", "0", "--http-port", "0"], { env: { PRISM_DATA_DIR: dir }, openFiles: OPEN_FILES });
  try {
    return await fn(p);
  } finally {
    await p.stop("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Well-behaved calls while the attack holds its connections: fresh connections and one keep-alive one. */
async function goodCalls(p: PrismProcess, n: number): Promise<{ ok: number; total: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  let ok = 0;
  let total = 0;
  for (let i = 0; i < n; i++) {
    total += 2;
    if (await freshGet(p.httpPort)) ok++;
    if (await keepAliveGet(p.httpPort, agent)) ok++;
    await sleep(10);
  }
  agent.destroy();
  return { ok, total };
}

describe("connection cap: idle connections cannot use up the process's file descriptors", { timeout: 120_000 }, () => {
  it(`under ulimit -n ${OPEN_FILES}, ${ATTACK} idle connections leave new clients served (≥ 95%), the quietest connections make room`, async (t) => {
    await withPrism([], async (p) => {
      const pid = p.child.pid!;
      const a = await attack(p);
      // Let the attack's connections go quiet (a connection is closed for room only after 1 s without bytes).
      await sleep(1500);
      const { ok, total } = await goodCalls(p, 150);
      const fds = openFds(pid);
      const held = a.held();
      t.diagnostic(`well-behaved calls ${ok}/${total}; attack connections still open ${held} of ${ATTACK}; prism open fds ${fds} (limit ${OPEN_FILES})`);
      a.close();
      assert.ok(ok / total >= 0.95, `well-behaved calls ${ok}/${total}`);
      assert.ok(fds < OPEN_FILES, `prism holds ${fds} file descriptors, at its limit ${OPEN_FILES}`);
      assert.ok(held < ATTACK, "the cap closed attack connections");
      // Still serving afterwards, on both ports.
      await sleep(200);
      assert.ok(await freshGet(p.httpPort), "HTTP serves after the attack");
      const session = h2connect(`http://127.0.0.1:${p.grpcPort}`);
      session.on("error", () => {});
      const status = await new Promise<string>((resolve) => {
        const st = session.request({ ":method": "POST", ":path": "/prism.v1.Admin/Health", "content-type": "application/grpc", te: "trailers" });
        st.on("error", () => resolve("error"));
        st.on("trailers", (h) => resolve(String(h["grpc-status"])));
        st.on("response", (h) => h["grpc-status"] !== undefined && resolve(String(h["grpc-status"])));
        st.resume();
        st.end(Buffer.alloc(5));
      });
      session.destroy();
      assert.equal(status, "0", "gRPC serves after the attack");
    });
  });

  it("without the cap (max_connections: 0) the same attack makes new clients fail: the attack is real", async (t) => {
    await withPrism(["  max_connections: 0"], async (p) => {
      const a = await attack(p);
      await sleep(1500);
      const { ok, total } = await goodCalls(p, 40);
      a.close();
      t.diagnostic(`without the cap: well-behaved calls ${ok}/${total}`);
      assert.ok(ok / total < 0.9, `without the cap the well-behaved calls still got ${ok}/${total}: the attack does not exhaust descriptors`);
    });
  });
});
