/**
 * RabbitMQ driver, driver level, against the real RabbitMQ on 127.0.0.1:5672
 * (or PRISM_TEST_RABBITMQ_URL). Each run uses its own name prefix and deletes
 * what it declared. Outages are simulated with a TCP proxy in front of the
 * broker (the broker itself keeps running for everyone else).
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { connect, type ChannelModel } from "amqplib";
import { systemClock } from "../../src/core/clock.js";
import { DEFAULT_LIMITS } from "../../src/config/schema.js";
import { PrismError } from "../../src/core/errors.js";
import { validateConfig } from "../../src/config/load.js";
import type { BackendInstance, NamespaceLimits, NamespaceStores } from "../../src/backends/driver.js";
import { driver } from "../../src/backends/rabbitmq/index.js";
import { optionsSchema } from "../../src/backends/rabbitmq/options.js";
import { DelayTiers, DELAY_BITS } from "../../src/backends/rabbitmq/delay.js";
import { decodeAttrs, encodeAttrs } from "../../src/backends/rabbitmq/codec.js";
import { queueName, pubsubExchange } from "../../src/backends/rabbitmq/names.js";
import { bindingKey } from "../../src/backends/rabbitmq/pubsub.js";
import { deletePrefixed } from "./rabbitmq-cleanup.js";
import { TcpProxy } from "./tcp-proxy.js";

const url = process.env.PRISM_TEST_RABBITMQ_URL ?? "amqp://guest:guest@127.0.0.1:5672";
const prefix = `prism-unit-${process.pid}-${randomBytes(3).toString("hex")}`;
const limits: NamespaceLimits = { ...DEFAULT_LIMITS, maxDeliveries: 2, visibilityTimeoutSeconds: 30 };
const b = (s: string) => Buffer.from(s);
const noLog = () => {};

function reason(e: unknown): string {
  return e instanceof PrismError ? e.reason : String(e);
}

async function rejectsWith(p: Promise<unknown>, want: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.equal(reason(e), want, (e as Error).message);
    return true;
  });
}

/** Polls fn until it returns a truthy value (bounded). */
async function eventually<T>(fn: () => Promise<T | undefined | false>, what: string, ms = 8000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v) return v as T;
    if (Date.now() > end) assert.fail(`${what}: not within ${ms} ms`);
    await sleep(100);
  }
}

// Top level: runs after every describe below, the outage test's queues included.
after(() => deletePrefixed(url, prefix));

describe("rabbitmq: pure parts", () => {
  it("options: defaults, URL scheme and prefix are checked", () => {
    const d = optionsSchema.parse({});
    assert.equal(d.url, "amqp://guest:guest@127.0.0.1:5672");
    assert.equal(d.prefix, "prism");
    assert.equal(optionsSchema.safeParse({ url: "http://x" }).success, false);
    assert.equal(optionsSchema.safeParse({ prefix: "a.b" }).success, false, "a prefix with . could collide with a namespace");
    assert.equal(optionsSchema.safeParse({ nope: 1 }).success, false, "unknown options are refused");
  });

  it("names: namespaces that prefix each other or contain dots never share a queue", () => {
    const names = [queueName("p", "users", "a.b"), queueName("p", "users.a", "b"), queueName("p", "usersAbc", "a.b"), queueName("p", "users", "a")];
    assert.equal(new Set(names).size, names.length, names.join(" "));
    assert.notEqual(pubsubExchange("p", "a.b"), pubsubExchange("p", "a"));
  });

  it("delay routing keys spell the delay in binary, most significant tier first", () => {
    const t = new DelayTiers("p");
    const key = t.routingKey(5000, "q.x");
    const bits = key.split(".").slice(0, DELAY_BITS).join("");
    assert.equal(parseInt(bits, 2), 5);
    assert.ok(key.endsWith(".q.x"));
    assert.equal(parseInt(t.routingKey(1, "q").split(".").slice(0, DELAY_BITS).join(""), 2), 1, "rounded up to 1 s");
  });

  it("binding keys: > becomes #, * stays", () => {
    assert.equal(bindingKey("a.*.>"), "a.*.#");
    assert.equal(bindingKey("a.b"), "a.b");
  });

  it("attributes round-trip as one binary header", () => {
    const attrs = { a: "1", ["ключ-".repeat(60)]: "значение", empty: "" };
    assert.deepEqual(decodeAttrs(encodeAttrs(attrs)), attrs);
    assert.equal(encodeAttrs({}), undefined);
    assert.deepEqual(decodeAttrs(undefined), {});
  });

  it("config: a rabbitmq namespace serving stream or keyvalue is refused, naming backend and interface", async () => {
    await assert.rejects(
      validateConfig({ namespaces: [{ name: "n", primitives: ["queue", "stream"], backend: { type: "rabbitmq" } }] }, "prism.yaml"),
      /backend "rabbitmq" does not implement stream_basic/,
    );
  });
});

describe("rabbitmq: down at start", () => {
  it("create() does not throw; calls answer UNAVAILABLE; health says why", async () => {
    const inst = driver.create(optionsSchema.parse({ url: "amqp://guest:guest@127.0.0.1:1", connect_timeout_ms: 500 }), { clock: systemClock, log: noLog });
    const s = inst.namespace("down", limits);
    await rejectsWith(s.queue!.enqueue("q", b("x"), {}, 0), "PRISM_ERR_BACKEND_UNAVAILABLE");
    await rejectsWith(s.queue!.dequeue("q", { maxMessages: 1, visibilityTimeoutMs: 1000, waitMs: 0 }), "PRISM_ERR_BACKEND_UNAVAILABLE");
    await rejectsWith(s.pubsub!.publish("a.b", b("x"), {}), "PRISM_ERR_BACKEND_UNAVAILABLE");
    await rejectsWith(s.pubsub!.subscribe("a.b", { onMessage() {}, onError() {} }), "PRISM_ERR_BACKEND_UNAVAILABLE");
    const h = await inst.health();
    assert.equal(h.ok, false);
    assert.match(h.message, /not connected/);
    await s.close?.();
    await inst.close();
  });
});

describe("rabbitmq driver (real broker)", () => {
  let inst: BackendInstance;
  let raw: ChannelModel;
  const opened: NamespaceStores[] = [];
  const ns = (name: string, l = limits) => {
    const s = inst.namespace(`${name}-${randomBytes(2).toString("hex")}`, l);
    opened.push(s);
    return s;
  };

  before(async () => {
    inst = driver.create(optionsSchema.parse({ url, prefix }), { clock: systemClock, log: noLog });
    raw = await connect(url);
  });

  after(async () => {
    for (const s of opened) await s.close?.();
    await inst.close();
    await inst.close(); // idempotent
    await raw.close();
  });

  it("health answers with a latency", async () => {
    const h = await inst.health();
    assert.equal(h.ok, true, h.message);
  });

  it("enqueue resolves once the message is on the broker's quorum queue, with its DLQ declared", async () => {
    const name = `enq-${randomBytes(2).toString("hex")}`;
    const s = inst.namespace(name, limits);
    opened.push(s);
    await s.queue!.enqueue("jobs", b("durable"), { k: "v" }, 0);
    const ch = await raw.createChannel();
    const q = await ch.checkQueue(queueName(prefix, name, "jobs"));
    assert.equal(q.messageCount, 1);
    await ch.checkQueue(queueName(prefix, name, "jobs.dlq"));
    await ch.close();
  });

  it("a bogus or foreign receipt is refused without disturbing other leases on the shared channel", async () => {
    const q = ns("stale").queue!;
    await q.enqueue("a", b("1"), {}, 0);
    await q.enqueue("a", b("2"), {}, 0);
    const got = await q.dequeue("a", { maxMessages: 2, visibilityTimeoutMs: 30_000, waitMs: 0 });
    assert.equal(got.length, 2);
    await rejectsWith(q.ack("a", "nope.1.999999"), "PRISM_ERR_INVALID_ARGUMENT"); // not a receipt this queue issues
    await rejectsWith(q.ack("b", got[0]!.receipt), "PRISM_ERR_STALE_RECEIPT");
    // Had an unknown delivery tag reached RabbitMQ, it would have closed the channel and requeued both.
    assert.deepEqual(await q.dequeue("a", { maxMessages: 2, visibilityTimeoutMs: 30_000, waitMs: 0 }), []);
    await q.ack("a", got[0]!.receipt);
    await q.ack("a", got[1]!.receipt);
  });

  it("a short delay is not held back by a longer one enqueued before it (delay tiers)", async () => {
    const q = ns("tiers").queue!;
    await q.enqueue("d", b("3s"), {}, 3000);
    await q.enqueue("d", b("1s"), {}, 1000);
    const first = await eventually(async () => {
      const m = await q.dequeue("d", { maxMessages: 10, visibilityTimeoutMs: 30_000, waitMs: 0 });
      return m.length ? m : undefined;
    }, "first delayed message");
    assert.deepEqual(first.map((m) => m.payload.toString()), ["1s"]);
    const second = await eventually(async () => {
      const m = await q.dequeue("d", { maxMessages: 10, visibilityTimeoutMs: 30_000, waitMs: 0 });
      return m.length ? m : undefined;
    }, "3 s message");
    assert.deepEqual(second.map((m) => m.payload.toString()), ["3s"]);
  });

  it("if Prism goes away holding the last allowed delivery, RabbitMQ's own delivery limit dead-letters it", async () => {
    const name = `crash-${randomBytes(2).toString("hex")}`;
    const other = driver.create(optionsSchema.parse({ url, prefix }), { clock: systemClock, log: noLog });
    const q = other.namespace(name, limits).queue!;
    await q.enqueue("jobs", b("doomed"), { k: "v" }, 0);
    const [m1] = await q.dequeue("jobs", { maxMessages: 1, visibilityTimeoutMs: 30_000, waitMs: 0 });
    await q.nack("jobs", m1!.receipt, 0);
    const [m2] = await q.dequeue("jobs", { maxMessages: 1, visibilityTimeoutMs: 30_000, waitMs: 0 });
    assert.equal(m2!.deliveryCount, 2);
    await other.close(); // the broker requeues the unacked delivery: its 2nd return exceeds the limit
    const mine = inst.namespace(name, limits);
    opened.push(mine);
    const dead = await eventually(async () => {
      const m = await mine.queue!.dequeue("jobs.dlq", { maxMessages: 1, visibilityTimeoutMs: 30_000, waitMs: 0 });
      return m.length ? m : undefined;
    }, "dead-lettered by RabbitMQ");
    assert.equal(dead[0]!.payload.toString(), "doomed");
    assert.deepEqual(dead[0]!.attributes, { k: "v" });
    assert.deepEqual(await mine.queue!.dequeue("jobs", { maxMessages: 1, visibilityTimeoutMs: 30_000, waitMs: 0 }), []);
  });

  it("a dequeue long-polling on an empty queue returns [] promptly when its signal aborts", async () => {
    const q = ns("abort").queue!;
    const ac = new AbortController();
    const p = q.dequeue("empty", { maxMessages: 1, visibilityTimeoutMs: 1000, waitMs: 20_000, signal: ac.signal });
    await sleep(100);
    ac.abort();
    assert.deepEqual(await p, []);
  });
});

describe("rabbitmq: outage and recovery through a proxy", () => {
  it("UNAVAILABLE while cut, subscriptions end, acknowledged messages survive, and it recovers without restart", async () => {
    const u = new URL(url);
    const proxy = new TcpProxy(u.hostname, Number(u.port || 5672));
    const port = await proxy.start();
    const viaProxy = `amqp://${u.username}:${u.password}@127.0.0.1:${port}`;
    const inst = driver.create(optionsSchema.parse({ url: viaProxy, prefix, max_backoff_ms: 200 }), { clock: systemClock, log: noLog });
    const s = inst.namespace(`outage-${randomBytes(2).toString("hex")}`, limits);
    try {
      for (let i = 0; i < 5; i++) await s.queue!.enqueue("jobs", b(`m${i}`), {}, 0);
      const ended: Error[] = [];
      await s.pubsub!.subscribe("t.x", { onMessage() {}, onError: (e) => ended.push(e) });

      await proxy.cut();
      await eventually(async () => ended.length > 0, "subscription ended");
      assert.equal(reason(ended[0]), "PRISM_ERR_BACKEND_UNAVAILABLE");
      await eventually(async () => {
        try {
          await s.queue!.enqueue("jobs", b("during"), {}, 0);
          return false;
        } catch (e) {
          return reason(e) === "PRISM_ERR_BACKEND_UNAVAILABLE";
        }
      }, "enqueue refused while cut");
      assert.equal((await inst.health()).ok, false);

      await proxy.restore();
      const got = await eventually(async () => {
        const m = await s.queue!.dequeue("jobs", { maxMessages: 10, visibilityTimeoutMs: 30_000, waitMs: 0 });
        return m.length ? m : undefined;
      }, "dequeue after recovery");
      const all = [...got, ...(await s.queue!.dequeue("jobs", { maxMessages: 10, visibilityTimeoutMs: 30_000, waitMs: 0 }))];
      assert.deepEqual(all.map((m) => m.payload.toString()), ["m0", "m1", "m2", "m3", "m4"], "every acknowledged enqueue survived");
      for (const m of all) await s.queue!.ack("jobs", m.receipt);
      const live: string[] = [];
      await s.pubsub!.subscribe("t.x", { onMessage: (m) => live.push(m.payload.toString()), onError() {} });
      await s.pubsub!.publish("t.x", b("back"), {});
      await eventually(async () => live.length === 1, "a new subscription works");
    } finally {
      await s.close?.();
      await inst.close();
      await proxy.close();
    }
  });
});
