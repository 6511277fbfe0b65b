/**
 * W3C trace context leaves the process with the messages (issue 6:
 * "propagated to the backend call"). `prism serve` runs against the real
 * NATS (4222) and Redis (6379), under per-run prefixes.
 *
 * Tracing on (an OTLP/HTTP receiver started here): a message sent with a
 * caller's `traceparent` is delivered (Dequeue, Read, SSE subscription) with a
 * `traceparent` attribute whose trace id is the caller's and whose parent span
 * id is Prism's backend (CLIENT) span of that call, as exported over OTLP; on
 * NATS the message also carries the native `traceparent` header. A caller's
 * own `traceparent` attribute is delivered unchanged.
 *
 * Tracing off (the default): the same calls add no attribute and no header.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { request, type IncomingMessage } from "node:http";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes, randomUUID } from "node:crypto";
import { connect, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import { startPrism, type PrismProcess } from "./serve-process.js";
import { hexId, httpCall, spanAttr, startOtlpReceiver, type OtlpReceiver } from "./observability-helpers.js";
import { cleanupPrefix } from "../unit/nats-cleanup.js";
import { deleteRedisPrefix } from "../helpers/redis-cleanup.js";

const NATS = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const REDIS = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const tag = randomUUID().slice(0, 8);
const natsPrefix = `tp-${tag}`;
const redisPrefix = `prism-tp-${process.pid}-${tag}`;
const NATS_NS = `tpn-${tag}`;
const REDIS_NS = `tpr-${tag}`;
const dir = mkdtempSync(join(tmpdir(), "prism-tp-"));

after(async () => {
  rmSync(dir, { recursive: true, force: true });
  await cleanupPrefix(NATS, natsPrefix).catch(() => 0);
  const r = new Redis(REDIS, { lazyConnect: true });
  await r.connect();
  await deleteRedisPrefix(r, redisPrefix);
  r.disconnect();
});

function config(name: string): string {
  const path = join(dir, name);
  writeFileSync(
    path,
    [
      "namespaces:",
      `  - name: ${NATS_NS}`,
      `    backend: { type: nats, servers: "${NATS}", prefix: ${natsPrefix} }`,
      `  - name: ${REDIS_NS}`,
      `    backend: { type: redis, url: "${REDIS}", key_prefix: ${redisPrefix} }`,
    ].join("\n"),
  );
  return path;
}

function caller(): { traceId: string; traceparent: string } {
  const traceId = randomBytes(16).toString("hex");
  return { traceId, traceparent: `00-${traceId}-${randomBytes(8).toString("hex")}-01` };
}

async function rpc(srv: PrismProcess, method: string, body: object, headers: Record<string, string> = {}): Promise<any> {
  const res = await httpCall(srv.httpPort, "POST", `/v1/${method}`, JSON.stringify(body), { "content-type": "application/json", ...headers });
  assert.equal(res.status, 200, `${method}: ${res.body.toString()}`);
  return JSON.parse(res.body.toString());
}

const b64 = (s: string) => Buffer.from(s).toString("base64");

/** Enqueue with the caller's traceparent header, then Dequeue (and ack): the delivered attributes. */
async function enqueueDequeue(srv: PrismProcess, ns: string, attributes: Record<string, string>, traceparent: string): Promise<Record<string, string>> {
  const queue = `q-${randomBytes(3).toString("hex")}`;
  await rpc(srv, "Queue/Enqueue", { namespace: ns, queue, payload: b64("job"), attributes }, { traceparent });
  const { messages } = await rpc(srv, "Queue/Dequeue", { namespace: ns, queue, maxMessages: 1, waitSeconds: 5 });
  assert.equal(messages.length, 1);
  await rpc(srv, "Queue/Ack", { namespace: ns, queue, receipt: messages[0].receipt });
  return messages[0].attributes;
}

/** The first message on a raw NATS subscription to Prism's subject for `topic` in NATS_NS. */
function rawNext(nc: NatsConnection, topic: string): Promise<Msg> {
  const sub = nc.subscribe(`${natsPrefix}.${NATS_NS}.ps.${topic}`, { max: 1 });
  return (async () => {
    for await (const m of sub) return m;
    throw new Error("raw NATS subscription ended without a message");
  })();
}

/** An SSE subscription; next() resolves with the next `message` event's PubSubMessage. */
async function sse(srv: PrismProcess, ns: string, pattern: string): Promise<{ next(): Promise<any>; close(): void }> {
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port: srv.httpPort, path: `/v1/ns/${ns}/subscribe?pattern=${encodeURIComponent(pattern)}`, agent: false }, resolve);
    req.on("error", reject);
    req.end();
  });
  assert.equal(res.statusCode, 200);
  res.setEncoding("utf8");
  let buf = "";
  const events: { event: string; data: string }[] = [];
  let wake: (() => void) | undefined;
  res.on("data", (chunk: string) => {
    buf += chunk;
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1] ?? "message";
      const data = /^data: (.*)$/m.exec(block)?.[1] ?? "";
      events.push({ event, data });
    }
    wake?.();
  });
  const take = async (): Promise<{ event: string; data: string }> => {
    while (events.length === 0) await new Promise<void>((r) => (wake = r));
    return events.shift()!;
  };
  assert.equal((await take()).event, "ready");
  return {
    async next() {
      const ev = await take();
      assert.equal(ev.event, "message", ev.data);
      return JSON.parse(ev.data);
    },
    close: () => res.destroy(),
  };
}

describe("trace context propagation, tracing on", () => {
  let otlp: OtlpReceiver;
  let srv: PrismProcess;
  let nc: NatsConnection;

  before(async () => {
    otlp = await startOtlpReceiver();
    srv = await startPrism(["--workers", "1", "--config", config("on.yaml"), "--grpc-port", "0", "--http-port", "0"], {
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: otlp.endpoint, OTEL_BSP_SCHEDULE_DELAY: "50" },
    });
    nc = await connect({ servers: NATS });
  });
  after(async () => {
    await nc?.close();
    await srv?.stop();
    await otlp?.close();
  });

  /** Prism's backend (CLIENT) span of the caller's `method` call, once exported. */
  async function backendSpan(traceId: string, method: string, ns: string) {
    const find = () => otlp.spans.find((s) => s.kind === 3 && hexId(s.traceId, 16) === traceId && spanAttr(s, "prism.method") === method);
    await otlp.until(() => find() !== undefined);
    const span = find()!;
    assert.equal(spanAttr(span, "prism.namespace"), ns);
    return span;
  }

  for (const [backend, ns] of [["nats", NATS_NS], ["redis", REDIS_NS]] as const) {
    test(`${backend}: a dequeued message's traceparent is the caller's trace, parented on Prism's Enqueue backend span`, { timeout: 30_000 }, async () => {
      const { traceId, traceparent } = caller();
      const attrs = await enqueueDequeue(srv, ns, { a: "b" }, traceparent);
      const span = await backendSpan(traceId, "Queue/Enqueue", ns);
      assert.equal(spanAttr(span, "prism.backend"), backend);
      assert.deepEqual(attrs, { a: "b", traceparent: `00-${traceId}-${hexId(span.spanId, 8)}-01` });
    });
  }

  test("redis: a read stream record's traceparent names Prism's Append backend span", { timeout: 30_000 }, async () => {
    const { traceId, traceparent } = caller();
    const stream = `s-${randomBytes(3).toString("hex")}`;
    await rpc(srv, "Stream/Append", { namespace: REDIS_NS, stream, payload: b64("r"), attributes: {} }, { traceparent });
    const { records } = await rpc(srv, "Stream/Read", { namespace: REDIS_NS, stream });
    const span = await backendSpan(traceId, "Stream/Append", REDIS_NS);
    assert.equal(records.length, 1);
    assert.deepEqual(records[0].attributes, { traceparent: `00-${traceId}-${hexId(span.spanId, 8)}-01` });
  });

  test("nats: a published message carries traceparent in the native NATS header and in the delivered attributes", { timeout: 30_000 }, async () => {
    const { traceId, traceparent } = caller();
    const topic = `t${randomBytes(3).toString("hex")}`;
    const sub = await sse(srv, NATS_NS, topic);
    try {
      const raw = rawNext(nc, topic);
      await nc.flush();
      await rpc(srv, "PubSub/Publish", { namespace: NATS_NS, topic, payload: b64("hi"), attributes: { k: "v" } }, { traceparent });
      const span = await backendSpan(traceId, "PubSub/Publish", NATS_NS);
      const expected = `00-${traceId}-${hexId(span.spanId, 8)}-01`;
      assert.equal((await raw).headers?.get("traceparent"), expected, "native NATS header");
      const msg = await sub.next();
      assert.deepEqual(msg.attributes, { k: "v", traceparent: expected });
    } finally {
      sub.close();
    }
  });

  test("a caller's own traceparent attribute is delivered unchanged", { timeout: 30_000 }, async () => {
    const { traceparent } = caller();
    const own = `00-${randomBytes(16).toString("hex")}-${randomBytes(8).toString("hex")}-00`;
    for (const ns of [NATS_NS, REDIS_NS]) assert.deepEqual(await enqueueDequeue(srv, ns, { traceparent: own }, traceparent), { traceparent: own });
  });
});

describe("trace context propagation, tracing off (the default)", () => {
  let srv: PrismProcess;
  let nc: NatsConnection;

  before(async () => {
    srv = await startPrism(["--workers", "1", "--config", config("off.yaml"), "--grpc-port", "0", "--http-port", "0"], {
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: "", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "", OTEL_TRACES_EXPORTER: "" },
    });
    nc = await connect({ servers: NATS });
  });
  after(async () => {
    await nc?.close();
    await srv?.stop();
  });

  test("no traceparent attribute and no NATS trace header are added", { timeout: 30_000 }, async () => {
    const { traceparent } = caller();
    for (const ns of [NATS_NS, REDIS_NS]) assert.deepEqual(await enqueueDequeue(srv, ns, { a: "b" }, traceparent), { a: "b" });
    const topic = `t${randomBytes(3).toString("hex")}`;
    const raw = rawNext(nc, topic);
    await nc.flush();
    await rpc(srv, "PubSub/Publish", { namespace: NATS_NS, topic, payload: b64("hi") }, { traceparent });
    const m = await raw;
    assert.equal(m.headers?.get("traceparent") ?? "", "");
    assert.ok(m.headers?.get("Prism-Id"), "the message did come from Prism");
  });
});
