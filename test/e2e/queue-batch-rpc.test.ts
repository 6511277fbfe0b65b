// Queue/EnqueueBatch and Queue/AckBatch end to end over WebSocket, gRPC and
// HTTP/JSON, on memstore, Redis and PostgreSQL: entries are enqueued in order
// and answered one by one (a bad entry or a stale receipt fails alone, named by
// its index), a call whose every entry fails fails as a whole, and the SDK
// coalesces the Enqueue / Ack calls of one event-loop turn into one batch call
// (counted in /metrics) while each caller keeps its own answer.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { connect, Code, PrismError, type Prism } from "@prism/client";
import { startServer, type RunningServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { Redis } from "ioredis";
import { deleteRedisPrefix } from "../helpers/redis-cleanup.js";

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const PG_URL = process.env.POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const uid = () => randomUUID().slice(0, 8);
const run = uid();
const prefix = `qbrpc${run}`;
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const TRANSPORTS = ["ws", "grpc", "http"] as const;
/** memstore with a 32-byte value limit (the oversized-entry cases), and the two networked backends. */
const NAMESPACES = { memstore: "qb-mem", redis: "qb-redis", postgres: "qb-pg" } as const;
const T = { timeout: 20_000 };

let server: RunningServer;

before(async () => {
  const config = await validateConfig(
    {
      namespaces: [
        { name: NAMESPACES.memstore, backend: { type: "memstore" }, limits: { max_value_bytes: 32 } },
        { name: NAMESPACES.redis, backend: { type: "redis", url: REDIS_URL, key_prefix: prefix } },
        { name: NAMESPACES.postgres, backend: { type: "postgres", url: PG_URL, schema: `prism_qbrpc` } },
      ],
    },
    "queue-batch-rpc.test",
  );
  config.server.shedding.low_max_utilization = 0;
  server = await startServer({ config, host: "127.0.0.1", grpcPort: 0, httpPort: 0, log: () => {} });
});
after(async () => {
  await server?.close();
  const r = new Redis(REDIS_URL);
  await deleteRedisPrefix(r, prefix);
  r.disconnect();
});

function address(t: (typeof TRANSPORTS)[number]): string {
  return t === "ws" ? `ws://127.0.0.1:${server.httpPort}` : t === "grpc" ? `grpc://127.0.0.1:${server.grpcPort}` : `http://127.0.0.1:${server.httpPort}`;
}

/** prism_requests_total of one method and namespace (all codes), from GET /metrics. */
async function calls(method: string, ns: string): Promise<number> {
  const body = await (await fetch(`http://127.0.0.1:${server.httpPort}/metrics`)).text();
  let n = 0;
  for (const line of body.split("\n")) {
    if (line.startsWith("prism_requests_total{") && line.includes(`method="${method}"`) && line.includes(`namespace="${ns}"`)) n += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return n;
}

async function rejects(p: Promise<unknown>, code: number, message?: RegExp): Promise<PrismError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof PrismError, `a PrismError, got ${String(e)}`);
    assert.equal(e.code, code, `code ${e.code} (${e.message})`);
    if (message) assert.match(e.message, message);
    return e;
  }
  assert.fail(`expected a rejection with code ${code}`);
}

for (const transport of TRANSPORTS) {
  describe(`queue batch calls over ${transport}`, () => {
    let prism: Prism;
    before(async () => {
      prism = await connect(address(transport));
    });
    after(async () => {
      await prism?.close();
    });

    for (const [backend, ns] of Object.entries(NAMESPACES)) {
      test(`${backend}: EnqueueBatch enqueues in order, AckBatch acks, a stale receipt fails alone`, T, async () => {
        const q = prism.queue(ns);
        const name = `qb-${uid()}`;
        const results = await q.enqueueMany(name, [0, 1, 2, 3, 4].map((i) => ({ data: `m${i}`, attributes: { i: String(i) } })));
        assert.equal(results.length, 5);
        const ids = results.map((r) => (assert.ok(r.ok, JSON.stringify(r)), r.value));
        assert.equal(new Set(ids).size, 5);
        const got = await q.dequeue(name, { max: 10, visibilityTimeout: 60 });
        assert.deepEqual(got.map((m) => text(m.payload)), ["m0", "m1", "m2", "m3", "m4"]);
        assert.deepEqual(got.map((m) => m.messageId), ids);
        assert.deepEqual(got.map((m) => m.attributes.i), ["0", "1", "2", "3", "4"]);
        await q.ack(name, got[2]!.receipt, { timeoutMs: 5000 });
        const acked = await q.ackMany(name, got.map((m) => m.receipt));
        assert.deepEqual(acked.map((r) => r.ok), [true, true, false, true, true]);
        const stale = acked[2]!;
        assert.ok(!stale.ok && stale.error.code === Code.FAILED_PRECONDITION, JSON.stringify(stale));
        assert.equal((stale as { error: PrismError }).error.reason, "PRISM_ERR_STALE_RECEIPT");
        assert.deepEqual(await q.dequeue(name, { max: 10 }), [], "every message acked");
      });

      test(`${backend}: the SDK sends the enqueues and acks of one turn as one batch call, each caller answered`, T, async () => {
        const q = prism.queue(ns);
        const name = `qc-${uid()}`;
        const [e0, b0, a0, ab0] = await Promise.all([calls("Queue/Enqueue", ns), calls("Queue/EnqueueBatch", ns), calls("Queue/Ack", ns), calls("Queue/AckBatch", ns)]);
        const ids = await Promise.all(Array.from({ length: 40 }, (_, i) => q.enqueue(name, `c${i}`)));
        assert.equal(new Set(ids).size, 40, "a message id per caller");
        assert.equal(await calls("Queue/EnqueueBatch", ns), b0 + 1, "one EnqueueBatch for the 40 enqueues");
        assert.equal(await calls("Queue/Enqueue", ns), e0, "no single Enqueue");
        const got: { receipt: string; payload: Uint8Array; messageId: string }[] = [];
        while (got.length < 40) {
          const page = await q.dequeue(name, { max: 40, visibilityTimeout: 60 });
          assert.ok(page.length > 0, `dequeue found ${got.length} of 40`);
          got.push(...page);
        }
        assert.deepEqual(got.map((m) => text(m.payload)), Array.from({ length: 40 }, (_, i) => `c${i}`), "in call order");
        assert.deepEqual(got.map((m) => m.messageId), ids, "each caller got its own message's id");
        // One receipt acked alone first: in the coalesced batch it is stale, and only its caller hears it.
        await q.ack(name, got[7]!.receipt);
        const outcomes = await Promise.allSettled(got.map((m) => q.ack(name, m.receipt)));
        outcomes.forEach((o, i) => {
          if (i === 7) {
            assert.equal(o.status, "rejected");
            assert.equal(((o as PromiseRejectedResult).reason as PrismError).code, Code.FAILED_PRECONDITION);
          } else assert.equal(o.status, "fulfilled", `ack ${i}: ${String((o as PromiseRejectedResult).reason)}`);
        });
        assert.equal(await calls("Queue/AckBatch", ns), ab0 + 1, "one AckBatch for the 40 acks");
        assert.equal(await calls("Queue/Ack", ns), a0 + 1, "the lone ack went as a single Ack");
        assert.deepEqual(await q.dequeue(name, { max: 10 }), []);
      });
    }

    test("memstore: an oversized entry fails alone, named as the single call names it", T, async () => {
      const q = prism.queue(NAMESPACES.memstore);
      const name = `qe-${uid()}`;
      const results = await q.enqueueMany(name, [{ data: "ok-0" }, { data: "x".repeat(33) }, { data: "ok-2" }]);
      assert.ok(results[0]!.ok && results[2]!.ok);
      const bad = results[1]!;
      assert.ok(!bad.ok);
      assert.equal(bad.error.code, Code.INVALID_ARGUMENT);
      assert.match(bad.error.message, /^payload: 33 bytes/);
      const got = await q.dequeue(name, { max: 10 });
      assert.deepEqual(got.map((m) => text(m.payload)), ["ok-0", "ok-2"], "the other entries are enqueued");
      // Coalesced by the SDK: only the caller with the oversized payload is refused.
      const outcomes = await Promise.allSettled([q.enqueue(name, "c-0"), q.enqueue(name, "y".repeat(40)), q.enqueue(name, "c-2")]);
      assert.deepEqual(outcomes.map((o) => o.status), ["fulfilled", "rejected", "fulfilled"]);
      assert.match(((outcomes[1] as PromiseRejectedResult).reason as PrismError).message, /^payload: 40 bytes/);
    });

    test("memstore: a batch whose every entry fails fails as a call, with the first entry's error", T, async () => {
      const q = prism.queue(NAMESPACES.memstore);
      await rejects(q.enqueueMany(`qa-${uid()}`, [{ data: "x".repeat(50) }, { data: "y".repeat(60) }]), Code.INVALID_ARGUMENT, /^payload: 50 bytes/);
      await rejects(q.ackMany(`qa-${uid()}`, ["not-a-receipt", "nor-this"]), Code.INVALID_ARGUMENT, /receipt/);
    });

    test("memstore: empty and oversized batches are refused naming the field", T, async () => {
      const ns = NAMESPACES.memstore;
      await rejects(prism.call("Queue", "EnqueueBatch", { namespace: ns, queue: "q", entries: [] }), Code.INVALID_ARGUMENT, /^entries: must not be empty/);
      await rejects(prism.call("Queue", "AckBatch", { namespace: ns, queue: "q", receipts: [] }), Code.INVALID_ARGUMENT, /^receipts: must not be empty/);
      const many = Array.from({ length: 1001 }, () => ({ payload: "" }));
      await rejects(prism.call("Queue", "EnqueueBatch", { namespace: ns, queue: "q", entries: many }), Code.INVALID_ARGUMENT, /^entries: 1001 entries exceed the maximum of 1000/);
      await rejects(prism.call("Queue", "EnqueueBatch", { namespace: ns, queue: "bad queue", entries: [{}] }), Code.INVALID_ARGUMENT, /^queue:/);
      await rejects(prism.call("Queue", "EnqueueBatch", { namespace: `nope-${uid()}`, queue: "q", entries: [{}] }), Code.NOT_FOUND);
    });
  });
}

test("connect({ coalesce: false }): one request per call", T, async () => {
  const own = await connect(address("ws"), { coalesce: false });
  try {
    const ns = NAMESPACES.memstore;
    const q = own.queue(ns);
    const name = `qn-${uid()}`;
    const [e0, b0, a0, ab0] = await Promise.all([calls("Queue/Enqueue", ns), calls("Queue/EnqueueBatch", ns), calls("Queue/Ack", ns), calls("Queue/AckBatch", ns)]);
    await Promise.all(Array.from({ length: 10 }, (_, i) => q.enqueue(name, `n${i}`)));
    const got = await q.dequeue(name, { max: 10 });
    await Promise.all(got.map((m) => q.ack(name, m.receipt)));
    assert.equal(got.length, 10);
    assert.equal(await calls("Queue/Enqueue", ns), e0 + 10);
    assert.equal(await calls("Queue/Ack", ns), a0 + 10);
    assert.equal(await calls("Queue/EnqueueBatch", ns), b0);
    assert.equal(await calls("Queue/AckBatch", ns), ab0);
  } finally {
    await own.close();
  }
});

test("curl-style HTTP/JSON: POST /v1/Queue/EnqueueBatch and /v1/Queue/AckBatch", T, async () => {
  const base = `http://127.0.0.1:${server.httpPort}`;
  const post = async (path: string, body: unknown) => {
    const r = await fetch(base + path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    return { status: r.status, json: (await r.json()) as any };
  };
  const queue = `qh-${uid()}`;
  const ns = NAMESPACES.memstore;
  const e = await post("/v1/Queue/EnqueueBatch", { namespace: ns, queue, entries: [{ payload: "aGk=" }, { payload: Buffer.alloc(40).toString("base64") }] });
  assert.equal(e.status, 200, JSON.stringify(e.json));
  assert.equal(e.json.messageIds.length, 2);
  assert.equal(e.json.messageIds[1], "");
  assert.equal(e.json.errors.length, 1);
  assert.equal(e.json.errors[0].index, 1);
  assert.equal(e.json.errors[0].code, Code.INVALID_ARGUMENT);
  assert.equal(e.json.errors[0].reason, "PRISM_ERR_TOO_LARGE");
  const d = await post("/v1/Queue/Dequeue", { namespace: ns, queue, maxMessages: 10 });
  assert.equal(d.json.messages.length, 1);
  const a = await post("/v1/Queue/AckBatch", { namespace: ns, queue, receipts: [d.json.messages[0].receipt, d.json.messages[0].receipt] });
  assert.equal(a.status, 200, JSON.stringify(a.json));
  assert.equal(a.json.errors.length, 1, "the repeated receipt is stale");
  assert.equal(a.json.errors[0].index, 1);
  assert.equal(a.json.errors[0].code, Code.FAILED_PRECONDITION);
});
