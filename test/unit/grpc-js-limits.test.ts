// The grpc-js server's connection guard (src/ingress/grpc-js-limits.ts) on
// stand-in streams: unary requests hold their bytes until the client
// half-closes; client-streaming ones (ClaimCheck.Put) only the message being
// received, read from the 5-byte prefixes across chunk boundaries; past
// max_connection_buffered_bytes (or the worker's budget) the stream gets
// RESOURCE_EXHAUSTED naming the limit and is reset; every byte is released.
import { test } from "node:test";
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { GrpcJsConnections } from "../../src/ingress/grpc-js-limits.js";
import { RequestBudget, defaultConnectionLimits, type ConnectionLimits } from "../../src/ingress/limits.js";

class FakeSocket extends EventEmitter {
  destroyed = false;
  constructor(
    readonly remoteAddress: string,
    readonly remotePort: number,
  ) {
    super();
  }
  destroy(): void {
    this.destroyed = true;
    this.emit("close");
  }
}

class FakeStream extends EventEmitter {
  destroyed = false;
  closed = false;
  headersSent = false;
  responded: Record<string, string | number> | undefined;
  rst: number | undefined;
  constructor(readonly session: { socket: FakeSocket }) {
    super();
  }
  respond(h: Record<string, string | number>): void {
    this.responded = h;
    this.headersSent = true;
  }
  close(code: number): void {
    this.rst = code;
    this.closed = true;
    this.emit("close");
  }
}

function prefix(len: number): Buffer {
  const b = Buffer.alloc(5);
  b.writeUInt32BE(len, 1);
  return b;
}

function setup(maxConn: number, budget: number) {
  const limits: ConnectionLimits = { ...defaultConnectionLimits(1 << 20), maxConnectionBufferedBytes: maxConn, budget: new RequestBudget(budget), headerTimeoutMs: 0, requestTimeoutMs: 0 };
  const guard = new GrpcJsConnections(limits, () => {});
  const h2 = new EventEmitter();
  guard.watch(h2 as never);
  const sock = new FakeSocket("127.0.0.1", 40000);
  guard.accept(sock as never);
  const open = (path: string) => {
    const s = new FakeStream({ socket: sock });
    h2.emit("stream", s, { ":path": path });
    return s;
  };
  return { guard, limits, open, sock };
}

test("client-streaming: only the message being received is held, across chunk boundaries", () => {
  const { guard, limits, open } = setup(100, 1000);
  try {
    const s = open("/prism.v1.ClaimCheck/Put");
    // A complete 50-byte message in two chunks, the prefix split 3 + 2: nothing held after it.
    const m1 = Buffer.concat([prefix(50), Buffer.alloc(50, 1)]);
    s.emit("data", m1.subarray(0, 3));
    assert.equal(limits.budget.used, 3);
    s.emit("data", m1.subarray(3));
    assert.equal(limits.budget.used, 0);
    // A second message of 200 bytes, started with 60: 65 held (prefix + body so far)…
    s.emit("data", Buffer.concat([prefix(200), Buffer.alloc(60, 2)]));
    assert.equal(limits.budget.used, 65);
    assert.equal(s.responded, undefined);
    // …40 more would pass the connection's 100: RESOURCE_EXHAUSTED naming the limit, then RST_STREAM.
    s.emit("data", Buffer.alloc(40, 3));
    assert.equal(s.responded?.["grpc-status"], "8");
    assert.match(decodeURIComponent(String(s.responded?.["grpc-message"])), /this connection: more than 100 bytes of unfinished requests/);
    assert.ok(s.closed);
    assert.equal(limits.budget.used, 0, "the cut stream's bytes are released");
    assert.equal(guard.requestsCut, 1);
  } finally {
    guard.close();
  }
});

test("unary: bytes are held until the client half-closes, per connection and against the worker's budget", () => {
  const { guard, limits, open } = setup(1000, 150);
  try {
    const a = open("/prism.v1.KeyValue/Set");
    a.emit("data", Buffer.concat([prefix(80), Buffer.alloc(80)]));
    assert.equal(limits.budget.used, 85, "a complete message waiting for the half-close still counts");
    a.emit("end");
    assert.equal(limits.budget.used, 0);
    const b = open("/prism.v1.KeyValue/Set");
    const c = open("/prism.v1.KeyValue/Set");
    b.emit("data", Buffer.alloc(100));
    c.emit("data", Buffer.alloc(60));
    assert.equal(c.responded?.["grpc-status"], "8");
    assert.match(decodeURIComponent(String(c.responded?.["grpc-message"])), /the server: more than 150 bytes/);
    assert.equal(b.responded, undefined);
    b.emit("close");
    assert.equal(limits.budget.used, 0);
  } finally {
    guard.close();
  }
});

test("a call's connection state is found by its peer (long polls per connection), and dropped with the socket", () => {
  const { guard, sock } = setup(100, 100);
  try {
    const conn = guard.connOf("127.0.0.1:40000");
    assert.deepEqual(conn, { longPolls: 0 });
    assert.equal(guard.connOf("127.0.0.1:40001"), undefined);
    assert.equal(guard.count, 1);
    sock.destroy();
    assert.equal(guard.count, 0);
    assert.equal(guard.connOf("127.0.0.1:40000"), undefined);
  } finally {
    guard.close();
  }
});
