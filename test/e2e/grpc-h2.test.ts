// The node:http2 gRPC server (server.grpc_server: "http2", src/ingress/grpc-h2.ts)
// against the wire rules of PROTOCOL-HTTP2.md, with a raw node:http2 client (exact
// frames, headers and trailers), the grpc-js client, reflection v1alpha and h2load.
// The behaviour shared with the grpc-js server is in grpc-ingress.test.ts, run on both.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { deflateSync, gzipSync } from "node:zlib";
import { connect as h2connect, type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from "node:http2";
import { Client, credentials, loadPackageDefinition, Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { prism } from "../../src/gen/prism.js";
import { startServer, type RunningServer } from "../../src/server.js";
import { defaultConfig } from "../../src/config/load.js";
import { methodByName, type MethodDef } from "../../src/core/methods.js";
import type { RequestContext } from "../../src/core/context.js";
import { encoder } from "../../src/ingress/grpc-codec.js";
import { startGrpc } from "../../src/ingress/grpc.js";
import { Deframer, parseTimeout, percentEncode } from "../../src/ingress/grpc-h2-wire.js";
import type { PrismError } from "../../src/core/errors.js";

const uid = () => randomUUID().slice(0, 8);

function method(service: string, name: string): MethodDef {
  const m = methodByName(service, name);
  assert.ok(m);
  return m;
}

/** One Length-Prefixed-Message. */
function framed(body: Uint8Array, flag = 0, declared = body.length): Buffer {
  const f = Buffer.alloc(5 + body.length);
  f[0] = flag;
  f.writeUInt32BE(declared, 1);
  f.set(body, 5);
  return f;
}

const getBody = (key: string) => prism.v1.GetRequest.encode({ namespace: "default", key }).finish();

interface Raw {
  headers: IncomingHttpHeaders;
  trailers: IncomingHttpHeaders | undefined;
  data: Buffer[];
  /** grpc-status from the trailers, or from the HEADERS of a trailers-only response. */
  status: string | undefined;
  message: string | undefined;
}

/** A raw HTTP/2 call: `body` is written as given (an array: one write per element). */
function raw(session: ClientHttp2Session, path: string, body: Buffer | Buffer[], extra: OutgoingHttpHeaders = {}): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...extra });
    const out: Raw = { headers: {}, trailers: undefined, data: [], status: undefined, message: undefined };
    stream.on("response", (h) => (out.headers = h));
    stream.on("trailers", (t) => (out.trailers = t));
    stream.on("data", (c: Buffer) => out.data.push(c));
    stream.on("error", reject);
    stream.on("close", () => {
      const s = out.trailers ?? out.headers;
      out.status = s["grpc-status"] as string | undefined;
      out.message = s["grpc-message"] === undefined ? undefined : decodeURIComponent(String(s["grpc-message"]));
      resolve(out);
    });
    if (Array.isArray(body)) {
      for (const b of body) stream.write(b);
      stream.end();
    } else stream.end(body);
  });
}

function unary(client: Client, m: MethodDef, req: object, md = new Metadata()): Promise<{ err: ServiceError | null; res: any }> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(m.path, encoder(m.requestType), (b: Buffer) => m.responseType.decode(b), req, md, {}, (err, res) => resolve({ err, res }));
  });
}

describe("gRPC on node:http2: the wire", () => {
  let server: RunningServer;
  let session: ClientHttp2Session;
  let url: string;
  /** grpc-js targets are host:port. */
  let target: string;

  before(async () => {
    const config = defaultConfig();
    config.server.grpc_server = "http2";
    config.server.max_message_bytes = 64 * 1024;
    server = await startServer({ config, grpcPort: 0, host: "127.0.0.1", http: false, log: () => {} });
    target = `127.0.0.1:${server.grpcPort}`;
    url = `http://${target}`;
    session = h2connect(url);
  });

  after(async () => {
    session?.close();
    await server?.close();
  });

  test("a unary answer is HEADERS, one DATA holding prefix and message, and grpc-status 0 trailers", async () => {
    const key = `shape-${uid()}`;
    const set = await raw(session, "/prism.v1.KeyValue/Set", framed(prism.v1.SetRequest.encode({ namespace: "default", key, value: Buffer.from("v") }).finish()));
    assert.equal(set.status, "0");
    const r = await raw(session, "/prism.v1.KeyValue/Get", framed(getBody(key)));
    assert.equal(r.headers[":status"], 200);
    assert.equal(r.headers["content-type"], "application/grpc+proto");
    assert.equal(r.headers["grpc-status"], undefined, "status comes in the trailers");
    assert.equal(r.trailers?.["grpc-status"], "0");
    const body = Buffer.concat(r.data);
    assert.equal(body[0], 0, "not compressed");
    assert.equal(body.readUInt32BE(1), body.length - 5, "one whole message");
    const res = prism.v1.GetResponse.decode(body.subarray(5));
    assert.equal(res.found, true);
    assert.equal(Buffer.from(res.value).toString(), "v");
  });

  test("a request split across many DATA frames (one byte each) is reassembled", async () => {
    const f = framed(getBody(`split-${uid()}`));
    const r = await raw(session, "/prism.v1.KeyValue/Get", [...f].map((b) => Buffer.from([b])));
    assert.equal(r.status, "0", r.message);
    assert.equal(prism.v1.GetResponse.decode(Buffer.concat(r.data).subarray(5)).found, false);
  });

  test("an unknown method is a trailers-only UNIMPLEMENTED", async () => {
    const r = await raw(session, "/prism.v1.KeyValue/Nope", framed(getBody("k")));
    assert.equal(r.trailers, undefined, "trailers-only: the status is in the one HEADERS frame");
    assert.equal(r.headers[":status"], 200);
    assert.equal(r.headers["grpc-status"], String(status.UNIMPLEMENTED));
    assert.match(r.message!, /unknown method \/prism\.v1\.KeyValue\/Nope/);
    assert.equal(r.headers["prism-reason"], "PRISM_ERR_UNKNOWN_METHOD");
  });

  test("a content-type other than application/grpc is HTTP 415; a method other than POST UNIMPLEMENTED", async () => {
    const r = await raw(session, "/prism.v1.KeyValue/Get", framed(getBody("k")), { "content-type": "application/json" });
    assert.equal(r.headers[":status"], 415);
    const g = await raw(session, "/prism.v1.KeyValue/Get", framed(getBody("k")), { ":method": "PUT" });
    assert.equal(g.status, String(status.UNIMPLEMENTED));
    const plus = await raw(session, "/prism.v1.KeyValue/Get", framed(getBody("k")), { "content-type": "application/grpc+proto" });
    assert.equal(plus.status, "0");
  });

  test("request cardinality: zero or two messages are UNIMPLEMENTED, a stream ending inside a message INVALID_ARGUMENT", async () => {
    const none = await raw(session, "/prism.v1.KeyValue/Get", Buffer.alloc(0));
    assert.equal(none.status, String(status.UNIMPLEMENTED));
    assert.match(none.message!, /no request message/);
    const two = await raw(session, "/prism.v1.KeyValue/Get", Buffer.concat([framed(getBody("a")), framed(getBody("b"))]));
    assert.equal(two.status, String(status.UNIMPLEMENTED));
    assert.match(two.message!, /second request message/);
    const cut = await raw(session, "/prism.v1.KeyValue/Get", framed(getBody("abc")).subarray(0, 8));
    assert.equal(cut.status, String(status.INVALID_ARGUMENT));
    assert.match(cut.message!, /^malformed prism\.v1\.GetRequest: /);
    assert.equal(cut.headers["prism-reason"], "PRISM_ERR_MALFORMED");
    const sub = await raw(session, "/prism.v1.PubSub/Subscribe", Buffer.alloc(0));
    assert.equal(sub.status, String(status.UNIMPLEMENTED), "server-streaming too");
  });

  test("a message over max_message_bytes is RESOURCE_EXHAUSTED as soon as its prefix arrives", async () => {
    // Only the prefix is sent: the answer cannot wait for a 100 KiB body that never comes.
    const r = await raw(session, "/prism.v1.KeyValue/Get", framed(Buffer.alloc(0), 0, 100 * 1024));
    assert.equal(r.status, String(status.RESOURCE_EXHAUSTED));
    assert.match(r.message!, /102400 bytes exceeds the server limit of 65536/);
  });

  test("gzip and deflate request messages are inflated; the answer goes uncompressed", async () => {
    const key = `gz-${uid()}`;
    const setBody = prism.v1.SetRequest.encode({ namespace: "default", key, value: Buffer.from("zipped") }).finish();
    const set = await raw(session, "/prism.v1.KeyValue/Set", framed(gzipSync(setBody), 1), { "grpc-encoding": "gzip" });
    assert.equal(set.status, "0", set.message);
    for (const [encoding, pack] of [["gzip", gzipSync], ["deflate", deflateSync]] as const) {
      const r = await raw(session, "/prism.v1.KeyValue/Get", framed(pack(getBody(key)), 1), { "grpc-encoding": encoding });
      assert.equal(r.status, "0", `${encoding}: ${r.message}`);
      const body = Buffer.concat(r.data);
      assert.equal(body[0], 0, "the response is not compressed");
      assert.equal(Buffer.from(prism.v1.GetResponse.decode(body.subarray(5)).value).toString(), "zipped");
    }
    // An uncompressed message is fine whatever the grpc-encoding header says.
    const flag0 = await raw(session, "/prism.v1.KeyValue/Get", framed(getBody(key)), { "grpc-encoding": "gzip" });
    assert.equal(flag0.status, "0");
  });

  test("compression Prism cannot read is UNIMPLEMENTED naming what it accepts; bad or oversized gzip is refused", async () => {
    const snappy = await raw(session, "/prism.v1.KeyValue/Get", framed(getBody("k"), 1), { "grpc-encoding": "snappy" });
    assert.equal(snappy.status, String(status.UNIMPLEMENTED));
    assert.equal(snappy.headers["grpc-accept-encoding"], "identity,deflate,gzip");
    assert.match(snappy.message!, /grpc-encoding "snappy" is not supported/);
    const bare = await raw(session, "/prism.v1.KeyValue/Get", framed(getBody("k"), 1));
    assert.equal(bare.status, String(status.UNIMPLEMENTED), "the compressed flag without a grpc-encoding");
    const corrupt = await raw(session, "/prism.v1.KeyValue/Get", framed(Buffer.from("not gzip at all"), 1), { "grpc-encoding": "gzip" });
    assert.equal(corrupt.status, String(status.INVALID_ARGUMENT));
    assert.match(corrupt.message!, /^malformed prism\.v1\.GetRequest: the gzip data does not inflate/);
    // ~200 bytes on the wire, 1 MiB inflated: capped at max_message_bytes (64 KiB here).
    const bomb = gzipSync(prism.v1.SetRequest.encode({ namespace: "default", key: "b", value: Buffer.alloc(1024 * 1024) }).finish());
    assert.ok(bomb.length < 2048);
    const big = await raw(session, "/prism.v1.KeyValue/Set", framed(bomb, 1), { "grpc-encoding": "gzip" });
    assert.equal(big.status, String(status.RESOURCE_EXHAUSTED));
    assert.match(big.message!, /inflating beyond 65536 bytes/);
    const still = await raw(session, "/prism.v1.KeyValue/Get", framed(getBody("b")));
    assert.equal(still.status, "0", "the server keeps serving");
    assert.equal(prism.v1.GetResponse.decode(Buffer.concat(still.data).subarray(5)).found, false, "nothing of the refused Set was written");
  });

  test("the grpc-js client with gzip compression on works end to end", async () => {
    const client = new Client(target, credentials.createInsecure(), { "grpc.default_compression_algorithm": 2 });
    try {
      const key = `gzc-${uid()}`;
      const set = await unary(client, method("KeyValue", "Set"), { namespace: "default", key, value: Buffer.from("x".repeat(4096)) });
      assert.equal(set.err, null, set.err?.message);
      const got = await unary(client, method("KeyValue", "Get"), { namespace: "default", key });
      assert.equal(got.err, null, got.err?.message);
      assert.equal(Buffer.from(got.res.value).toString(), "x".repeat(4096));
    } finally {
      client.close();
    }
  });

  test("grpc-timeout sets the deadline; a malformed one is INVALID_ARGUMENT; the server enforces it", async () => {
    let seen: RequestContext | undefined;
    const key = `to-${uid()}`;
    server.gateway.use((ctx) => {
      if (ctx.method.name === "Exists") seen = ctx;
    });
    const before = Date.now();
    const exists = framed(prism.v1.ExistsRequest.encode({ namespace: "default", key }).finish());
    assert.equal((await raw(session, "/prism.v1.KeyValue/Exists", exists, { "grpc-timeout": "5S" })).status, "0");
    assert.ok(seen && seen.deadline >= before + 5000 && seen.deadline <= Date.now() + 5000, `deadline ${seen?.deadline}`);
    const bad = await raw(session, "/prism.v1.KeyValue/Exists", exists, { "grpc-timeout": "5 seconds" });
    assert.equal(bad.status, String(status.INVALID_ARGUMENT));
    assert.match(bad.message!, /^grpc-timeout: /);
    // No client-side deadline here: the DEADLINE_EXCEEDED comes from the server.
    const poll = framed(prism.v1.DequeueRequest.encode({ namespace: "default", queue: `q-${uid()}`, waitSeconds: 5 }).finish());
    const late = await raw(session, "/prism.v1.Queue/Dequeue", poll, { "grpc-timeout": "150m" });
    assert.equal(late.status, String(status.DEADLINE_EXCEEDED));
  });

  test("grpc-message is percent-encoded UTF-8 and arrives intact through the grpc-js client", async () => {
    const client = new Client(target, credentials.createInsecure());
    try {
      const ns = `ns-é%ü-${uid()}`;
      const { err } = await unary(client, method("KeyValue", "Get"), { namespace: ns, key: "k" });
      assert.equal(err?.code, status.NOT_FOUND);
      assert.equal(err?.details, `namespace "${ns}" is not configured`);
      const r = await raw(session, "/prism.v1.KeyValue/Get", framed(prism.v1.GetRequest.encode({ namespace: ns, key: "k" }).finish()));
      assert.match(String(r.headers["grpc-message"]), /^[\x20-\x7e]+$/, "ASCII on the wire");
      assert.equal(r.message, `namespace "${ns}" is not configured`);
    } finally {
      client.close();
    }
  });

  test("a client that resets the stream cancels the call's context (long poll)", async () => {
    let seen: RequestContext | undefined;
    const queue = `cancel-${uid()}`;
    server.gateway.use((ctx) => {
      if (ctx.method.name === "Dequeue" && ctx.peer) seen = ctx;
    });
    const stream = session.request({ ":method": "POST", ":path": "/prism.v1.Queue/Dequeue", "content-type": "application/grpc", te: "trailers" });
    stream.on("error", () => {});
    stream.end(framed(prism.v1.DequeueRequest.encode({ namespace: "default", queue, waitSeconds: 15 }).finish()));
    for (let i = 0; i < 200 && !seen; i++) await new Promise((r) => setTimeout(r, 5));
    assert.ok(seen, "the call reached the gateway");
    assert.equal(seen.cancelled, false);
    const closed = new Promise((r) => stream.once("close", r));
    stream.close(0x8); // RST_STREAM CANCEL
    await closed;
    for (let i = 0; i < 200 && !seen.cancelled; i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(seen.cancelled, true);
  });

  test("reflection v1alpha answers file_containing_symbol and file_by_filename", async () => {
    const req = createRequire(import.meta.url);
    const protoFile = join(dirname(req.resolve("@grpc/reflection")), "../proto/grpc/reflection/v1alpha/reflection.proto");
    const pkg = loadPackageDefinition(loadSync(protoFile, { keepCase: true, defaults: true })) as any;
    const rc = new pkg.grpc.reflection.v1alpha.ServerReflection(target, credentials.createInsecure());
    /** One request → its response, on one bidirectional call. */
    const ask = async (requests: object[]): Promise<any[]> => {
      const call = rc.ServerReflectionInfo();
      const responses: any[] = [];
      const ended = new Promise<void>((resolve, reject) => {
        call.on("data", (r: any) => responses.push(r));
        call.on("end", resolve);
        call.on("error", reject);
      });
      for (const r of requests) call.write(r);
      call.end();
      await ended;
      return responses;
    };
    try {
      const [bySymbol, missing] = await ask([{ file_containing_symbol: "prism.v1.Queue" }, { file_containing_symbol: "no.such.Symbol" }]);
      const file: Buffer = bySymbol.file_descriptor_response.file_descriptor_proto[0];
      assert.ok(file.length > 0);
      assert.equal(missing.error_response.error_code, status.NOT_FOUND);
      // FileDescriptorProto field 1 (name), a short string: tag 0x0a, one-byte length.
      assert.equal(file[0], 0x0a);
      const name = file.subarray(2, 2 + file[1]!).toString();
      const [byName] = await ask([{ file_by_filename: name }]);
      assert.deepEqual(byName.file_descriptor_response.file_descriptor_proto[0], file);
    } finally {
      rc.close();
    }
  });

  test("a malformed reflection request ends the reflection stream, not the server", async () => {
    const r = await raw(session, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", framed(Buffer.from([0x0a, 0xff])));
    assert.notEqual(r.status, "0");
    assert.notEqual(r.status, String(status.INTERNAL));
    assert.equal((await raw(session, "/prism.v1.KeyValue/Get", framed(getBody("k")))).status, "0");
  });

  test("h2load: 2,000 Gets over 4 connections x 8 streams, all answered", async (t) => {
    const dir = mkdtempSync(join(tmpdir(), `prism-h2load-${uid()}-`));
    try {
      const file = join(dir, "get.bin");
      writeFileSync(file, framed(getBody(`h2load-${uid()}`)));
      const args = ["-n", "2000", "-c", "4", "-m", "8", "--header", "content-type: application/grpc", "--header", "te: trailers", "-d", file, `${url}/prism.v1.KeyValue/Get`];
      const out = await new Promise<string | undefined>((resolve, reject) =>
        execFile("h2load", args, { timeout: 60_000 }, (err, stdout) => {
          if (err && (err as NodeJS.ErrnoException).code === "ENOENT") resolve(undefined);
          else if (err) reject(err);
          else resolve(stdout);
        }),
      );
      if (out === undefined) return t.skip("h2load is not installed (apt-get install nghttp2-client)");
      assert.match(out, /requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout/);
      assert.match(out, /status codes: 2000 2xx/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("gRPC on node:http2: closing", () => {
  test("close() sends GOAWAY: in-flight calls finish, idle connections end, new calls fail UNAVAILABLE", async () => {
    const server = await startServer({ config: defaultConfig(), grpc: false, http: false, log: () => {} });
    const grpc = await startGrpc(server.gateway, { host: "127.0.0.1", port: 0, maxMessageBytes: 1 << 20, log: () => {}, server: "http2", shutdownGraceMs: 10_000 });
    const client = new Client(`127.0.0.1:${grpc.port}`, credentials.createInsecure());
    try {
      const ex = method("KeyValue", "Exists");
      assert.equal((await unary(client, ex, { namespace: "default", key: "k" })).err, null);
      // A long poll in flight: close() waits for it (grace 10 s), it ends when it is cancelled by the drain.
      const poll = unary(client, method("Queue", "Dequeue"), { namespace: "default", queue: `bye-${uid()}`, waitSeconds: 1 });
      await new Promise((r) => setTimeout(r, 50));
      const closing = grpc.close();
      const res = await poll;
      assert.equal(res.err, null, `the in-flight call completed: ${res.err?.details}`);
      await closing;
      const after = await unary(client, ex, { namespace: "default", key: "k" });
      assert.equal(after.err?.code, status.UNAVAILABLE);
    } finally {
      client.close();
      await grpc.close();
      await server.close();
    }
  });
});

describe("gRPC on node:http2: wire helpers", () => {
  test("grpc-timeout units H M S m u n, at most 8 digits", () => {
    assert.equal(parseTimeout("1H"), 3_600_000);
    assert.equal(parseTimeout("2M"), 120_000);
    assert.equal(parseTimeout("5S"), 5000);
    assert.equal(parseTimeout("200m"), 200);
    assert.equal(parseTimeout("1500u"), 1.5);
    assert.equal(parseTimeout("3000000n"), 3);
    assert.equal(parseTimeout("99999999S"), 99_999_999_000);
    for (const bad of ["", "5", "S", "123456789S", "5s", "-1S", "1.5S", " 5S", "5S "]) assert.throws(() => parseTimeout(bad), /grpc-timeout/, bad);
  });

  test("percentEncode keeps printable ASCII but %, encodes the rest as UTF-8, replaces lone surrogates", () => {
    assert.equal(percentEncode("plain text: ok"), "plain text: ok");
    assert.equal(percentEncode("100%"), "100%25");
    assert.equal(percentEncode("é\n"), "%C3%A9%0A");
    assert.equal(decodeURIComponent(percentEncode("a\uD800b")), "a\uFFFDb");
    assert.equal(decodeURIComponent(percentEncode("😀 ok")), "😀 ok");
  });

  class Collect extends Deframer {
    messages: [number, string][] = [];
    errors: PrismError[] = [];
    protected frameReceived(flag: number, body: Buffer): void {
      this.messages.push([flag, body.toString()]);
    }
    protected framingFailed(e: PrismError): void {
      this.errors.push(e);
    }
    get rest(): number {
      return this.partial;
    }
  }

  test("the deframer reassembles messages cut at every position, and refuses oversized ones", () => {
    const stream = Buffer.concat([framed(Buffer.from("hello")), framed(Buffer.alloc(0)), framed(Buffer.from("world!"), 1)]);
    for (let a = 0; a <= stream.length; a++) {
      for (let b = a; b <= stream.length; b++) {
        const d = new Collect(100);
        d.push(stream.subarray(0, a));
        d.push(stream.subarray(a, b));
        d.push(stream.subarray(b));
        assert.deepEqual(d.messages, [[0, "hello"], [0, ""], [1, "world!"]], `cut at ${a}, ${b}`);
        assert.equal(d.rest, 0);
      }
    }
    const d = new Collect(4);
    d.push(framed(Buffer.from("12345")).subarray(0, 3));
    d.push(framed(Buffer.from("12345")).subarray(3));
    assert.equal(d.messages.length, 0);
    assert.equal(d.errors.length, 1);
    assert.match(d.errors[0]!.message, /5 bytes exceeds the server limit of 4/);
    const cut = new Collect(100);
    cut.push(framed(Buffer.from("abc")).subarray(0, 6));
    assert.equal(cut.rest, 6);
  });
});
