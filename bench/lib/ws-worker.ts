/**
 * One load-generator thread for the binary WebSocket (and the bare `ws` echo,
 * which answers each frame with itself: the request id sits at the same offset).
 *
 * Closed loop: `conns` connections, each keeping `depth` requests in flight
 * (request id = slot). Open loop: `rate` requests/s spread over the
 * connections, latency measured from the *intended* send time, so a stalled
 * server is charged for the requests it delayed (no coordinated omission).
 *
 * Phases come from a shared Int32Array written by the main thread:
 * 0 warm-up, 1 measure (only responses received now are counted), 2 over.
 */
import { parentPort, workerData } from "node:worker_threads";
import WebSocket from "ws";
import { encodeHistogram, newHistogram } from "./hist.js";

export interface WsWorkerData {
  url: string;
  conns: number;
  depth: number;
  /** Complete client frames; bytes 2..5 (request id) are overwritten before each send. */
  templates: Uint8Array[];
  phase: SharedArrayBuffer;
  /** Open loop: requests per second for this thread (0: closed loop). */
  rate: number;
  /** Open connections only, send nothing (connection-count scenario). */
  idle?: boolean;
  /** Extra `ws` client options: upgrade headers (Authorization), the CA of a wss:// server. */
  wsOptions?: { headers?: Record<string, string>; ca?: string };
}

export interface WsWorkerResult {
  ops: number;
  errors: number;
  hist: string;
  connected: number;
}

const d = workerData as WsWorkerData;
const phase = new Int32Array(d.phase);
const hist = newHistogram();
const templates = d.templates.map((t) => Buffer.from(t.buffer, t.byteOffset, t.byteLength));
let ops = 0;
let errors = 0;
let connected = 0;
const sockets: WebSocket[] = [];

function connect(): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(d.url, { perMessageDeflate: false, ...d.wsOptions });
    ws.binaryType = "nodebuffer";
    ws.once("open", () => {
      connected++;
      resolve(ws);
    });
    ws.once("error", reject);
  });
}

function send(ws: WebSocket, tpl: Buffer, id: number): void {
  tpl.writeUInt32LE(id, 2);
  ws.send(tpl, { binary: true }); // ws copies (masks) synchronously, so the template is reusable at once
}

/** Batches the sends provoked by one socket read into one write. */
function corkTick(ws: WebSocket): void {
  const sock = (ws as unknown as { _socket: import("node:net").Socket })._socket;
  if (sock.writableCorked === 0) {
    sock.cork();
    process.nextTick(() => sock.uncork());
  }
}

function closedLoop(ws: WebSocket, connIndex: number): void {
  const start = new Float64Array(d.depth);
  let next = (connIndex * 7) % templates.length;
  ws.on("message", (data: Buffer) => {
    const now = performance.now();
    const id = data.readUInt32LE(2);
    const p = Atomics.load(phase, 0);
    if (p === 1) {
      hist.recordValue(Math.max(1, Math.round((now - start[id]!) * 1000)));
      if (data[0] === 1) ops++;
      else errors++;
    }
    if (p === 2) return;
    corkTick(ws);
    start[id] = performance.now();
    send(ws, templates[next]!, id);
    if (++next === templates.length) next = 0;
  });
  for (let s = 0; s < d.depth; s++) {
    start[s] = performance.now();
    send(ws, templates[next]!, s);
    if (++next === templates.length) next = 0;
  }
}

const OPEN_SLOTS = 1 << 16;

function openLoop(conns: WebSocket[]): void {
  const intended = new Float64Array(OPEN_SLOTS);
  const intervalMs = 1000 / d.rate;
  const t0 = performance.now();
  let sent = 0;
  const onMessage = (data: Buffer) => {
    const now = performance.now();
    const id = data.readUInt32LE(2);
    if (Atomics.load(phase, 0) !== 1) return;
    hist.recordValue(Math.max(1, Math.round((now - intended[id]!) * 1000)));
    if (data[0] === 1) ops++;
    else errors++;
  };
  for (const ws of conns) ws.on("message", onMessage);
  const tick = () => {
    if (Atomics.load(phase, 0) === 2) return;
    const due = Math.floor((performance.now() - t0) / intervalMs);
    while (sent < due) {
      const id = sent % OPEN_SLOTS;
      intended[id] = t0 + sent * intervalMs;
      send(conns[sent % conns.length]!, templates[sent % templates.length]!, id);
      sent++;
    }
    // Sends leave on time, not on the timer's: setTimeout(1) fires 1-2 ms late on a busy VM, and in an
    // open loop that lateness lands in every latency measured from the intended send time (it made
    // the p99 of both sides mostly timer jitter). Within 2 ms of the next send the loop keeps turning
    // (setImmediate, so replies are still read every turn): this client thread spins at up to 100% CPU.
    const wait = t0 + sent * intervalMs - performance.now();
    if (wait > 2) setTimeout(tick, wait - 1.5);
    else setImmediate(tick);
  };
  tick();
}

async function main(): Promise<void> {
  // Connect in small batches: thousands of simultaneous handshakes overflow the accept backlog.
  for (let i = 0; i < d.conns; i += 200) {
    const batch = await Promise.all(Array.from({ length: Math.min(200, d.conns - i) }, connect));
    sockets.push(...batch);
  }
  for (const ws of sockets) ws.on("error", () => {});
  parentPort!.postMessage({ type: "ready" });
  if (d.idle) {
    // Prove the connections are served: one request per connection during the measure phase.
    await new Promise<void>((r) => parentPort!.once("message", () => r()));
    let pending = sockets.length;
    await new Promise<void>((resolve) => {
      if (pending === 0) resolve();
      for (const ws of sockets) {
        const t = performance.now();
        ws.once("message", (data: Buffer) => {
          hist.recordValue(Math.max(1, Math.round((performance.now() - t) * 1000)));
          if (data[0] === 1) ops++;
          else errors++;
          if (--pending === 0) resolve();
        });
        send(ws, templates[0]!, 1);
      }
    });
    parentPort!.postMessage({ type: "served" });
  } else if (d.rate > 0) openLoop(sockets);
  else sockets.forEach(closedLoop);
  parentPort!.on("message", (m: { type: string }) => {
    if (m.type !== "stop") return;
    const result: WsWorkerResult = { ops, errors, hist: encodeHistogram(hist), connected };
    for (const ws of sockets) ws.terminate();
    parentPort!.postMessage({ type: "done", result });
    parentPort!.close();
  });
}

main().catch((e: Error) => {
  parentPort!.postMessage({ type: "fail", message: e.message });
});
