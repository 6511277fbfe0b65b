/**
 * src/observability/propagate.ts and the drivers' native trace headers.
 * A fixed trace source stands in for the OTel context here (the real one,
 * end to end with exported spans, is test/e2e/trace-propagation.test.ts);
 * the brokers are real: RabbitMQ 5672 and Mosquitto 1883 (skipped when down).
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { connect as amqpConnect } from "amqplib";
import { connect as mqttConnect } from "mqtt";
import { putTraceHeaders, setTraceSource, traceHeaders, withTraceAttributes, type TraceHeaders } from "../../src/observability/propagate.js";
import { toHeaders } from "../../src/backends/kafka/records.js";
import { messageHeaders } from "../../src/backends/nats/codec.js";
import { systemClock } from "../../src/core/clock.js";
import { DEFAULT_LIMITS } from "../../src/config/schema.js";
import { driver as rabbitDriver } from "../../src/backends/rabbitmq/index.js";
import { optionsSchema as rabbitOptions } from "../../src/backends/rabbitmq/options.js";
import { queueName } from "../../src/backends/rabbitmq/names.js";
import { deletePrefixed } from "./rabbitmq-cleanup.js";
import { driver as mqttDriver } from "../../src/backends/mqtt/index.js";
import { optionsSchema as mqttOptions } from "../../src/backends/mqtt/options.js";
import { namespaceBase, toMqttTopic } from "../../src/backends/mqtt/topics.js";
import { tcpOpen } from "../helpers/private-servers.js";

const TP = `00-${randomBytes(16).toString("hex")}-${randomBytes(8).toString("hex")}-01`;
const quiet = { clock: systemClock, log: () => {} };
const prefix = `prism-tp-${process.pid}-${randomBytes(3).toString("hex")}`;

/** Runs fn with `t` as the active trace context (undefined: tracing on, no active span). */
async function withSource<T>(t: TraceHeaders | undefined, fn: () => Promise<T> | T): Promise<T> {
  setTraceSource(() => t);
  try {
    return await fn();
  } finally {
    setTraceSource(undefined);
  }
}

describe("propagate: attributes and header maps", () => {
  it("tracing off: the caller's attributes object itself, nothing added", () => {
    const attrs = { a: "1" };
    assert.equal(withTraceAttributes(attrs), attrs);
    assert.equal(traceHeaders(), undefined);
    const h: Record<string, unknown> = {};
    putTraceHeaders(h);
    assert.deepEqual(h, {});
  });

  it("tracing on: a copy with traceparent (and tracestate when the span has one); the caller's object is untouched", async () => {
    const attrs = { a: "1" };
    const out = await withSource({ traceparent: TP }, () => withTraceAttributes(attrs));
    assert.deepEqual(out, { a: "1", traceparent: TP });
    assert.deepEqual(attrs, { a: "1" });
    assert.deepEqual(await withSource({ traceparent: TP, tracestate: "k=v" }, () => withTraceAttributes({})), { traceparent: TP, tracestate: "k=v" });
  });

  it("a caller's own traceparent or tracestate wins; no active span adds nothing", async () => {
    for (const own of [{ traceparent: "mine" }, { tracestate: "x=y" }] as Record<string, string>[]) {
      assert.equal(await withSource({ traceparent: TP, tracestate: "k=v" }, () => withTraceAttributes(own)), own);
    }
    const attrs = { a: "1" };
    assert.equal(await withSource(undefined, () => withTraceAttributes(attrs)), attrs);
  });

  it("kafka record headers and NATS headers carry the W3C names next to the attributes", async () => {
    assert.deepEqual(toHeaders({ a: "1" }), { "a:a": "1" });
    assert.equal(toHeaders({}), undefined);
    assert.deepEqual(await withSource({ traceparent: TP, tracestate: "k=v" }, () => toHeaders({ a: "1" })), { traceparent: TP, tracestate: "k=v", "a:a": "1" });
    const h = messageHeaders("id", 5, { a: "1" }, { traceparent: TP })!;
    assert.equal(h.get("traceparent"), TP);
    assert.equal(h.get("Prism-Id"), "id");
    assert.equal(messageHeaders(undefined, undefined, {}), undefined);
  });
});

describe("native trace headers on real brokers", () => {
  after(() => deletePrefixed(process.env.PRISM_TEST_RABBITMQ_URL ?? "amqp://guest:guest@127.0.0.1:5672", prefix));

  it("rabbitmq: an enqueued message has the AMQP header traceparent", { timeout: 30_000 }, async (t) => {
    if (!(await tcpOpen(5672))) return t.skip("no RabbitMQ");
    const url = process.env.PRISM_TEST_RABBITMQ_URL ?? "amqp://guest:guest@127.0.0.1:5672";
    const inst = rabbitDriver.create(rabbitOptions.parse({ url, prefix }), quiet);
    const conn = await amqpConnect(url);
    try {
      const q = inst.namespace("ns", DEFAULT_LIMITS).queue!;
      await withSource({ traceparent: TP }, () => q.enqueue("jobs", Buffer.from("x"), { a: "1" }, 0));
      await q.enqueue("jobs", Buffer.from("y"), {}, 0);
      const ch = await conn.createChannel();
      const got: (string | undefined)[] = [];
      for (let i = 0; i < 2; i++) {
        const m = await ch.get(queueName(prefix, "ns", "jobs"), { noAck: true });
        assert.ok(m, "message in the broker queue");
        got.push(m.properties.headers?.traceparent?.toString());
      }
      assert.deepEqual(got, [TP, undefined], "traced enqueue has the header, the untraced one does not");
    } finally {
      await conn.close();
      await inst.close();
    }
  });

  it("mqtt: a published message has the MQTT 5 user property traceparent", { timeout: 30_000 }, async (t) => {
    if (!(await tcpOpen(1883))) return t.skip("no MQTT broker");
    const url = process.env.PRISM_TEST_MQTT_URL ?? "mqtt://127.0.0.1:1883";
    const inst = mqttDriver.create(mqttOptions.parse({ url, prefix }), quiet);
    const raw = mqttConnect(url, { protocolVersion: 5 });
    try {
      await new Promise<void>((resolve, reject) => (raw.once("connect", () => resolve()), raw.once("error", reject)));
      const topic = toMqttTopic(namespaceBase(prefix, "ns"), "orders.new");
      await raw.subscribeAsync(topic, { qos: 1 });
      const got = new Promise<Record<string, unknown> | undefined>((resolve) => raw.once("message", (_t, _p, packet) => resolve(packet.properties?.userProperties)));
      const ps = inst.namespace("ns", DEFAULT_LIMITS).pubsub!;
      await withSource({ traceparent: TP }, () => ps.publish("orders.new", Buffer.from("x"), { a: "1" }));
      const props = await got;
      assert.equal(props?.traceparent, TP);
      assert.equal(props?.["a:a"], "1");
    } finally {
      await raw.endAsync();
      await inst.close();
    }
  });
});
