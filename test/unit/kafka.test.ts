/**
 * Kafka driver, driver level. The pure parts and the unreachable-broker
 * behaviour run everywhere; the tests against a real cluster run when
 * PRISM_TEST_KAFKA_BROKERS is set (e.g. "127.0.0.1:9092") and are otherwise
 * reported as skipped, with the reason.
 */
import { describe, it, it as itReal, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { ManualClock, systemClock } from "../../src/core/clock.js";
import { DEFAULT_LIMITS } from "../../src/config/schema.js";
import { PrismError } from "../../src/core/errors.js";
import { validateConfig } from "../../src/config/load.js";
import type { BackendInstance, NamespaceLimits, PubSubMessage } from "../../src/backends/driver.js";
import { driver } from "../../src/backends/kafka/index.js";
import { optionsSchema } from "../../src/backends/kafka/options.js";
import { groupId, pubsubTopic, streamTopic } from "../../src/backends/kafka/names.js";
import { fromHeaders, toHeaders } from "../../src/backends/kafka/records.js";

const brokers = process.env.PRISM_TEST_KAFKA_BROKERS?.split(",").map((s) => s.trim()).filter(Boolean) ?? [];
const skip = brokers.length ? undefined : "PRISM_TEST_KAFKA_BROKERS is not set: no Kafka broker on this machine";
const prefix = `prism-unit-${process.pid}-${randomBytes(3).toString("hex")}`;
const noLog = () => {};
const b = (s: string) => Buffer.from(s);

function reason(e: unknown): string {
  return e instanceof PrismError ? e.reason : String(e);
}

describe("kafka: pure parts", () => {
  it("options: defaults, one broker string or a list, host:port checked, unknown keys refused", () => {
    const d = optionsSchema.parse({});
    assert.deepEqual(d.brokers, ["127.0.0.1:9092"]);
    assert.equal(d.prefix, "prism");
    assert.deepEqual(optionsSchema.parse({ brokers: "k1:9092" }).brokers, ["k1:9092"]);
    assert.deepEqual(optionsSchema.parse({ brokers: ["k1:9092", "k2:9093"] }).brokers, ["k1:9092", "k2:9093"]);
    assert.equal(optionsSchema.safeParse({ brokers: ["k1"] }).success, false, "a port is required");
    assert.equal(optionsSchema.safeParse({ brokers: [] }).success, false);
    assert.equal(optionsSchema.safeParse({ prefix: "a.b" }).success, false);
    assert.equal(optionsSchema.safeParse({ sasl: { mechanism: "gssapi", username: "u", password: "p" } }).success, false);
    assert.equal(optionsSchema.safeParse({ bogus: true }).success, false);
  });

  it("names: legal Kafka topics, never shared between namespaces or streams", () => {
    const topics = [
      streamTopic("p", "users", "a.b"),
      streamTopic("p", "users.a", "b"),
      streamTopic("p", "usersAbc", "a.b"),
      streamTopic("p", "users_da", "b"),
      streamTopic("p", "users", "a:b"),
      streamTopic("p", "users", "a_cb"),
      streamTopic("p", "users", "a@b"),
      pubsubTopic("p", "users"),
      pubsubTopic("p", "users.ps"),
    ];
    assert.equal(new Set(topics).size, topics.length, topics.join(" "));
    for (const t of topics) assert.match(t, /^[A-Za-z0-9._-]{1,249}$/);
    assert.throws(() => streamTopic("p", "n", "x".repeat(250)), (e) => reason(e) === "PRISM_ERR_INVALID_ARGUMENT");
    assert.notEqual(groupId("p", "a", "s", "g"), groupId("p", "a", "s", "g2"));
  });

  it("attributes travel as a:-prefixed headers; foreign headers are ignored", () => {
    const attrs = { k: "v", "ключ": "значение", empty: "" };
    const h = toHeaders(attrs)!;
    const asBuffers = Object.fromEntries(Object.entries(h).map(([k, v]) => [k, Buffer.from(String(v))]));
    assert.deepEqual(fromHeaders({ ...asBuffers, "traceparent": Buffer.from("x") }), attrs);
    assert.equal(toHeaders({}), undefined);
  });

  it("config: kafka serves pubsub and stream; a kafka namespace serving queue or keyvalue is refused", async () => {
    await validateConfig({ namespaces: [{ name: "n", primitives: ["pubsub", "stream"], backend: { type: "kafka", brokers: ["k:9092"] } }] }, "prism.yaml");
    await assert.rejects(
      validateConfig({ namespaces: [{ name: "n", primitives: ["queue"], backend: { type: "kafka" } }] }, "prism.yaml"),
      /backend "kafka" does not implement queue_basic/,
    );
  });
});

describe("kafka: unreachable broker", () => {
  it("create() does not throw; every call answers UNAVAILABLE promptly; health says why; close ends cleanly", async () => {
    const inst = driver.create(
      optionsSchema.parse({ brokers: ["127.0.0.1:1"], connect_timeout_ms: 300, request_timeout_ms: 1000, retries: 0 }),
      { clock: systemClock, log: noLog },
    );
    const s = inst.namespace("down", DEFAULT_LIMITS);
    const calls: [string, () => Promise<unknown>][] = [
      ["publish", () => s.pubsub!.publish("a.b", b("x"), {})],
      ["subscribe", () => s.pubsub!.subscribe("a.*", { onMessage() {}, onError() {} })],
      ["append", () => s.stream!.append("s", b("x"), {})],
      ["read", () => s.stream!.read("s", 0, 10)],
      ["readGroup", () => s.stream!.readGroup!("s", "g", "c", 10, 0)],
      ["ackGroup", () => s.stream!.ackGroup!("s", "g", [1])],
    ];
    for (const [what, call] of calls) {
      await assert.rejects(call(), (e) => {
        assert.equal(reason(e), "PRISM_ERR_BACKEND_UNAVAILABLE", `${what}: ${(e as Error).message}`);
        return true;
      });
    }
    const h = await inst.health();
    assert.equal(h.ok, false);
    assert.match(h.message, /kafka 127\.0\.0\.1:1/);
    await s.close?.();
    await inst.close();
    await inst.close(); // idempotent
  });
});

describe("kafka driver (real cluster)", () => {
  // Skipped per test (not per suite), so the run's summary counts them as skipped.
  const it = (name: string, fn: () => Promise<void>) => itReal(name, { skip }, fn);
  const clock = new ManualClock(Date.now());
  const limits: NamespaceLimits = { ...DEFAULT_LIMITS, streamClaimTimeoutSeconds: 30 };
  let inst: BackendInstance;

  before(() => {
    if (skip) return;
    inst = driver.create(optionsSchema.parse({ brokers, prefix, replication_factor: 1 }), { clock, log: noLog });
  });
  after(() => inst?.close());

  it("health answers", async () => {
    const h = await inst.health();
    assert.equal(h.ok, true, h.message);
  });

  it("offsets are Kafka offsets + 1; read from any offset; the record keeps bytes, attributes, timestamp", async () => {
    const st = inst.namespace(`o-${randomBytes(2).toString("hex")}`, limits).stream!;
    const offs = [];
    for (let i = 0; i < 5; i++) offs.push(await st.append("log", b(`e${i}`), { i: String(i) }));
    assert.deepEqual(offs, [1, 2, 3, 4, 5]);
    const recs = await st.read("log", 3, 10);
    assert.deepEqual(recs.map((r) => r.offset), [3, 4, 5]);
    assert.deepEqual(recs.map((r) => r.attributes.i), ["2", "3", "4"]);
    assert.equal(recs[0]!.timestampMs, clock.now());
  });

  it("consumer groups: claim timeout on the injected clock, and a restarted instance resumes at the lowest unacked record", async () => {
    const name = `g-${randomBytes(2).toString("hex")}`;
    const st = inst.namespace(name, limits).stream!;
    for (let i = 0; i < 4; i++) await st.append("jobs", b(`j${i}`), {});
    const first = await st.readGroup!("jobs", "w", "c1", 10, 0);
    assert.deepEqual(first.map((r) => r.offset), [1, 2, 3, 4]);
    assert.equal(await st.ackGroup!("jobs", "w", [1, 3]), 2);
    assert.deepEqual(await st.readGroup!("jobs", "w", "c2", 10, 0), []);
    clock.advance(31_000);
    const again = await st.readGroup!("jobs", "w", "c2", 10, 0);
    assert.deepEqual(again.map((r) => [r.offset, r.deliveryCount]), [[2, 2], [4, 2]]);
    const other = driver.create(optionsSchema.parse({ brokers, prefix, replication_factor: 1 }), { clock, log: noLog });
    try {
      const resumed = await other.namespace(name, limits).stream!.readGroup!("jobs", "w", "c3", 10, 0);
      assert.deepEqual(resumed.map((r) => r.offset), [2, 3, 4], "committed offset = the lowest unacked record");
    } finally {
      await other.close();
    }
  });

  it("pubsub: a subscription gets what is published after it resolves, filtered by pattern, with the offset as id", async () => {
    const ps = inst.namespace(`p-${randomBytes(2).toString("hex")}`, limits).pubsub!;
    await ps.publish("orders.old", b("before"), {});
    const got: PubSubMessage[] = [];
    const sub = await ps.subscribe("orders.>", { onMessage: (m) => got.push(m), onError() {} });
    const id = await ps.publish("orders.eu.created", b("x"), { k: "v" });
    await ps.publish("other", b("no"), {});
    for (let i = 0; i < 100 && got.length < 1; i++) await sleep(50);
    await sleep(300);
    assert.deepEqual(got.map((m) => [m.topic, m.messageId, m.attributes.k]), [["orders.eu.created", id, "v"]]);
    await sub.close();
  });
});
