/**
 * Load-generator thread for a queue: `producers` connections Enqueue, and
 * `consumers` connections each keep `consumerDepth` Dequeue long polls in
 * flight and Ack every message they receive, all in this thread (one clock).
 *
 * Closed loop end to end: at most `window` messages are between Enqueue and
 * the Ack's response; each Ack answered lets a producer (round robin) enqueue
 * one more, so the queue never grows without bound. Throughput counts Acks
 * answered OK; latency is Enqueue sent → message received in a Dequeue
 * response (the payload carries the f64 send time).
 */
import { parentPort, workerData } from "node:worker_threads";
import type WebSocket from "ws";
import { prism as pb } from "../../src/gen/prism.js";
import { encodeHistogram, newHistogram } from "./hist.js";
import { frame } from "./frames.js";
import { bytesField, connectMany, corkTick } from "./ws-client.js";
import type { WsWorkerResult } from "./ws-worker.js";

export interface QueueWorkerData {
  url: string;
  namespace: string;
  queue: string;
  producers: number;
  consumers: number;
  window: number;
  consumerDepth: number;
  maxMessages: number;
  waitSeconds: number;
  payloadBytes: number;
  phase: SharedArrayBuffer;
}

const RESPONSE = 1;
const DEQUEUE_ID = 0x80000000;
const M = pb.v1.Method;

const d = workerData as QueueWorkerData;
const phase = new Int32Array(d.phase);
const hist = newHistogram();
const enq = Buffer.from(frame(M.QUEUE_ENQUEUE, pb.v1.EnqueueRequest.encode({ namespace: d.namespace, queue: d.queue, payload: Buffer.alloc(Math.max(8, d.payloadBytes)) }).finish()));
const enqPayloadAt = bytesField(enq, 8, enq.length, 3);
const deq = Buffer.from(frame(M.QUEUE_DEQUEUE, pb.v1.DequeueRequest.encode({ namespace: d.namespace, queue: d.queue, maxMessages: d.maxMessages, waitSeconds: d.waitSeconds }).finish()));
let ops = 0;
let errors = 0;
let connected = 0;
let outstanding = 0;
let nextProducer = 0;
let producerId = 0;
let producers: WebSocket[] = [];

function enqueue(): void {
  const ws = producers[nextProducer]!;
  if (++nextProducer === producers.length) nextProducer = 0;
  corkTick(ws);
  enq.writeUInt32LE(++producerId & 0x7fffffff, 2);
  enq.writeDoubleLE(performance.now(), enqPayloadAt);
  ws.send(enq, { binary: true });
  outstanding++;
}

function refill(): void {
  if (Atomics.load(phase, 0) === 2) return;
  while (outstanding < d.window) enqueue();
}

function onProducerMessage(data: Buffer): void {
  if (data[0] === RESPONSE) return;
  if (Atomics.load(phase, 0) === 1) errors++;
  outstanding--;
  refill();
}

class Consumer {
  private nextId = 0;
  constructor(private readonly ws: WebSocket) {
    ws.on("message", (data: Buffer) => this.onMessage(data));
  }

  dequeue(): void {
    if (Atomics.load(phase, 0) === 2) return;
    corkTick(this.ws);
    deq.writeUInt32LE((DEQUEUE_ID | (++this.nextId & 0x7fffffff)) >>> 0, 2);
    this.ws.send(deq, { binary: true });
  }

  private onMessage(data: Buffer): void {
    const now = performance.now();
    const p = Atomics.load(phase, 0);
    const isDequeue = (data.readUInt32LE(2) & DEQUEUE_ID) !== 0;
    if (data[0] !== RESPONSE) {
      if (p === 1) errors++;
      if (isDequeue) this.dequeue();
      else {
        outstanding--;
        refill();
      }
      return;
    }
    if (!isDequeue) {
      if (p === 1) ops++;
      outstanding--;
      refill();
      return;
    }
    const resp = pb.v1.DequeueResponse.decode(data.subarray(6));
    if (resp.messages.length > 0) corkTick(this.ws);
    for (const m of resp.messages) {
      const pl = m.payload!;
      if (p === 1) hist.recordValue(Math.max(1, Math.round((now - new DataView(pl.buffer, pl.byteOffset, 8).getFloat64(0, true)) * 1000)));
      const ack = frame(M.QUEUE_ACK, pb.v1.AckRequest.encode({ namespace: d.namespace, queue: d.queue, receipt: m.receipt }).finish());
      Buffer.from(ack.buffer, ack.byteOffset, ack.byteLength).writeUInt32LE(++this.nextId & 0x7fffffff, 2);
      this.ws.send(ack, { binary: true });
    }
    this.dequeue();
  }
}

async function main(): Promise<void> {
  const sockets = await connectMany(d.url, d.producers + d.consumers);
  connected = sockets.length;
  producers = sockets.slice(0, d.producers);
  for (const ws of producers) ws.on("message", onProducerMessage);
  const consumers = sockets.slice(d.producers).map((ws) => new Consumer(ws));
  parentPort!.postMessage({ type: "ready" });
  for (const c of consumers) for (let i = 0; i < d.consumerDepth; i++) c.dequeue();
  refill();
  parentPort!.on("message", (m: { type: string }) => {
    if (m.type !== "stop") return;
    const result: WsWorkerResult = { ops, errors, hist: encodeHistogram(hist), connected };
    for (const ws of sockets) ws.terminate();
    parentPort!.postMessage({ type: "done", result });
    parentPort!.close();
  });
}

main().catch((e: Error) => parentPort!.postMessage({ type: "fail", message: e.message }));
