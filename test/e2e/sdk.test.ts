// The TypeScript SDK (@prism/client) end to end over each transport (binary
// WebSocket, gRPC, HTTP/JSON + SSE) against a gateway started in-process on
// ephemeral ports with the default memstore namespace.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createServer } from "node:net";
import { connect, Code, PrismError, type Prism } from "@prism/client";
import { startServer, type RunningServer } from "../../src/server.js";
import { defaultConfig } from "../../src/config/load.js";

const uid = () => randomUUID().slice(0, 8);
const utf8 = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array | null) => (b === null ? null : new TextDecoder().decode(b));
const TRANSPORTS = ["ws", "grpc", "http"] as const;
type TransportName = (typeof TRANSPORTS)[number];
const T = { timeout: 15_000 };

let server: RunningServer;

function address(t: TransportName, s: RunningServer = server): string {
  switch (t) {
    case "ws":
      return `ws://127.0.0.1:${s.httpPort}`;
    case "grpc":
      return `grpc://127.0.0.1:${s.grpcPort}`;
    case "http":
      return `http://127.0.0.1:${s.httpPort}`;
  }
}

async function rejects(p: Promise<unknown>, code: number): Promise<PrismError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof PrismError, `a PrismError, got ${String(e)}`);
    assert.equal(e.code, code, `code ${e.codeName} (${e.message})`);
    return e;
  }
  assert.fail(`expected a rejection with code ${code}`);
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

before(async () => {
  const config = defaultConfig();
  // This process also runs the test's own clients and heavy neighbours (24 MiB of SSE publishes…), so its event loop is
  // busy for reasons that are not load: low-priority calls asserted to succeed must not meet the utilization rule here
  // (it has its own tests: test/unit/shedding.test.ts, bench overload-critical-p99).
  config.server.shedding.low_max_utilization = 0;
  server = await startServer({ config, host: "127.0.0.1", grpcPort: 0, httpPort: 0, log: () => {} });
});
after(async () => {
  await server?.close();
});

for (const transport of TRANSPORTS) {
  describe(`SDK over ${transport}`, () => {
    let prism: Prism;
    before(async () => {
      prism = await connect(address(transport));
    });
    after(async () => {
      await prism?.close();
    });

    test("kv set / get / getItem / exists / delete", T, async () => {
      const kv = prism.kv("default");
      const key = `sdk/${transport}/${uid()}`;
      assert.equal(await kv.get(key), null);
      const { version } = await kv.set(key, "hello");
      assert.equal(typeof version, "number");
      const value = await kv.get(key);
      assert.ok(value instanceof Uint8Array && value.constructor === Uint8Array, "a plain Uint8Array");
      assert.equal(text(value), "hello");
      assert.deepEqual(await kv.getItem(key), { value: utf8("hello"), version });
      assert.equal(await kv.exists(key), true);
      assert.equal(await kv.delete(key), true);
      assert.equal(await kv.delete(key), false);
      assert.equal(await kv.get(key), null);
      assert.equal(await kv.exists(key), false);
    });

    test("kv: an empty value is a value, not absence; bytes round-trip", T, async () => {
      const kv = prism.kv("default");
      const key = `sdk/${transport}/empty/${uid()}`;
      await kv.set(key, new Uint8Array(0));
      const empty = await kv.get(key);
      assert.ok(empty !== null, "found");
      assert.equal(empty.length, 0);
      const raw = new Uint8Array([0, 255, 1, 128, 10, 13]);
      await kv.set(key, raw);
      assert.deepEqual(await kv.get(key), raw);
    });

    test("kv: compare-and-set and batch calls", T, async () => {
      const kv = prism.kv("default");
      const p = `sdk/${transport}/batch/${uid()}/`;
      const v1 = (await kv.set(`${p}a`, "1", { ifAbsent: true })).version;
      const err = await rejects(kv.set(`${p}a`, "2", { ifAbsent: true }), Code.FAILED_PRECONDITION);
      assert.equal(err.codeName, "FAILED_PRECONDITION");
      await rejects(kv.set(`${p}a`, "2", { expectedVersion: v1 + 1000 }), Code.FAILED_PRECONDITION);
      await kv.set(`${p}a`, "2", { expectedVersion: v1 });
      const versions = await kv.batchSet([
        { key: `${p}b`, value: "B" },
        { key: `${p}c`, value: utf8("C") },
      ]);
      assert.equal(versions.length, 2);
      assert.ok(versions.every((v) => typeof v === "number"));
      assert.deepEqual((await kv.batchGet([`${p}a`, `${p}missing`, `${p}c`])).map(text), ["2", null, "C"]);
      assert.equal(await kv.batchDelete([`${p}a`, `${p}b`, `${p}missing`]), 2);
    });

    test("kv.scan iterates every page in key order", T, async () => {
      const kv = prism.kv("default");
      const p = `sdk/${transport}/scan/${uid()}/`;
      const keys = ["a", "b", "c", "d", "e"].map((k) => p + k);
      await kv.batchSet(keys.map((key, i) => ({ key, value: String(i) })));
      const seen: string[] = [];
      for await (const item of kv.scan(p, { limit: 2 })) {
        seen.push(item.key);
        assert.equal(text(item.value), String(keys.indexOf(item.key)));
        assert.equal(typeof item.version, "number");
      }
      assert.deepEqual(seen, keys);
      const page = await kv.scanPage({ prefix: p, limit: 3, keysOnly: true });
      assert.deepEqual(page.items.map((i) => i.key), keys.slice(0, 3));
      assert.ok(page.nextCursor, "more pages");
      assert.equal(page.items[0]!.value.length, 0, "keysOnly: no values");
    });

    test("kv ttl / expire / persist", T, async () => {
      const kv = prism.kv("default");
      const key = `sdk/${transport}/ttl/${uid()}`;
      assert.deepEqual(await kv.ttl(key), { found: false, ttlMs: null });
      await kv.set(key, "v");
      assert.deepEqual(await kv.ttl(key), { found: true, ttlMs: null });
      assert.equal(await kv.expire(key, 100), true);
      const t = await kv.ttl(key);
      assert.ok(t.found && t.ttlMs !== null && t.ttlMs > 0 && t.ttlMs <= 100_000, `ttlMs ${t.ttlMs}`);
      assert.equal(await kv.persist(key), true);
      assert.deepEqual(await kv.ttl(key), { found: true, ttlMs: null });
      await kv.delete(key);
    });

    test("publish / subscribe", T, async () => {
      const ps = prism.pubsub("default");
      const base = `sdk.${transport}.${uid()}`;
      const sub = ps.subscribe(`${base}.*`);
      await sub.ready;
      await ps.publish(`${base}.other.deeper`, "not matched");
      const id = await ps.publish(`${base}.created`, utf8("order-1"), { k: "v" });
      assert.equal(typeof id, "string");
      let got;
      for await (const msg of sub) {
        got = msg;
        break; // closes the subscription
      }
      assert.ok(got);
      assert.equal(got.topic, `${base}.created`);
      assert.equal(text(got.payload), "order-1");
      assert.ok(got.payload.constructor === Uint8Array);
      assert.deepEqual(got.attributes, { k: "v" });
      assert.equal(got.messageId, id);
      assert.equal(typeof got.publishTimeMs, "number");
      // closed: iteration is over, close is idempotent
      assert.deepEqual(await sub[Symbol.asyncIterator]().next(), { value: undefined, done: true });
      await sub.close();
    });

    test("subscribe to an unknown namespace rejects ready with NOT_FOUND", T, async () => {
      const sub = prism.pubsub(`nope-${uid()}`).subscribe("a.*");
      await rejects(sub.ready, Code.NOT_FOUND);
      await sub.close();
    });

    test("queue enqueue / dequeue / ack / nack", T, async () => {
      const q = prism.queue("default");
      const name = `sdk-${transport}-${uid()}`;
      const id = await q.enqueue(name, "job-1", { attributes: { a: "1" } });
      const [msg, ...rest] = await q.dequeue(name, { max: 10, visibilityTimeout: 60 });
      assert.equal(rest.length, 0);
      assert.ok(msg);
      assert.equal(msg.messageId, id);
      assert.equal(text(msg.payload), "job-1");
      assert.deepEqual(msg.attributes, { a: "1" });
      assert.equal(msg.deliveryCount, 1);
      assert.equal(typeof msg.enqueuedAtMs, "number");
      await q.nack(name, msg.receipt);
      const [again] = await q.dequeue(name, { visibilityTimeout: 60 });
      assert.ok(again);
      assert.equal(again.deliveryCount, 2);
      await rejects(q.ack(name, msg.receipt), Code.FAILED_PRECONDITION); // the first lease is stale
      await q.extendVisibility(name, again.receipt, 120);
      await q.ack(name, again.receipt);
      assert.deepEqual(await q.dequeue(name), []);
    });

    test("stream append / read / readGroup / ack", T, async () => {
      const s = prism.stream("default");
      const name = `sdk-${transport}-${uid()}`;
      const o1 = await s.append(name, "r1", { n: "1" });
      const o2 = await s.append(name, utf8("r2"));
      assert.ok(typeof o1 === "number" && o2 > o1);
      const { records, nextOffset } = await s.read(name, { from: 0 });
      assert.deepEqual(records.map((r) => r.offset), [o1, o2]);
      assert.equal(text(records[0]!.payload), "r1");
      assert.deepEqual(records[0]!.attributes, { n: "1" });
      assert.ok(nextOffset > o2);
      const tail = await s.read(name, { from: o2 });
      assert.deepEqual(tail.records.map((r) => r.offset), [o2]);
      const group = await s.readGroup(name, "g", "c1", { count: 10 });
      assert.deepEqual(group.map((r) => [r.offset, r.deliveryCount]), [[o1, 1], [o2, 1]]);
      assert.equal(await s.ack(name, "g", [o1, o2]), 2);
    });

    test("an unknown namespace → PrismError NOT_FOUND with its reason", T, async () => {
      const ns = `missing-${uid()}`;
      const err = await rejects(prism.kv(ns).get("k"), Code.NOT_FOUND);
      assert.equal(err.codeName, "NOT_FOUND");
      assert.equal(err.reason, "PRISM_ERR_UNKNOWN_NAMESPACE");
      assert.match(err.message, new RegExp(ns));
    });

    test("invalid arguments → INVALID_ARGUMENT", T, async () => {
      await rejects(prism.kv("default").set("", "v"), Code.INVALID_ARGUMENT);
    });

    test("admin: health, namespaces, backends, apply and delete", T, async () => {
      const health = await prism.admin.health();
      assert.equal(health.status, "SERVING");
      assert.ok((await prism.admin.listNamespaces()).some((n) => n.name === "default"));
      assert.ok((await prism.admin.listBackends()).some((b) => b.type === "memstore"));
      const name = `sdk-${transport}-${uid()}`;
      const applied = await prism.admin.applyNamespace({ name, backend: { type: "memstore" }, primitives: ["keyvalue"] });
      assert.equal(applied.created, true);
      assert.equal(applied.namespace.name, name);
      assert.equal((await prism.admin.getNamespace(name)).backendType, "memstore");
      await prism.kv(name).set("k", "v");
      assert.equal(await prism.admin.deleteNamespace(name), true);
      await rejects(prism.admin.getNamespace(name), Code.NOT_FOUND);
    });

    test("call(): the low-level path returns plain objects", T, async () => {
      const key = `sdk/${transport}/call/${uid()}`;
      const set = await prism.call("KeyValue", "Set", { namespace: "default", key, value: utf8("x") });
      assert.equal(typeof set.version, "number");
      assert.deepEqual(await prism.call("KeyValue", "Get", { namespace: "default", key }), {
        found: true,
        value: utf8("x"),
        version: set.version,
      });
      assert.deepEqual(await prism.call("KeyValue", "Get", { namespace: "default", key: `${key}-absent` }), {
        found: false,
        value: new Uint8Array(0),
        version: 0,
      });
      await rejects(prism.call("KeyValue", "Nope", {}), Code.UNIMPLEMENTED);
    });

    test("many calls in flight on one connection are matched to their answers", T, async () => {
      const kv = prism.kv("default");
      const p = `sdk/${transport}/many/${uid()}/`;
      const n = 100;
      await Promise.all(Array.from({ length: n }, (_, i) => kv.set(`${p}${i}`, `v${i}`)));
      const got = await Promise.all(Array.from({ length: n }, (_, i) => kv.get(`${p}${i}`)));
      assert.deepEqual(got.map(text), Array.from({ length: n }, (_, i) => `v${i}`));
      assert.equal(await kv.batchDelete(Array.from({ length: n }, (_, i) => `${p}${i}`)), n);
    });

    test("keys with any UTF-8, slashes and spaces round-trip", T, async () => {
      const kv = prism.kv("default");
      const key = `sdk/${transport}/${uid()}/naïve key/%2F/日本?#&`;
      await kv.set(key, "odd");
      assert.equal(text(await kv.get(key)), "odd");
      const [item] = await kv.scanPage({ prefix: key }).then((pg) => pg.items);
      assert.equal(item?.key, key);
      assert.equal(await kv.delete(key), true);
    });

    test("two subscriptions on one connection each get their own messages, buffered until read", T, async () => {
      const ps = prism.pubsub("default");
      const base = `sdk.${transport}.two.${uid()}`;
      const a = ps.subscribe(`${base}.a`);
      const all = ps.subscribe(`${base}.>`);
      await Promise.all([a.ready, all.ready]);
      await ps.publish(`${base}.a`, "1");
      await ps.publish(`${base}.b`, "2");
      await ps.publish(`${base}.a`, "3");
      const take = async (sub: AsyncIterable<{ payload: Uint8Array }>, n: number) => {
        const out: (string | null)[] = [];
        for await (const m of sub) if (out.push(text(m.payload)) === n) break;
        return out;
      };
      assert.deepEqual(await take(all, 3), ["1", "2", "3"]);
      assert.deepEqual(await take(a, 2), ["1", "3"]);
    });

    test("closing the client ends a subscription with UNAVAILABLE", T, async () => {
      const own = await connect(address(transport));
      const sub = own.pubsub("default").subscribe(`sdk.${transport}.end.${uid()}`);
      await sub.ready;
      const iterated = rejects(
        (async () => {
          for await (const _ of sub) assert.fail("no message was published");
        })(),
        Code.UNAVAILABLE,
      );
      await own.close();
      await iterated;
    });

    test("options: priority is accepted; a deadline shorter than a long poll → DEADLINE_EXCEEDED", T, async () => {
      const own = await connect(address(transport), { timeoutMs: 300, priority: "low" });
      try {
        const key = `sdk/${transport}/prio/${uid()}`;
        await own.kv("default").set(key, "p");
        assert.equal(text(await own.kv("default").get(key)), "p");
        // call() does not lengthen the deadline by the long poll's wait (the high-level dequeue does).
        await rejects(
          own.call("Queue", "Dequeue", { namespace: "default", queue: `sdk-deadline-${uid()}`, waitSeconds: 5 }),
          Code.DEADLINE_EXCEEDED,
        );
        // the connection still serves after the deadline
        assert.equal(await own.kv("default").exists(key), true);
      } finally {
        await own.close();
      }
    });

    test("a call pending when the client closes rejects with UNAVAILABLE", T, async () => {
      const own = await connect(address(transport));
      const pending = rejects(own.queue("default").dequeue(`sdk-empty-${uid()}`, { wait: 10 }), Code.UNAVAILABLE);
      // let the request reach the wire before closing
      await own.kv("default").exists("warm-up");
      await own.close();
      await pending;
      await rejects(own.kv("default").get("k"), Code.UNAVAILABLE);
    });
  });
}

test("the three transports give identical results", T, async () => {
  const clients = await Promise.all(TRANSPORTS.map((t) => connect(address(t))));
  try {
    const p = `sdk/same/${uid()}/`;
    await clients[0]!.kv("default").batchSet([
      { key: `${p}empty`, value: new Uint8Array(0) },
      { key: `${p}bin`, value: new Uint8Array([0, 1, 2, 250]) },
    ]);
    const results = await Promise.all(
      clients.map(async (c) => {
        const kv = c.kv("default");
        return {
          empty: await kv.getItem(`${p}empty`),
          missing: await kv.get(`${p}missing`),
          batch: await kv.batchGet([`${p}bin`, `${p}missing`, `${p}empty`]),
          scan: await kv.scanPage({ prefix: p }),
          ttl: await kv.ttl(`${p}bin`),
          raw: await c.call("KeyValue", "Scan", { namespace: "default", prefix: p }),
        };
      }),
    );
    assert.deepEqual(results[1], results[0]);
    assert.deepEqual(results[2], results[0]);
    assert.equal(results[0]!.empty!.value.length, 0);
    assert.equal(results[0]!.missing, null);
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
});

test("a plain host:port address connects over gRPC; bad options are refused", T, async () => {
  const prism = await connect(`127.0.0.1:${server.grpcPort}`);
  try {
    assert.equal((await prism.admin.health()).status, "SERVING");
  } finally {
    await prism.close();
  }
  await rejects(connect(`ws://127.0.0.1:${server.httpPort}`, { priority: "urgent" as never }), Code.INVALID_ARGUMENT);
  await rejects(connect(`ws://127.0.0.1:${server.httpPort}`, { timeoutMs: -1 }), Code.INVALID_ARGUMENT);
  await rejects(connect(`ftp://127.0.0.1:${server.httpPort}`), Code.INVALID_ARGUMENT);
});

test("connecting to a port nobody listens on → UNAVAILABLE", T, async () => {
  const port = await closedPort();
  for (const addr of [`ws://127.0.0.1:${port}`, `http://127.0.0.1:${port}`, `grpc://127.0.0.1:${port}`]) {
    await rejects(connect(addr, { timeoutMs: 1000 }), Code.UNAVAILABLE);
  }
});

test("server shutdown: a pending long poll answers empty (graceful drain), then calls reject with UNAVAILABLE", T, async () => {
  const own = await startServer({ config: defaultConfig(), host: "127.0.0.1", grpcPort: 0, httpPort: 0, log: () => {} });
  const clients: Prism[] = [];
  try {
    // The SDK reconnects by itself; a call made while no server answers waits reconnect.waitMs, then fails.
    for (const t of TRANSPORTS) clients.push(await connect(address(t, own), { reconnect: { waitMs: 200 } }));
    const pending = clients.map((c) => c.queue("default").dequeue(`sdk-gone-${uid()}`, { wait: 10 }));
    await Promise.all(clients.map((c) => c.kv("default").exists("warm-up")));
    await own.close();
    for (const p of pending) assert.deepEqual(await p, []);
    for (const c of clients) {
      const err = await c.kv("default").exists("after-close").then(
        () => assert.fail("resolved"),
        (e: unknown) => e,
      );
      assert.ok(err instanceof PrismError, String(err));
      assert.equal(err.codeName, "UNAVAILABLE", err.message);
    }
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await own.close();
  }
});
