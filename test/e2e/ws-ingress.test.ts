/**
 * Binary WebSocket ingress end to end: a real server in-process (memstore) and
 * the `ws` client speaking the frames of proto/prism/v1/frame.proto by hand.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { WebSocket } from "ws";
import { prism } from "../../src/gen/prism.js";
import { startServer, type RunningServer } from "../../src/server.js";
import { defaultConfig } from "../../src/config/load.js";

const v1 = prism.v1;
const M = v1.Method;
const RESPONSE = 1,
  ERROR = 2,
  STREAM_MESSAGE = 3,
  STREAM_READY = 4;

let server: RunningServer;
let url: string;
const uid = randomUUID().slice(0, 8);

before(async () => {
  server = await startServer({ config: defaultConfig(), grpc: false, host: "127.0.0.1", httpPort: 0, log: () => {} });
  url = `ws://127.0.0.1:${server.httpPort}/v1/ws`;
});
after(() => server.close());

interface Frame {
  kind: number;
  id: number;
  body: Buffer;
}

function requestFrame(kind: number, id: number, method: number, body: Uint8Array, flags = 0, extra = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(8);
  h[0] = kind;
  h[1] = flags;
  h.writeUInt32LE(id, 2);
  h.writeUInt16LE(method, 6);
  return Buffer.concat([h, extra, body]);
}

/** A test client: collects server frames and lets a test wait for the next one matching a predicate. */
class Client {
  readonly frames: Frame[] = [];
  private waiters: { match: (f: Frame) => boolean; resolve: (f: Frame) => void }[] = [];
  closeCode: number | undefined;
  private closed: Promise<number>;

  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data: Buffer) => {
      const f = { kind: data[0]!, id: data.readUInt32LE(2), body: data.subarray(6) };
      const i = this.waiters.findIndex((w) => w.match(f));
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(f);
      else this.frames.push(f);
    });
    this.closed = new Promise((resolve) => ws.once("close", (code) => resolve((this.closeCode = code))));
    ws.on("error", () => {});
  }

  static open(): Promise<Client> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.once("open", () => resolve(new Client(ws)));
      ws.once("error", reject);
    });
  }

  next(match: (f: Frame) => boolean): Promise<Frame> {
    const i = this.frames.findIndex(match);
    if (i >= 0) return Promise.resolve(this.frames.splice(i, 1)[0]!);
    return new Promise((resolve) => this.waiters.push({ match, resolve }));
  }

  forId(id: number): Promise<Frame> {
    return this.next((f) => f.id === id);
  }

  async call(id: number, method: number, body: Uint8Array): Promise<Frame> {
    const p = this.forId(id);
    this.ws.send(requestFrame(1, id, method, body));
    return p;
  }

  whenClosed(): Promise<number> {
    return this.closed;
  }

  close(): Promise<number> {
    this.ws.close();
    return this.closed;
  }
}

function status(f: Frame) {
  assert.equal(f.kind, ERROR, `expected an ERROR frame, got kind ${f.kind}`);
  return v1.Status.decode(f.body);
}

test("Set / Get round trip with binary values", async () => {
  const c = await Client.open();
  try {
    const value = Buffer.concat([Buffer.from([0, 0, 7]), randomBytes(100)]);
    const set = await c.call(1, M.KV_SET, v1.SetRequest.encode({ namespace: "default", key: `ws-${uid}`, value }).finish());
    assert.equal(set.kind, RESPONSE);
    const version = Number(v1.SetResponse.decode(set.body).version);
    assert.ok(version > 0);
    const get = await c.call(2, M.KV_GET, v1.GetRequest.encode({ namespace: "default", key: `ws-${uid}` }).finish());
    assert.equal(get.kind, RESPONSE);
    const r = v1.GetResponse.decode(get.body);
    assert.equal(r.found, true);
    assert.deepEqual(Buffer.from(r.value), value);
    assert.equal(Number(r.version), version);
  } finally {
    await c.close();
  }
});

test("many requests in flight on one connection are matched by id", async () => {
  const c = await Client.open();
  try {
    const n = 200;
    const sets = [];
    for (let i = 0; i < n; i++) {
      sets.push(c.forId(1000 + i));
      c.ws.send(requestFrame(1, 1000 + i, M.KV_SET, v1.SetRequest.encode({ namespace: "default", key: `many-${uid}-${i}`, value: Buffer.from(`v${i}`) }).finish()));
    }
    for (const f of await Promise.all(sets)) assert.equal(f.kind, RESPONSE);
    const gets = [];
    for (let i = 0; i < n; i++) {
      gets.push(c.forId(5000 + i));
      c.ws.send(requestFrame(1, 5000 + i, M.KV_GET, v1.GetRequest.encode({ namespace: "default", key: `many-${uid}-${i}` }).finish()));
    }
    const frames = await Promise.all(gets);
    frames.forEach((f, i) => {
      assert.equal(f.kind, RESPONSE);
      assert.equal(Buffer.from(v1.GetResponse.decode(f.body).value).toString(), `v${i}`);
    });
  } finally {
    await c.close();
  }
});

test("a garbage frame gets an ERROR frame and the connection keeps serving", async () => {
  const c = await Client.open();
  try {
    const err = c.next((f) => f.kind === ERROR);
    c.ws.send(Buffer.from([9, 9, 9])); // shorter than any header: id 0
    const s = status(await err);
    assert.equal(s.code, 3);
    assert.ok(s.reason.startsWith("PRISM_ERR_"));
    assert.match(s.message, /header/);

    // Random bytes whose kind byte is invalid, with a readable id.
    const junk = randomBytes(64);
    junk[0] = 77;
    junk.writeUInt32LE(4242, 2);
    const s2 = status(await (async () => {
      const p = c.forId(4242);
      c.ws.send(junk);
      return p;
    })());
    assert.equal(s2.code, 3);
    assert.match(s2.message, /kind 77/);

    const text = c.next((f) => f.kind === ERROR && f.id === 0);
    c.ws.send("hello");
    assert.match(status(await text).message, /text frames are not supported/);

    const get = await c.call(7, M.KV_GET, v1.GetRequest.encode({ namespace: "default", key: `nothing-${uid}` }).finish());
    assert.equal(get.kind, RESPONSE);
    assert.equal(v1.GetResponse.decode(get.body).found, false);
  } finally {
    await c.close();
  }
});

test("unknown method id is UNIMPLEMENTED; a truncated body is INVALID_ARGUMENT; errors carry gateway codes", async () => {
  const c = await Client.open();
  try {
    const unknown = status(await c.call(11, 999, new Uint8Array(0)));
    assert.equal(unknown.code, 12);
    assert.match(unknown.message, /999/);

    const full = v1.SetRequest.encode({ namespace: "default", key: "k", value: randomBytes(100) }).finish();
    const truncated = status(await c.call(12, M.KV_SET, full.subarray(0, full.length - 10)));
    assert.equal(truncated.code, 3);
    assert.match(truncated.message, /malformed prism\.v1\.SetRequest/);

    const ns = status(await c.call(13, M.KV_GET, v1.GetRequest.encode({ namespace: `nope-${uid}`, key: "k" }).finish()));
    assert.equal(ns.code, 5);
    assert.equal(ns.reason, "PRISM_ERR_UNKNOWN_NAMESPACE");
    assert.match(ns.message, new RegExp(`nope-${uid}`));
  } finally {
    await c.close();
  }
});

test("optional header fields (timeout, priority, traceparent) are parsed", async () => {
  const c = await Client.open();
  try {
    const tp = Buffer.from("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "latin1");
    const extra = Buffer.concat([Buffer.from([0x10, 0x27, 0, 0]), Buffer.from([1]), Buffer.from([tp.length]), tp]);
    const p = c.forId(21);
    c.ws.send(requestFrame(1, 21, M.KV_GET, v1.GetRequest.encode({ namespace: "default", key: "k" }).finish(), 7, extra));
    assert.equal((await p).kind, RESPONSE);

    const bad = c.forId(22);
    c.ws.send(requestFrame(1, 22, M.KV_GET, new Uint8Array(0), 2, Buffer.from([9])));
    assert.match(status(await bad).message, /priority/);
  } finally {
    await c.close();
  }
});

test("a frame over max_message_bytes closes the connection with 1009; a new connection is served", async () => {
  const c = await Client.open();
  const big = Buffer.alloc(10 * 1024 * 1024);
  requestFrame(1, 1, M.KV_SET, new Uint8Array(0)).copy(big);
  c.ws.send(big);
  assert.equal(await c.whenClosed(), 1009);

  const d = await Client.open();
  try {
    const get = await d.call(1, M.KV_GET, v1.GetRequest.encode({ namespace: "default", key: `x-${uid}` }).finish());
    assert.equal(get.kind, RESPONSE);
  } finally {
    await d.close();
  }
});

test("subscribe: STREAM_READY, then STREAM_MESSAGE frames; CANCEL stops them", async () => {
  const c = await Client.open();
  try {
    const pattern = `ws-${uid}.*`;
    const sub = (id: number) => {
      const p = c.forId(id);
      c.ws.send(requestFrame(1, id, M.PUBSUB_SUBSCRIBE, v1.SubscribeRequest.encode({ namespace: "default", pattern }).finish()));
      return p;
    };
    assert.equal((await sub(100)).kind, STREAM_READY);
    assert.equal((await sub(200)).kind, STREAM_READY);

    const publish = (id: number, n: number) =>
      c.call(id, M.PUBSUB_PUBLISH, v1.PublishRequest.encode({ namespace: "default", topic: `ws-${uid}.t`, payload: Buffer.from([n, 0]), attributes: { n: String(n) } }).finish());

    const m100 = c.forId(100);
    const m200 = c.forId(200);
    assert.equal((await publish(1, 1)).kind, RESPONSE);
    for (const f of [await m100, await m200]) {
      assert.equal(f.kind, STREAM_MESSAGE);
      const msg = v1.PubSubMessage.decode(f.body);
      assert.equal(msg.topic, `ws-${uid}.t`);
      assert.deepEqual(Buffer.from(msg.payload), Buffer.from([1, 0]));
      assert.deepEqual(msg.attributes, { n: "1" });
    }

    // Cancel 100; 200 keeps receiving. Frames are handled in order, so the
    // second publish happens after the cancel took effect.
    c.ws.send(requestFrame(2, 100, 0, new Uint8Array(0)));
    const next200 = c.forId(200);
    assert.equal((await publish(2, 2)).kind, RESPONSE);
    const f = await next200;
    assert.deepEqual(Buffer.from(v1.PubSubMessage.decode(f.body).payload), Buffer.from([2, 0]));
    // A round trip after the delivery: any frame for 100 would have arrived by now.
    assert.equal((await c.call(3, M.KV_GET, v1.GetRequest.encode({ namespace: "default", key: "k" }).finish())).kind, RESPONSE);
    assert.deepEqual(c.frames.filter((x) => x.id === 100), []);
  } finally {
    await c.close();
  }
});

test("subscribe on an unknown namespace is an ERROR frame", async () => {
  const c = await Client.open();
  try {
    const s = status(await c.call(1, M.PUBSUB_SUBSCRIBE, v1.SubscribeRequest.encode({ namespace: `nope-${uid}`, pattern: "a" }).finish()));
    assert.equal(s.code, 5);
  } finally {
    await c.close();
  }
});

test("other upgrade paths are refused with 404", async () => {
  const ws = new WebSocket(`ws://127.0.0.1:${server.httpPort}/v1/other`);
  const status = await new Promise<number>((resolve) => {
    ws.on("unexpected-response", (_req, res) => {
      resolve(res.statusCode!);
      res.resume();
      ws.terminate();
    });
    ws.on("error", () => {});
  });
  assert.equal(status, 404);
});

test("a client that stops reading its subscription is disconnected with 1008", async () => {
  const slow = await Client.open();
  const pub = await Client.open();
  try {
    const topic = `slowws-${uid}`;
    const ready = slow.forId(1);
    slow.ws.send(requestFrame(1, 1, M.PUBSUB_SUBSCRIBE, v1.SubscribeRequest.encode({ namespace: "default", pattern: topic }).finish()));
    assert.equal((await ready).kind, STREAM_READY);
    const socket = (slow.ws as unknown as { _socket: import("node:net").Socket })._socket;
    socket.pause();
    // 40 MiB: more than the socket buffers plus the 16 MiB bound can hold.
    const payload = Buffer.alloc(2 * 1024 * 1024, 3);
    for (let i = 0; i < 20; i++) {
      const r = await pub.call(10 + i, M.PUBSUB_PUBLISH, v1.PublishRequest.encode({ namespace: "default", topic, payload }).finish());
      assert.equal(r.kind, RESPONSE);
    }
    socket.resume();
    assert.equal(await slow.whenClosed(), 1008);
    const delivered = slow.frames.filter((f) => f.kind === STREAM_MESSAGE).length;
    assert.ok(delivered < 20, `${delivered} messages delivered`);
  } finally {
    slow.ws.terminate();
    await pub.close();
  }
});

test("close() ends SSE streams and WebSocket connections", async () => {
  const own = await startServer({ config: defaultConfig(), grpc: false, host: "127.0.0.1", httpPort: 0, log: () => {} });
  const ws = new WebSocket(`ws://127.0.0.1:${own.httpPort}/v1/ws`);
  ws.on("error", () => {});
  const wsClosed = new Promise<number>((resolve) => ws.once("close", resolve));
  await new Promise((resolve) => ws.once("open", resolve));
  const sse = await new Promise<import("node:http").IncomingMessage>((resolve, reject) => {
    import("node:http").then(({ get }) => get(`http://127.0.0.1:${own.httpPort}/v1/ns/default/subscribe?pattern=x`, resolve).on("error", reject));
  });
  let text = "";
  sse.setEncoding("utf8");
  sse.on("data", (s: string) => (text += s));
  const sseEnded = new Promise<void>((resolve) => sse.once("close", resolve));
  while (!text.includes("event: ready")) await new Promise((r) => sse.once("data", r));
  await own.close();
  assert.equal(await wsClosed, 1001);
  await sseEnded;
  assert.match(text, /event: error\ndata: .*UNAVAILABLE/);
});

test("CANCEL of a unary long poll stops it: it leases nothing and gets no answer", async () => {
  const c = await Client.open();
  try {
    const queue = `wsq-${uid}`;
    c.ws.send(requestFrame(1, 1, M.QUEUE_DEQUEUE, v1.DequeueRequest.encode({ namespace: "default", queue, waitSeconds: 20 }).finish()));
    c.ws.send(requestFrame(2, 1, 0, new Uint8Array(0)));
    assert.equal((await c.call(2, M.QUEUE_ENQUEUE, v1.EnqueueRequest.encode({ namespace: "default", queue, payload: Buffer.from([1]) }).finish())).kind, RESPONSE);
    const deq = await c.call(3, M.QUEUE_DEQUEUE, v1.DequeueRequest.encode({ namespace: "default", queue }).finish());
    assert.equal(deq.kind, RESPONSE);
    assert.equal(v1.DequeueResponse.decode(deq.body).messages.length, 1);
    assert.deepEqual(c.frames.filter((f) => f.id === 1), []);
  } finally {
    await c.close();
  }
});
