/**
 * One careless or hostile client must not take Prism down for everyone
 * (issue 19). A real `prism serve` child process (its memory read from
 * /proc/<pid>/status: VmRSS now, VmHWM the peak) with short timeouts and a
 * 64 MiB budget of unfinished request bytes; bounded attack clients on loopback:
 *
 * - HTTP/2: one connection opens 64 streams that each declare an 8 MiB gRPC
 *   message and send 7 MiB of it, then stop (used to grow ~448 MiB and stay);
 * - WebSocket: 50 connections each send 7 MiB of an 8 MiB frame, then stop;
 * - HTTP: 50 connections each send 7 MiB of an 8 MiB body, then stop;
 * - silent TCP connections and half request heads on both ports; idle HTTP/2
 *   sessions and idle WebSockets.
 *
 * The gRPC cases run against both gRPC servers (server.grpc_server http2, the
 * default, and grpc-js, whose connections Prism accepts and injects:
 * src/ingress/grpc-js-limits.ts); the HTTP and WebSocket cases once. A
 * session with the preface and SETTINGS but no stream is closed after
 * header_timeout_ms too (on grpc-js, idle_timeout_ms is 12 s there so that
 * grpc-js's own idle close cannot pass for the header timeout).
 *
 * Asserted: the peak RSS stays under a ceiling (each attack + 120 MB at most,
 * the process idle + 200 MB at most; before the limits each attack took
 * 350-450 MB), well-behaved clients keep ≥ 95% success during each attack
 * (GETs, 256 KiB PUT bodies and 256 KiB WebSocket Set frames: the ones with
 * bodies need room in the budget the attacks fill, which they get because the
 * budget drops the connection holding the most bytes for a smaller request), unfinished requests are dropped after
 * request_timeout_ms, silent / half-header / idle connections are closed after
 * their timeouts (bounds of several seconds, generous), a WebSocket with a
 * subscription stays open, and the process keeps serving afterwards.
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect as netConnect, type Socket } from "node:net";
import { connect as h2connect, constants as h2c, type ClientHttp2Session } from "node:http2";
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { Agent, request } from "node:http";
import WebSocket from "ws";
import { prism as pb } from "../../src/gen/prism.js";
import { methodByName } from "../../src/core/methods.js";
import { startPrism, type PrismProcess } from "./serve-process.js";

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/**
 * Peak RSS allowed: each attack may add at most ATTACK_MB over the RSS it started at (the budget of
 * unfinished bytes is 64 MiB; before the limits each attack took 350-450 MB), and the process never
 * goes over its idle RSS + CEILING_MB (freed memory is not always given back to the OS, so RSS after
 * one attack is where the next starts).
 */
const ATTACK_MB = 120;
const CEILING_MB = 200;

function procStatus(pid: number, field: "VmRSS" | "VmHWM"): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : 0;
}

/** Resets VmHWM to the current RSS (so each attack's peak is its own). */
function resetPeak(pid: number): number {
  const now = procStatus(pid, "VmRSS");
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5");
  } catch {
    // not permitted here: the peak then covers the whole test, which is stricter
  }
  return now;
}

const GOOD_VALUE = Buffer.alloc(256 * 1024, 0x67);
const KV_SET = methodByName("KeyValue", "Set")!.id;

/** One well-behaved request: true when it succeeded. */
type GoodCall = () => Promise<boolean>;

function httpCall(port: number, agent: Agent, method: "GET" | "PUT", path: string, body?: Buffer): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const req = request({ host: "127.0.0.1", port, path, method, agent, timeout: 5000, headers: body ? { "content-length": body.length } : {} }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode === 200 || res.statusCode === 404));
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(false));
    req.end(body);
  });
}

/** A WebSocket client that sends KeyValue.Set frames of 256 KiB one at a time (reconnecting after a failure). */
function wsSetter(port: number): { call: GoodCall; close(): void } {
  let ws: WebSocket | undefined;
  let id = 0;
  const open = () =>
    new Promise<WebSocket>((resolve, reject) => {
      const c = new WebSocket(`ws://127.0.0.1:${port}/v1/ws`, { perMessageDeflate: false });
      c.once("open", () => resolve(c));
      c.once("error", reject);
    });
  return {
    async call() {
      try {
        ws ??= await open();
      } catch {
        ws = undefined;
        return false;
      }
      const c = ws;
      const body = pb.v1.SetRequest.encode({ namespace: "default", key: "good-ws", value: GOOD_VALUE }).finish();
      const f = Buffer.alloc(8 + body.length);
      f[0] = 1;
      f.writeUInt32LE(++id, 2);
      f.writeUInt16LE(KV_SET, 6);
      f.set(body, 8);
      const ok = await new Promise<boolean>((resolve) => {
        const t = setTimeout(() => done(false), 5000);
        const done = (v: boolean) => {
          clearTimeout(t);
          c.off("message", onMessage);
          c.off("close", onClose);
          resolve(v);
        };
        const onMessage = (d: Buffer) => done(d[0] === 1 && d.readUInt32LE(2) === id);
        const onClose = () => done(false);
        c.on("message", onMessage);
        c.once("close", onClose);
        c.send(f);
      });
      if (!ok) {
        c.terminate();
        ws = undefined;
      }
      return ok;
    },
    close() {
      ws?.terminate();
    },
  };
}

/**
 * Well-behaved clients, sequential calls until stopped: GETs on the raw KeyValue route (2 loops), PUTs of
 * 256 KiB bodies (2 loops) and 256 KiB KeyValue.Set frames over a WebSocket (1 loop). The calls with bodies
 * need room in the worker's budget of unfinished bytes, which the attacks try to fill.
 */
function goodClients(port: number): { stop(): Promise<{ ok: number; total: number; byKind: string }> } {
  let running = true;
  const agent = new Agent({ keepAlive: true });
  const ws = wsSetter(port);
  const kinds: { name: string; call: GoodCall; ok: number; total: number }[] = [
    { name: "GET", call: () => httpCall(port, agent, "GET", "/v1/ns/default/kv/good"), ok: 0, total: 0 },
    { name: "GET", call: () => httpCall(port, agent, "GET", "/v1/ns/default/kv/good"), ok: 0, total: 0 },
    { name: "PUT 256 KiB", call: () => httpCall(port, agent, "PUT", "/v1/ns/default/kv/good-put-1", GOOD_VALUE), ok: 0, total: 0 },
    { name: "PUT 256 KiB", call: () => httpCall(port, agent, "PUT", "/v1/ns/default/kv/good-put-2", GOOD_VALUE), ok: 0, total: 0 },
    { name: "WS Set 256 KiB", call: () => ws.call(), ok: 0, total: 0 },
  ];
  const loops = kinds.map(async (k) => {
    while (running) {
      k.total++;
      if (await k.call()) k.ok++;
      await sleep(5);
    }
  });
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      agent.destroy();
      ws.close();
      const byName = new Map<string, { ok: number; total: number }>();
      for (const k of kinds) {
        const b = byName.get(k.name) ?? { ok: 0, total: 0 };
        b.ok += k.ok;
        b.total += k.total;
        byName.set(k.name, b);
      }
      for (const [name, b] of byName) assert.ok(b.total > 0, `no ${name} call was made`);
      return {
        ok: kinds.reduce((a, k) => a + k.ok, 0),
        total: kinds.reduce((a, k) => a + k.total, 0),
        byKind: [...byName].map(([n, b]) => `${n} ${b.ok}/${b.total}`).join(", "),
      };
    },
  };
}

/** Resolves once the socket is closed by the other side, or false after ms. */
function closedWithin(s: Socket, ms: number): Promise<boolean> {
  if (s.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    s.once("close", () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

function tcp(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect(port, "127.0.0.1", () => resolve(s));
    s.on("error", () => {});
    s.once("error", reject);
  });
}

/** A raw WebSocket connection (handshake by hand) that can send part of a frame. */
async function rawWs(port: number): Promise<Socket> {
  const s = await tcp(port);
  const key = randomBytes(16).toString("base64");
  s.write(`GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  await new Promise<void>((resolve, reject) => {
    let head = "";
    const onData = (d: Buffer) => {
      head += d.toString("latin1");
      if (head.includes("\r\n\r\n")) {
        s.off("data", onData);
        if (head.startsWith("HTTP/1.1 101")) resolve();
        else reject(new Error(head.split("\r\n")[0]));
      }
    };
    s.on("data", onData);
  });
  s.on("data", () => {}); // whatever the server sends (a close frame)
  return s;
}

/** The header of a masked binary frame of `len` bytes. */
function frameHeader(len: number): Buffer {
  const h = Buffer.alloc(14);
  h[0] = 0x82;
  h[1] = 0x80 | 127;
  h.writeBigUInt64BE(BigInt(len), 2);
  randomBytes(4).copy(h, 10);
  return h;
}

for (const grpcServer of ["http2", "grpc-js"] as const) {
const httpCases = grpcServer === "http2";
// grpc-js closes idle sessions itself (grpc.max_connection_idle_ms): longer here than the header-timeout window.
const idleMs = grpcServer === "grpc-js" ? 12_000 : 2000;
describe(`connection limits: memory, timeouts and idle connections (gRPC server ${grpcServer})`, { timeout: 170_000 }, () => {
  let prism: PrismProcess;
  let pid = 0;
  let baseline = 0;
  const dir = mkdtempSync(join(tmpdir(), "prism-limits-"));
  const part = Buffer.alloc(7 * MiB, 7);
  // Stalled 1 MiB parts that fill the budget to the byte (the 7 MiB ones leave 64 - 9 × 7 = 1 MiB of it).
  const filler = Buffer.alloc(MiB, 8);
  const FILLERS = 8;

  before(async () => {
    const cfg = join(dir, "prism.yaml");
    writeFileSync(
      cfg,
      [
        "server:",
        `  grpc_server: ${grpcServer}`,
        "  header_timeout_ms: 1000",
        `  idle_timeout_ms: ${idleMs}`,
        "  request_timeout_ms: 4000",
        `  max_buffered_request_bytes: ${64 * MiB}`,
        "namespaces:",
        "  - name: default",
        "    backend: { type: memstore }",
        "",
      ].join("\n"),
    );
    prism = await startPrism(["--config", cfg, "--workers", "1", "--grpc-port", "0", "--http-port", "0"], { env: { PRISM_DATA_DIR: dir } });
    pid = prism.child.pid!;
    await fetch(`http://127.0.0.1:${prism.httpPort}/healthz`);
    baseline = procStatus(pid, "VmRSS");
  });

  after(async () => {
    await prism?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** The peak RSS since resetPeak; asserted after the clients are stopped (a failed assert must not leave them running). */
  const peakOf = (t: { diagnostic(s: string): void }, what: string, start: number) => {
    const peak = procStatus(pid, "VmHWM");
    t.diagnostic(`${what}: peak RSS ${peak.toFixed(0)} MB (at the start ${start.toFixed(0)} MB, idle ${baseline.toFixed(0)} MB)`);
    return () => {
      assert.ok(peak - start < ATTACK_MB, `${what}: peak RSS ${peak.toFixed(0)} MB, more than ${ATTACK_MB} MB over the ${start.toFixed(0)} MB it started at`);
      assert.ok(peak - baseline < CEILING_MB, `${what}: peak RSS ${peak.toFixed(0)} MB over idle ${baseline.toFixed(0)} MB + ${CEILING_MB} MB`);
    };
  };
  const assertGood = async (t: { diagnostic(s: string): void }, g: ReturnType<typeof goodClients>, what: string) => {
    const { ok, total, byKind } = await g.stop();
    t.diagnostic(`${what}: well-behaved clients ${ok}/${total} (${byKind})`);
    assert.ok(total > 0 && ok / total >= 0.95, `${what}: well-behaved clients ${ok}/${total} (${byKind})`);
  };

  it("HTTP/2: 64 streams × 7 MiB of 8 MiB messages on one connection stay bounded and are dropped after request_timeout_ms", async (t) => {
    const start = resetPeak(pid);
    const good = goodClients(prism.httpPort);
    const session: ClientHttp2Session = h2connect(`http://127.0.0.1:${prism.grpcPort}`);
    session.on("error", () => {});
    const remote = await new Promise<number>((resolve) => session.once("remoteSettings", (s) => resolve(s.maxConcurrentStreams ?? 0)));
    assert.equal(remote, 256, "at most 256 streams per connection");
    const statuses: string[] = [];
    const streams = Array.from({ length: 64 }, () => {
      const st = session.request({ ":method": "POST", ":path": "/prism.v1.KeyValue/Set", "content-type": "application/grpc", te: "trailers" });
      st.on("error", () => {});
      st.on("trailers", (h) => statuses.push(String(h["grpc-status"])));
      st.on("response", (h) => h["grpc-status"] !== undefined && statuses.push(String(h["grpc-status"])));
      st.on("close", () => st.rstCode !== h2c.NGHTTP2_NO_ERROR && statuses.push(`rst ${st.rstCode}`));
      st.resume();
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(8 * MiB - 64, 1);
      st.write(prefix);
      st.write(part);
      return st;
    });
    // Let the bytes flow (flow control lets each stream send as the server reads), then look.
    await sleep(2500);
    const ceiling = peakOf(t, "http2", start);
    // Every stream is ended by the server: refused for its bytes (RESOURCE_EXHAUSTED) or after request_timeout_ms.
    const end = Date.now() + 10_000;
    while (streams.some((s) => !s.closed) && Date.now() < end) await sleep(100);
    t.diagnostic(`http2 statuses: ${[...new Set(statuses)].join(", ")}`);
    const allEnded = streams.every((s) => s.closed);
    session.destroy();
    await assertGood(t, good, "http2");
    ceiling();
    assert.ok(allEnded, "every unfinished stream was ended");
  });

  it("WebSocket: 50 connections × 7 MiB of an 8 MiB frame stay bounded; the rest are closed after request_timeout_ms", { skip: !httpCases && "the HTTP port does not depend on the gRPC server" }, async (t) => {
    const start = resetPeak(pid);
    const good = goodClients(prism.httpPort);
    const socks = await Promise.all(Array.from({ length: 50 }, () => rawWs(prism.httpPort)));
    for (const s of socks) {
      s.write(frameHeader(8 * MiB - 64));
      s.write(part);
    }
    // Then smaller stalls that fill what the large ones left of the budget (9 × 7 MiB leave 1 MiB).
    const fill = await Promise.all(Array.from({ length: FILLERS }, () => rawWs(prism.httpPort)));
    for (const s of fill) {
      s.write(frameHeader(2 * MiB));
      s.write(filler);
    }
    socks.push(...fill);
    await sleep(2500);
    const ceiling = peakOf(t, "websocket", start);
    const closed = await Promise.all(socks.map((s) => closedWithin(s, 10_000)));
    for (const s of socks) s.destroy();
    await assertGood(t, good, "websocket");
    ceiling();
    assert.equal(closed.filter(Boolean).length, socks.length, "every connection with an unfinished frame was closed");
  });

  it("HTTP: 50 connections × 7 MiB of an 8 MiB body stay bounded; the rest are dropped after request_timeout_ms", { skip: !httpCases && "the HTTP port does not depend on the gRPC server" }, async (t) => {
    const start = resetPeak(pid);
    const good = goodClients(prism.httpPort);
    const socks = await Promise.all(Array.from({ length: 50 + FILLERS }, () => tcp(prism.httpPort)));
    socks.forEach((s, n) => {
      s.on("data", () => {});
      // 50 large stalls, then smaller ones that fill what the large ones left of the budget.
      const large = n < 50;
      s.write(`POST /v1/KeyValue/Set HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${large ? 8 * MiB - 64 : 2 * MiB}\r\n\r\n`);
      s.write(large ? part : filler);
    });
    await sleep(2500);
    const ceiling = peakOf(t, "http", start);
    const closed = await Promise.all(socks.map((s) => closedWithin(s, 10_000)));
    for (const s of socks) s.destroy();
    await assertGood(t, good, "http");
    ceiling();
    assert.equal(closed.filter(Boolean).length, socks.length, "every unfinished body was dropped");
  });

  it("silent connections and half request heads are closed after header_timeout_ms on both ports", async () => {
    const socks: Socket[] = [];
    // An HTTP/2 session that sends its preface and SETTINGS but never opens a stream.
    const quiet = h2connect(`http://127.0.0.1:${prism.grpcPort}`);
    quiet.on("error", () => {});
    await new Promise<void>((resolve) => quiet.once("remoteSettings", () => resolve()));
    const quietClosed = new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), 8000);
      quiet.once("close", () => {
        clearTimeout(t);
        resolve(true);
      });
    });
    for (const port of [prism.httpPort, prism.grpcPort]) {
      for (let i = 0; i < 100; i++) socks.push(await tcp(port));
      for (let i = 0; i < 20; i++) {
        const s = await tcp(port);
        s.write(port === prism.httpPort ? "POST /v1/KeyValue/Get HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-" : "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        socks.push(s);
      }
    }
    for (const s of socks) s.on("data", () => {});
    // Within 8 s (header timeout 1 s, swept every second): before grpc-js's own idle close (12 s there).
    const closed = await Promise.all(socks.map((s) => closedWithin(s, 8000)));
    for (const s of socks) s.destroy();
    assert.equal(closed.filter(Boolean).length, socks.length, `${closed.filter((c) => !c).length} of ${socks.length} still open`);
    assert.ok(await quietClosed, "an HTTP/2 session with no stream was closed after header_timeout_ms");
    quiet.destroy();
  });

  it("an idle HTTP/2 session and an idle WebSocket are closed after idle_timeout_ms; a WebSocket with a subscription stays", async () => {
    const session = h2connect(`http://127.0.0.1:${prism.grpcPort}`);
    session.on("error", () => {});
    await new Promise<void>((resolve) => session.once("remoteSettings", () => resolve()));
    // One finished call (a started session), then nothing.
    await new Promise<void>((resolve) => {
      const st = session.request({ ":method": "POST", ":path": "/prism.v1.Admin/Health", "content-type": "application/grpc", te: "trailers" });
      st.on("error", () => resolve());
      st.resume();
      st.on("close", () => resolve());
      st.end(Buffer.alloc(5));
    });
    const sessionClosed = new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), idleMs + 6000);
      session.once("close", () => {
        clearTimeout(t);
        resolve(true);
      });
    });
    if (!httpCases) {
      assert.ok(await sessionClosed, "the idle HTTP/2 session was closed");
      session.destroy();
      return;
    }
    const idle = new WebSocket(`ws://127.0.0.1:${prism.httpPort}/v1/ws`);
    const busy = new WebSocket(`ws://127.0.0.1:${prism.httpPort}/v1/ws`);
    await Promise.all([idle, busy].map((w) => new Promise((r) => w.once("open", r))));
    // A Subscribe frame (kind 1 request, id 1, method PUBSUB_SUBSCRIBE) keeps `busy` busy; ws answers the server's pings.
    const { prism: pb } = await import("../../src/gen/prism.js");
    const body = pb.v1.SubscribeRequest.encode({ namespace: "default", pattern: "x.>" }).finish();
    const head = Buffer.alloc(8);
    head.writeUInt32LE((1 | (1 << 16)) >>> 0, 0);
    head.writeUInt32LE((0 | (pb.v1.Method.PUBSUB_SUBSCRIBE << 16)) >>> 0, 4);
    busy.send(Buffer.concat([head, body]));
    const idleClosed = new Promise<number>((resolve) => idle.once("close", (code) => resolve(code)));
    const t0 = Date.now();
    const code = await Promise.race([idleClosed, sleep(8000).then(() => -1)]);
    assert.equal(code, 1001, "the idle WebSocket was closed (1001)");
    assert.ok(await sessionClosed, "the idle HTTP/2 session was closed");
    await sleep(Math.max(0, 4500 - (Date.now() - t0)));
    assert.equal(busy.readyState, WebSocket.OPEN, "a WebSocket with a live subscription stays open");
    busy.close();
    session.destroy();
  });

  it("keeps serving afterwards", async () => {
    const r = await fetch(`http://127.0.0.1:${prism.httpPort}/v1/ns/default/kv/after`, { method: "PUT", body: "x" });
    assert.equal(r.status, 200);
    const h = await fetch(`http://127.0.0.1:${prism.httpPort}/healthz`);
    assert.equal(h.status, 200);
    // And the gRPC port: Admin/Health answers OK.
    const session = h2connect(`http://127.0.0.1:${prism.grpcPort}`);
    session.on("error", () => {});
    const status = await new Promise<string>((resolve) => {
      const st = session.request({ ":method": "POST", ":path": "/prism.v1.Admin/Health", "content-type": "application/grpc", te: "trailers" });
      st.on("error", (e) => resolve(`error ${e.message}`));
      st.on("trailers", (t) => resolve(String(t["grpc-status"])));
      st.on("response", (r) => r["grpc-status"] !== undefined && resolve(String(r["grpc-status"])));
      st.resume();
      st.end(Buffer.alloc(5));
    });
    session.destroy();
    assert.equal(status, "0");
  });
});
}
