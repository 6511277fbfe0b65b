/**
 * Load-generator thread for pub/sub fan-out: one publisher connection and
 * `subscribers` subscriber connections, all in this thread, so publish and
 * receipt times come from the same clock (performance.now()).
 *
 * The payload carries `f64 sentAt, u32 seq`. At most `window` messages are in
 * flight: a message is complete once every subscriber received it, and its
 * completion publishes the next one (closed loop; the server can never build
 * an unbounded backlog, so latency is delivery time, not queueing in the run).
 *
 * mode "prism": PUBSUB_PUBLISH / PUBSUB_SUBSCRIBE frames to Prism, deliveries
 * are STREAM_MESSAGE frames (PubSubMessage.payload = field 2).
 * mode "bare": the same publish frame to bench/servers/ws-broadcast.ts, which
 * sends it back verbatim to every socket (PublishRequest.payload = field 3).
 */
import { parentPort, workerData } from "node:worker_threads";
import type WebSocket from "ws";
import { encodeHistogram, newHistogram } from "./hist.js";
import { bytesField, connectMany, corkTick } from "./ws-client.js";
import type { WsWorkerResult } from "./ws-worker.js";

export interface PubSubWorkerData {
  mode: "prism" | "bare";
  url: string;
  subscribers: number;
  window: number;
  /** A complete PUBSUB_PUBLISH client frame whose payload is at least 12 bytes. */
  publishFrame: Uint8Array;
  /** Prism mode: a PUBSUB_SUBSCRIBE frame (request id 1). */
  subscribeFrame?: Uint8Array;
  phase: SharedArrayBuffer;
}

const STREAM_MESSAGE = 3;
const STREAM_READY = 4;
const ERROR = 2;

const d = workerData as PubSubWorkerData;
const phase = new Int32Array(d.phase);
const hist = newHistogram();
const prism = d.mode === "prism";
const subs = d.subscribers;
const W = d.window;
const tpl = Buffer.from(d.publishFrame);
const payloadAt = bytesField(tpl, 8, tpl.length, 3);
const counts = new Uint16Array(W);
let ops = 0;
let errors = 0;
let connected = 0;
let pub: WebSocket;

function publish(seq: number): void {
  corkTick(pub);
  tpl.writeUInt32LE(seq >>> 0, 2); // request id: unique while in flight
  tpl.writeDoubleLE(performance.now(), payloadAt);
  tpl.writeUInt32LE(seq >>> 0, payloadAt + 8);
  pub.send(tpl, { binary: true });
}

function onDelivery(data: Buffer): void {
  const now = performance.now();
  const p = Atomics.load(phase, 0);
  let at: number;
  if (prism) {
    if (data[0] !== STREAM_MESSAGE) {
      if (p === 1) errors++;
      return;
    }
    at = bytesField(data, 6, data.length, 2);
  } else at = bytesField(data, 8, data.length, 3);
  if (at < 0) {
    if (p === 1) errors++;
    return;
  }
  const seq = data.readUInt32LE(at + 8);
  if (p === 1) {
    hist.recordValue(Math.max(1, Math.round((now - data.readDoubleLE(at)) * 1000)));
    ops++;
  }
  const slot = seq % W;
  if (++counts[slot]! === subs) {
    counts[slot] = 0;
    if (p !== 2) publish(seq + W);
  }
}

function subscribe(ws: WebSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    ws.once("message", (data: Buffer) => {
      if (data[0] === STREAM_READY) resolve();
      else reject(new Error(`subscribe answered frame kind ${data[0]}${data[0] === ERROR ? `: ${data.subarray(6).toString("latin1").replace(/[^\x20-\x7e]+/g, " ")}` : ""}`));
    });
    ws.send(d.subscribeFrame!, { binary: true });
  });
}

async function main(): Promise<void> {
  const sockets = await connectMany(d.url, subs + 1);
  connected = sockets.length;
  pub = sockets[0]!;
  const subscribers = sockets.slice(1);
  if (prism) await Promise.all(subscribers.map(subscribe));
  for (const ws of subscribers) ws.on("message", onDelivery);
  pub.on("message", (data: Buffer) => {
    // Prism answers each publish (RESPONSE or ERROR); the bare broadcast sends the publisher its own frame back.
    if (prism && data[0] === ERROR && Atomics.load(phase, 0) === 1) errors++;
  });
  parentPort!.postMessage({ type: "ready" });
  for (let s = 0; s < W; s++) publish(s);
  parentPort!.on("message", (m: { type: string }) => {
    if (m.type !== "stop") return;
    const result: WsWorkerResult = { ops, errors, hist: encodeHistogram(hist), connected };
    for (const ws of sockets) ws.terminate();
    parentPort!.postMessage({ type: "done", result });
    parentPort!.close();
  });
}

main().catch((e: Error) => parentPort!.postMessage({ type: "fail", message: e.message }));
