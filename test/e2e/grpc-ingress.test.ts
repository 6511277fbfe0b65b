// The gRPC ingress end to end: a gateway started in-process (memstore), called
// with a raw grpc-js client on the same static codecs the server uses.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { randomUUID } from "node:crypto";
import {
  Client,
  credentials,
  loadPackageDefinition,
  Metadata,
  status,
  type ClientReadableStream,
  type ServiceError,
} from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { startServer, type RunningServer } from "../../src/server.js";
import { defaultConfig } from "../../src/config/load.js";
import { methodByName, type MethodDef } from "../../src/core/methods.js";
import type { RequestContext } from "../../src/core/context.js";
import { encoder } from "../../src/ingress/grpc-codec.js";
import { startGrpc } from "../../src/ingress/grpc.js";
import type { Listening } from "../../src/ingress/types.js";

const uid = () => randomUUID().slice(0, 8);

function method(service: string, name: string): MethodDef {
  const m = methodByName(service, name);
  assert.ok(m, `${service}/${name} is in the method table`);
  return m;
}

interface CallOptions {
  deadlineMs?: number;
  metadata?: Metadata;
}

type Outcome = { res: any; err: undefined; trailers: Metadata } | { res: undefined; err: ServiceError; trailers: Metadata };

/** A unary call with the method table's codecs; `raw` sends the given bytes as the request body. */
function unary(client: Client, m: MethodDef, req: object | Buffer, opts: CallOptions = {}): Promise<Outcome> {
  const serialize = Buffer.isBuffer(req) ? (b: Buffer) => b : encoder(m.requestType);
  const deserialize = (b: Buffer) => m.responseType.decode(b);
  return new Promise((resolve) => {
    let trailers = new Metadata();
    const call = client.makeUnaryRequest(
      m.path,
      serialize as (v: any) => Buffer,
      deserialize,
      req,
      opts.metadata ?? new Metadata(),
      opts.deadlineMs ? { deadline: Date.now() + opts.deadlineMs } : {},
      (err, res) => setImmediate(() => resolve(err ? { err, res: undefined, trailers } : { res, err: undefined, trailers })),
    );
    call.on("status", (s) => (trailers = s.metadata));
  });
}

async function ok(client: Client, service: string, name: string, req: object, opts?: CallOptions): Promise<any> {
  const r = await unary(client, method(service, name), req, opts);
  if (r.err) assert.fail(`${service}/${name}: ${r.err.code} ${r.err.details}`);
  return r.res;
}

async function fails(client: Client, service: string, name: string, req: object | Buffer, opts?: CallOptions) {
  const r = await unary(client, method(service, name), req, opts);
  assert.ok(r.err, `${service}/${name} should fail`);
  return { err: r.err, reason: r.trailers.get("prism-reason")[0] };
}

function subscribe(client: Client, req: object): ClientReadableStream<any> {
  const m = method("PubSub", "Subscribe");
  return client.makeServerStreamRequest(m.path, encoder(m.requestType), (b: Buffer) => m.responseType.decode(b), req, new Metadata(), {});
}

const once = <T>(emitter: NodeJS.EventEmitter, event: string) => new Promise<T>((resolve) => emitter.once(event, resolve));

/** Resolves with the final status of a stream (its 'error' is consumed). */
function statusOf(stream: ClientReadableStream<any>): Promise<{ code: number; details: string }> {
  stream.on("error", () => {});
  return once(stream, "status");
}

/** Both gRPC server implementations (server.grpc_server) run every case. */
const IMPLEMENTATIONS = ["grpc-js", "http2"] as const;
type Impl = (typeof IMPLEMENTATIONS)[number];

function configFor(impl: Impl) {
  const config = defaultConfig();
  config.server.grpc_server = impl;
  // This process also runs the test's own clients and heavy neighbours (24 MiB of SSE publishes…), so its event loop is
  // busy for reasons that are not load: low-priority calls asserted to succeed must not meet the utilization rule here
  // (it has its own tests: test/unit/shedding.test.ts, bench overload-critical-p99).
  config.server.shedding.low_max_utilization = 0;
  return config;
}

for (const impl of IMPLEMENTATIONS) {
describe(`gRPC ingress (${impl})`, () => {
  let server: RunningServer;
  let client: Client;

  before(async () => {
    server = await startServer({ config: configFor(impl), grpcPort: 0, host: "127.0.0.1", http: false, log: () => {} });
    assert.ok(server.grpcPort > 0);
    client = new Client(`127.0.0.1:${server.grpcPort}`, credentials.createInsecure());
  });

  after(async () => {
    client?.close();
    await server?.close();
  });

  test("Set then Get round-trips a binary value with zero bytes", async () => {
    const key = `bin-${uid()}`;
    const value = Buffer.from([0, 1, 0, 255, 0, 0, 7, 0]);
    const set = await ok(client, "KeyValue", "Set", { namespace: "default", key, value });
    // Client-side, protobufjs decodes uint64 to Long: compare as numbers.
    const version = Number(set.version);
    assert.ok(version > 0);
    const got = await ok(client, "KeyValue", "Get", { namespace: "default", key });
    assert.equal(got.found, true);
    assert.deepEqual(Buffer.from(got.value), value);
    assert.equal(Number(got.version), version);
    // uint64 request fields decode server-side too: compare-and-set on the current version.
    const next = await ok(client, "KeyValue", "Set", { namespace: "default", key, value: Buffer.from([1]), expectedVersion: version });
    assert.ok(Number(next.version) > version);
    const { err, reason } = await fails(client, "KeyValue", "Set", { namespace: "default", key, value: Buffer.from([2]), expectedVersion: version });
    assert.equal(err.code, status.FAILED_PRECONDITION);
    assert.equal(reason, "PRISM_ERR_CAS_CONFLICT");
    const missing = await ok(client, "KeyValue", "Get", { namespace: "default", key: `${key}-absent` });
    assert.equal(missing.found, false);
  });

  test("an unknown namespace is NOT_FOUND, named, with the prism-reason trailer", async () => {
    const ns = `nope-${uid()}`;
    const { err, reason } = await fails(client, "KeyValue", "Get", { namespace: ns, key: "k" });
    assert.equal(err.code, status.NOT_FOUND);
    assert.match(err.details, new RegExp(ns));
    assert.equal(reason, "PRISM_ERR_UNKNOWN_NAMESPACE");
  });

  test("a value over the namespace limit is INVALID_ARGUMENT naming `value`", async () => {
    const ns = `grpc-small-${uid()}`;
    const applied = await ok(client, "Admin", "ApplyNamespace", {
      config: JSON.stringify({ name: ns, backend: { type: "memstore" }, limits: { max_value_bytes: 16 } }),
    });
    assert.equal(applied.created, true);
    const { err, reason } = await fails(client, "KeyValue", "Set", { namespace: ns, key: "k", value: Buffer.alloc(17, 1) });
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.match(err.details, /^value: 17 bytes exceeds/);
    assert.equal(reason, "PRISM_ERR_TOO_LARGE");
    await ok(client, "KeyValue", "Set", { namespace: ns, key: "k", value: Buffer.alloc(16, 1) });
  });

  test("a truncated or garbage body is INVALID_ARGUMENT naming the message, and the server keeps serving", async () => {
    const key = `trunc-${uid()}`;
    const m = method("KeyValue", "Set");
    const whole = encoder(m.requestType)({ namespace: "default", key, value: Buffer.alloc(32, 9) });
    for (const body of [whole.subarray(0, whole.length - 5), Buffer.from([0x0a, 0xff, 0xff]), Buffer.from([0x0f, 0x01])]) {
      const { err, reason } = await fails(client, "KeyValue", "Set", body);
      assert.equal(err.code, status.INVALID_ARGUMENT, err.details);
      assert.match(err.details, /^malformed prism\.v1\.SetRequest: /);
      assert.equal(reason, "PRISM_ERR_MALFORMED");
    }
    const got = await ok(client, "KeyValue", "Get", { namespace: "default", key });
    assert.equal(got.found, false, "the truncated Set was not applied");
    await ok(client, "KeyValue", "Set", { namespace: "default", key, value: Buffer.from("fine") });
    assert.equal(Buffer.from((await ok(client, "KeyValue", "Get", { namespace: "default", key })).value).toString(), "fine");
  });

  test("an unknown method is UNIMPLEMENTED", async () => {
    const m = { ...method("KeyValue", "Get"), path: "/prism.v1.KeyValue/Nope" };
    const r = await unary(client, m, { namespace: "default", key: "k" });
    assert.equal(r.err?.code, status.UNIMPLEMENTED);
  });

  test("metadata: prism-priority, traceparent and the deadline reach the request context", async () => {
    let seen: RequestContext | undefined;
    const key = `md-${uid()}`;
    server.gateway.use((ctx) => {
      if (ctx.method.name === "Exists" && ctx.peer) seen = ctx;
    });
    const md = new Metadata();
    md.set("prism-priority", "low");
    md.set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    const before = Date.now();
    await ok(client, "KeyValue", "Exists", { namespace: "default", key }, { metadata: md, deadlineMs: 60_000 });
    assert.ok(seen);
    assert.equal(seen.ingress, "grpc");
    assert.equal(seen.priority, "low");
    assert.equal(seen.traceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    assert.ok(seen.deadline >= before + 50_000 && seen.deadline <= Date.now() + 60_000, `deadline ${seen.deadline}`);

    const bad = new Metadata();
    bad.set("prism-priority", "urgent");
    const { err } = await fails(client, "KeyValue", "Exists", { namespace: "default", key }, { metadata: bad });
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.match(err.details, /^prism-priority: "urgent"/);
  });

  test("Subscribe sends headers once live, then the published messages", async () => {
    const topic = `orders.${uid()}`;
    const stream = subscribe(client, { namespace: "default", pattern: topic });
    const done = statusOf(stream);
    await once(stream, "metadata");
    const payload = Buffer.from([0, 42, 0]);
    const message = once<any>(stream, "data");
    const pub = await ok(client, "PubSub", "Publish", { namespace: "default", topic, payload, attributes: { a: "1" } });
    const got = await message;
    assert.equal(got.topic, topic);
    assert.deepEqual(Buffer.from(got.payload), payload);
    assert.deepEqual({ ...got.attributes }, { a: "1" });
    assert.equal(got.messageId, pub.messageId);
    stream.cancel();
    assert.equal((await done).code, status.CANCELLED);
  });

  test("Subscribe errors end the stream with the error status and reason", async () => {
    const stream = subscribe(client, { namespace: `nope-${uid()}`, pattern: "a.b" });
    let trailers: Metadata | undefined;
    stream.on("status", (s) => (trailers = s.metadata));
    const s = await statusOf(stream);
    assert.equal(s.code, status.NOT_FOUND);
    assert.equal(trailers?.get("prism-reason")[0], "PRISM_ERR_UNKNOWN_NAMESPACE");

    const garbage = client.makeServerStreamRequest(method("PubSub", "Subscribe").path, (b: Buffer) => b, (b: Buffer) => b, Buffer.from([0x12, 0x09]), new Metadata(), {});
    const g = await statusOf(garbage);
    assert.equal(g.code, status.INVALID_ARGUMENT);
    assert.match(g.details, /^malformed prism\.v1\.SubscribeRequest/);
  });

  test("a Dequeue long poll past the client deadline ends DEADLINE_EXCEEDED", async () => {
    const { err } = await fails(client, "Queue", "Dequeue", { namespace: "default", queue: `q-${uid()}`, waitSeconds: 5 }, { deadlineMs: 200 });
    assert.equal(err.code, status.DEADLINE_EXCEEDED);
  });

  test("server reflection lists the five services and resolves their descriptors", async () => {
    const req = createRequire(import.meta.url);
    const protoFile = join(dirname(req.resolve("@grpc/reflection")), "../proto/grpc/reflection/v1/reflection.proto");
    const pkg = loadPackageDefinition(loadSync(protoFile, { keepCase: true, defaults: true })) as any;
    const Reflection = pkg.grpc.reflection.v1.ServerReflection;
    const rc = new Reflection(`127.0.0.1:${server.grpcPort}`, credentials.createInsecure());
    try {
      const call = rc.ServerReflectionInfo();
      const responses: any[] = [];
      const ended = new Promise<void>((resolve, reject) => {
        call.on("data", (r: any) => responses.push(r));
        call.on("end", resolve);
        call.on("error", reject);
      });
      call.write({ list_services: "" });
      call.write({ file_containing_symbol: "prism.v1.KeyValue" });
      call.end();
      await ended;
      const names = responses[0].list_services_response.service.map((s: any) => s.name);
      for (const s of ["KeyValue", "PubSub", "Queue", "Stream", "Admin"]) assert.ok(names.includes(`prism.v1.${s}`), `${s} in ${names}`);
      assert.ok(responses[1].file_descriptor_response?.file_descriptor_proto.length > 0, "descriptor of prism.v1.KeyValue");
    } finally {
      rc.close();
    }
  });
});

describe(`gRPC ingress (${impl}): slow subscribers`, () => {
  let server: RunningServer;
  let grpc: Listening;
  let client: Client;

  before(async () => {
    server = await startServer({ config: defaultConfig(), grpc: false, http: false, log: () => {} });
    grpc = await startGrpc(server.gateway, { host: "127.0.0.1", port: 0, maxMessageBytes: 1 << 20, log: () => {}, maxBufferedMessages: 20, server: impl });
    client = new Client(`127.0.0.1:${grpc.port}`, credentials.createInsecure());
  });

  after(async () => {
    client?.close();
    await grpc?.close();
    await server?.close();
  });

  test("a subscriber that stops reading is dropped with RESOURCE_EXHAUSTED", async () => {
    const topic = `flood.${uid()}`;
    const stream = subscribe(client, { namespace: "default", pattern: topic });
    const done = statusOf(stream);
    await once(stream, "metadata");
    // Take one message, then stop reading. (A grpc-js client that never reads at
    // all buffers everything itself and never applies HTTP/2 flow control.)
    stream.on("data", () => stream.pause());
    const payload = Buffer.alloc(16 * 1024, 7);
    let code: number | undefined;
    void done.then((s) => (code = s.code));
    // Flow control holds ~64 KiB per stream; a few hundred 16 KiB messages overflow 20 buffered ones.
    for (let i = 0; i < 400 && code === undefined; i++) {
      await ok(client, "PubSub", "Publish", { namespace: "default", topic, payload });
    }
    assert.equal((await done).code, status.RESOURCE_EXHAUSTED);
    // The server is fine afterwards.
    assert.equal((await ok(client, "KeyValue", "Exists", { namespace: "default", key: `after-${uid()}` })).exists, false);
  });

  test("close() ends open subscriptions with UNAVAILABLE", async () => {
    const own = await startGrpc(server.gateway, { host: "127.0.0.1", port: 0, maxMessageBytes: 1 << 20, log: () => {}, server: impl });
    const c = new Client(`127.0.0.1:${own.port}`, credentials.createInsecure());
    try {
      const stream = subscribe(c, { namespace: "default", pattern: `bye.${uid()}` });
      let trailers: Metadata | undefined;
      stream.on("status", (st) => (trailers = st.metadata));
      const done = statusOf(stream);
      await once(stream, "metadata");
      await own.close();
      assert.equal((await done).code, status.UNAVAILABLE);
      assert.equal(trailers?.get("prism-reason")[0], "PRISM_ERR_BACKEND_UNAVAILABLE");
    } finally {
      c.close();
      await own.close();
    }
  });
});
}
