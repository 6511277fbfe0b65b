/**
 * MQTT driver, driver level, against the real Mosquitto on 127.0.0.1:1883
 * (or PRISM_TEST_MQTT_URL). Outages are simulated with a TCP proxy.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { systemClock } from "../../src/core/clock.js";
import { DEFAULT_LIMITS } from "../../src/config/schema.js";
import { PrismError } from "../../src/core/errors.js";
import { validateConfig } from "../../src/config/load.js";
import type { PubSubMessage } from "../../src/backends/driver.js";
import { driver } from "../../src/backends/mqtt/index.js";
import { optionsSchema } from "../../src/backends/mqtt/options.js";
import { fromMqttTopic, namespaceBase, toMqttFilter, toMqttTopic } from "../../src/backends/mqtt/topics.js";
import { TcpProxy } from "./tcp-proxy.js";

const url = process.env.PRISM_TEST_MQTT_URL ?? "mqtt://127.0.0.1:1883";
const prefix = `prism-unit-${process.pid}-${randomBytes(3).toString("hex")}`;
const noLog = () => {};
const b = (s: string) => Buffer.from(s);

function reason(e: unknown): string {
  return e instanceof PrismError ? e.reason : String(e);
}

async function eventually(fn: () => Promise<boolean> | boolean, what: string, ms = 8000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) assert.fail(`${what}: not within ${ms} ms`);
    await sleep(50);
  }
}

describe("mqtt: pure parts", () => {
  it("topics map to levels; MQTT-special characters are escaped so distinct topics stay distinct", () => {
    const base = namespaceBase("p", "ns.1");
    assert.equal(toMqttTopic(base, "orders.eu.created"), "p/ns.1/orders/eu/created");
    const tricky = ["a/b.c", "a.b.c", "a+b.c", "a#.c", "100%.x"];
    const mapped = tricky.map((t) => toMqttTopic(base, t));
    assert.equal(new Set(mapped).size, tricky.length, mapped.join(" "));
    for (const t of tricky) assert.equal(fromMqttTopic(base, toMqttTopic(base, t)), t);
    assert.equal(toMqttFilter(base, "orders.*.>"), "p/ns.1/orders/+/#");
    assert.equal(fromMqttTopic(base, "p/ns.1"), null, "the namespace level itself is no topic");
    assert.equal(fromMqttTopic(base, "p/other/x"), null);
  });

  it("options and config: defaults, URL scheme, pubsub only", async () => {
    assert.equal(optionsSchema.parse({}).url, "mqtt://127.0.0.1:1883");
    assert.equal(optionsSchema.safeParse({ url: "amqp://x" }).success, false);
    assert.equal(optionsSchema.safeParse({ prefix: "a/b" }).success, false);
    await assert.rejects(
      validateConfig({ namespaces: [{ name: "n", primitives: ["pubsub", "queue"], backend: { type: "mqtt" } }] }, "prism.yaml"),
      /backend "mqtt" does not implement queue_basic/,
    );
  });
});

describe("mqtt driver (real broker)", () => {
  it("down at start: create() does not throw; calls answer UNAVAILABLE; health says so", async () => {
    const inst = driver.create(optionsSchema.parse({ url: "mqtt://127.0.0.1:1", connect_timeout_ms: 500 }), { clock: systemClock, log: noLog });
    const s = inst.namespace("down", DEFAULT_LIMITS);
    await assert.rejects(s.pubsub!.publish("a.b", b("x"), {}), (e) => reason(e) === "PRISM_ERR_BACKEND_UNAVAILABLE");
    await assert.rejects(s.pubsub!.subscribe("a.b", { onMessage() {}, onError() {} }), (e) => reason(e) === "PRISM_ERR_BACKEND_UNAVAILABLE");
    assert.equal((await inst.health()).ok, false);
    await inst.close();
  });

  it("one instance, overlapping filters: each subscription gets each matching message once", async () => {
    const inst = driver.create(optionsSchema.parse({ url, prefix }), { clock: systemClock, log: noLog });
    const s = inst.namespace("overlap", DEFAULT_LIMITS);
    try {
      const got: Record<string, string[]> = { star: [], gt: [], exact: [], exact2: [] };
      const sink = (k: string) => ({ onMessage: (m: PubSubMessage) => got[k]!.push(m.topic), onError() {} });
      const subs = [
        await s.pubsub!.subscribe("o.*", sink("star")),
        await s.pubsub!.subscribe("o.>", sink("gt")),
        await s.pubsub!.subscribe("o.x", sink("exact")),
        await s.pubsub!.subscribe("o.x", sink("exact2")),
      ];
      await s.pubsub!.publish("o", b("parent level"), {});
      await s.pubsub!.publish("o.x", b("1"), {});
      await s.pubsub!.publish("o.x.y", b("2"), {});
      await s.pubsub!.publish("o.end", b("3"), {});
      await eventually(() => got.gt!.length >= 3 && got.star!.length >= 2, "deliveries");
      await sleep(200); // a duplicate would arrive by now
      assert.deepEqual(got, { star: ["o.x", "o.end"], gt: ["o.x", "o.x.y", "o.end"], exact: ["o.x"], exact2: ["o.x"] });
      await subs[2]!.close();
      await s.pubsub!.publish("o.x", b("4"), {});
      await eventually(() => got.exact2!.length === 2, "the other exact subscription still receives");
      assert.deepEqual(got.exact, ["o.x"], "closed subscription receives nothing");
    } finally {
      await s.close?.();
      await inst.close();
    }
  });

  it("outage: subscriptions end with UNAVAILABLE, publish fails fast, and it recovers without restart", async () => {
    const u = new URL(url);
    const proxy = new TcpProxy(u.hostname, Number(u.port || 1883));
    const port = await proxy.start();
    const inst = driver.create(optionsSchema.parse({ url: `mqtt://127.0.0.1:${port}`, prefix, reconnect_period_ms: 100 }), { clock: systemClock, log: noLog });
    const s = inst.namespace("outage", DEFAULT_LIMITS);
    try {
      const ended: Error[] = [];
      await s.pubsub!.subscribe("t.x", { onMessage() {}, onError: (e) => ended.push(e) });
      await proxy.cut();
      await eventually(() => ended.length === 1, "subscription ended");
      assert.equal(reason(ended[0]), "PRISM_ERR_BACKEND_UNAVAILABLE");
      await assert.rejects(s.pubsub!.publish("t.x", b("lost"), {}), (e) => reason(e) === "PRISM_ERR_BACKEND_UNAVAILABLE");
      assert.equal((await inst.health()).ok, false);
      await proxy.restore();
      await eventually(async () => (await inst.health()).ok, "reconnected");
      const live: string[] = [];
      await s.pubsub!.subscribe("t.x", { onMessage: (m) => live.push(m.payload.toString()), onError() {} });
      await s.pubsub!.publish("t.x", b("back"), { a: "1" });
      await eventually(() => live.length === 1, "a new subscription works");
      assert.deepEqual(live, ["back"]);
    } finally {
      await s.close?.();
      await inst.close();
      await proxy.close();
    }
  });
});
