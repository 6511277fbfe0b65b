/**
 * Multicast Registry on every backend combination that satisfies its slots
 * here: each registry backend (keyvalue_scan) with in-process messaging, and
 * each messaging backend (pubsub) with an in-process registry. Prism runs on
 * a ManualClock, so member expiry is exact whatever the backend. With
 * options.delivery: queue, each queue backend as the messaging slot (durable
 * delivery: what is multicast while a member is offline waits for it).
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { startServer, type RunningServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { ManualClock } from "../../src/core/clock.js";
import { connect, type Prism } from "@prism/client";
import { Redis } from "ioredis";
import { deletePrefixed } from "../unit/rabbitmq-cleanup.js";

const tag = `${process.pid}-${randomBytes(3).toString("hex")}`;
const sqlitePath = join(tmpdir(), `prism-acc-mcr-${tag}.db`);
process.on("exit", () => ["", "-wal", "-shm"].forEach((s) => rmSync(sqlitePath + s, { force: true })));
const KAFKA_BROKERS = process.env.PRISM_TEST_KAFKA_BROKERS?.split(",").map((x) => x.trim()).filter(Boolean) ?? [];
const REDIS = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const PG = process.env.POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";

const REGISTRIES: Record<string, Record<string, unknown>> = {
  memstore: { type: "memstore" },
  sqlite: { type: "sqlite", path: sqlitePath },
  redis: { type: "redis", url: REDIS, key_prefix: `prism-acc-mcr-${tag}` },
  postgres: { type: "postgres", url: PG, schema: `prism_acc_mcr_${process.pid}` },
  nats: { type: "nats", servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222", prefix: `acc-mcr-${process.pid}` },
};
const MESSAGING: Record<string, Record<string, unknown>> = {
  memstore: { type: "memstore" },
  redis: { type: "redis", url: REDIS, key_prefix: `prism-acc-mcr-ps-${tag}` },
  nats: { type: "nats", servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222", prefix: `acc-mcr-ps-${process.pid}` },
  mqtt: { type: "mqtt", url: process.env.MQTT_URL ?? "mqtt://127.0.0.1:1883", prefix: `acc-mcr-${process.pid}` },
  rabbitmq: { type: "rabbitmq", url: process.env.RABBITMQ_URL ?? "amqp://guest:guest@127.0.0.1:5672", prefix: `acc-mcr-${process.pid}` },
  postgres: { type: "postgres", url: PG, schema: `prism_acc_mcr_ps_${process.pid}` },
  sqlite: { type: "sqlite", path: sqlitePath },
  kafka: { type: "kafka", brokers: KAFKA_BROKERS.length ? KAFKA_BROKERS : ["127.0.0.1:9092"], prefix: `prism-acc-mcr-${tag}`, replication_factor: 1 },
};

const QUEUES: Record<string, Record<string, unknown>> = {
  memstore: { type: "memstore" },
  sqlite: { type: "sqlite", path: sqlitePath },
  redis: { type: "redis", url: REDIS, key_prefix: `prism-acc-mcr-q-${tag}` },
  postgres: { type: "postgres", url: PG, schema: `prism_acc_mcr_q_${process.pid}` },
  rabbitmq: { type: "rabbitmq", url: process.env.RABBITMQ_URL ?? "amqp://guest:guest@127.0.0.1:5672", prefix: `acc-mcr-q-${process.pid}` },
  nats: { type: "nats", servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222", prefix: `acc-mcr-q-${process.pid}` },
};

type Delivery = "pubsub" | "queue";
type Transport = "ws" | "grpc" | "http";
// Each backend in each slot (the other slot in-process), over WebSocket; the in-process pair also
// over gRPC and HTTP/JSON (Server-Sent Events for Subscribe), so every ingress serves the pattern.
const combos: [string, string, Delivery, Transport][] = [
  ...Object.keys(REGISTRIES).map((r) => [r, "memstore", "pubsub", "ws"] as [string, string, Delivery, Transport]),
  ["memstore", "memstore", "pubsub", "grpc"],
  ["memstore", "memstore", "pubsub", "http"],
  ...Object.keys(MESSAGING).filter((m) => m !== "memstore").map((m) => ["memstore", m, "pubsub", "ws"] as [string, string, Delivery, Transport]),
  ...Object.keys(QUEUES).map((q) => ["memstore", q, "queue", "ws"] as [string, string, Delivery, Transport]),
];
const address = (t: Transport, s: RunningServer) => (t === "grpc" ? `grpc://127.0.0.1:${s.grpcPort}` : `${t}://127.0.0.1:${s.httpPort}`);

const text = (b: Uint8Array) => Buffer.from(b).toString();

// RabbitMQ keeps every quorum queue a run declares (one per member with delivery: queue) until it is
// deleted; left behind, hundreds of them slow the broker's restart until it stops answering.
after(async () => {
  const url = String(MESSAGING.rabbitmq!.url);
  await deletePrefixed(url, String(MESSAGING.rabbitmq!.prefix)).catch(() => {});
  await deletePrefixed(url, String(QUEUES.rabbitmq!.prefix)).catch(() => {});
});

for (const [reg, msg, delivery, transport] of combos) {
  // No Kafka broker can run on the CI machine: that combination is reported as skipped, with the reason.
  const skip = msg === "kafka" && !KAFKA_BROKERS.length ? "PRISM_TEST_KAFKA_BROKERS is not set: no Kafka broker on this machine" : undefined;
  describe(`multicast-registry (registry ${reg}, messaging ${msg} ${delivery}, over ${transport})`, { skip }, () => {
    let srv: RunningServer;
    let client: Prism;
    const clock = new ManualClock(Date.now());
    let n = 0;
    const ns = async () => {
      const name = `mcr-${reg}-${msg}-${delivery[0]}-${transport}-${++n}-${randomBytes(2).toString("hex")}`;
      const messaging = delivery === "queue" ? QUEUES[msg] : MESSAGING[msg];
      await client.admin.applyNamespace({ name, pattern: "multicast-registry", slots: { registry: REGISTRIES[reg], messaging }, ...(delivery === "queue" ? { options: { delivery } } : {}) });
      return name;
    };
    before(async () => {
      const config = await validateConfig({ server: { allowed_paths: [tmpdir()] }, namespaces: [] }, "acceptance");
      srv = await startServer({ config, clock, grpcPort: 0, httpPort: 0, log: () => {} });
      client = await connect(address(transport, srv));
    });
    after(async () => {
      await client?.close();
      await srv?.close();
    });

    it("register, refresh, enumerate by filter with paging, unregister", async () => {
      const r = client.registry(await ns());
      assert.deepEqual(await r.register("dev-1", { type: "temperature", floor: "3", location: "building-a" }), { created: true, expiresAtMs: 0 });
      await r.register("dev-2", { type: "temperature", floor: "4", location: "building-b" });
      await r.register("dev-3", { type: "humidity", floor: "3", location: "building-a" });
      assert.equal((await r.register("dev-3", { type: "humidity", floor: "5", location: "building-a" })).created, false);
      const ids = async (f: string) => (await r.enumerate(f)).members.map((m) => m.identity).sort();
      assert.deepEqual(await ids(""), ["dev-1", "dev-2", "dev-3"]);
      assert.deepEqual(await ids('type = "temperature" and floor = 3'), ["dev-1"]);
      assert.deepEqual(await ids('{"location": "building-a"}'), ["dev-1", "dev-3"]);
      assert.deepEqual(await ids("floor >= 4"), ["dev-2", "dev-3"], "re-registering replaced dev-3's metadata");
      // Paging: limit 1 walks every member exactly once.
      const seen: string[] = [];
      let cursor = "";
      do {
        const page = await r.enumerate("", { cursor, limit: 1 });
        assert.ok(page.members.length <= 1);
        seen.push(...page.members.map((m) => m.identity));
        cursor = page.nextCursor;
      } while (cursor !== "");
      assert.deepEqual(seen.sort(), ["dev-1", "dev-2", "dev-3"]);
      assert.equal(await r.unregister("dev-2"), true);
      assert.equal(await r.unregister("dev-2"), false);
      assert.deepEqual(await ids(""), ["dev-1", "dev-3"]);
    });

    it("expired members never appear in Enumerate nor receive a Multicast; re-registering refreshes the TTL", async () => {
      const name = await ns();
      const r = client.registry(name);
      await r.register("short", { k: "v" }, { ttl: 10 });
      await r.register("long", { k: "v" }, { ttl: 100 });
      if (reg === "redis") {
        // A registry that claims keyvalue_ttl gets the TTL too, so the backend reclaims expired members.
        const redis = new Redis(REDIS);
        const pttl = await redis.pttl(`${String(REGISTRIES.redis!.key_prefix)}:{${name}}:kv:m/long`).finally(() => redis.disconnect());
        assert.ok(pttl > 90_000 && pttl <= 100_000, `the member's key expires with its TTL (PTTL ${pttl} ms)`);
      }
      await r.register("kept", { k: "v" }, { ttl: 10 });
      clock.advance(5_000);
      await r.register("kept", { k: "v" }, { ttl: 10 }); // refreshed: now expires at +15 s
      clock.advance(6_000);
      assert.deepEqual((await r.enumerate("")).members.map((m) => m.identity).sort(), ["kept", "long"]);
      const res = await r.multicast("k = v", "hello");
      assert.equal(res.total, 2);
    });

    it("Multicast delivers to every matching member's subscription and to no other, with counts", async () => {
      const name = await ns();
      const r = client.registry(name);
      await r.register("a", { role: "edge", floor: "1" });
      await r.register("b", { role: "edge", floor: "2" });
      await r.register("c", { role: "core", floor: "1" });
      const subs = Object.fromEntries(["a", "b", "c"].map((id) => [id, r.subscribe(id)]));
      await Promise.all(Object.values(subs).map((s) => s.ready));
      await sleep(msg === "memstore" || delivery === "queue" ? 0 : 200); // broker-side subscription propagation
      const res = await r.multicast('role = "edge"', "to-edges", { kind: "test" });
      assert.deepEqual(res, { total: 2, delivered: 2, failed: 0, failedIdentities: [] });
      for (const id of ["a", "b"]) {
        const it = subs[id]![Symbol.asyncIterator]();
        const m = await Promise.race([it.next(), sleep(5000).then(() => ({ value: undefined, done: true }))]);
        assert.ok(m.value, `${id} received nothing`);
        assert.equal(text(m.value.payload), "to-edges");
        assert.equal(m.value.attributes.kind, "test");
      }
      // c did not match: a second multicast to c only must be the first thing c receives.
      await r.multicast('role = "core"', "to-core");
      const itc = subs.c![Symbol.asyncIterator]();
      const mc = await Promise.race([itc.next(), sleep(5000).then(() => ({ value: undefined, done: true }))]);
      assert.equal(text(mc.value!.payload), "to-core");
      for (const s of Object.values(subs)) s.close();
    });

    if (delivery === "queue")
      it("delivery: queue keeps what is multicast while a member is offline, and delivers each message once", async () => {
        const r = client.registry(await ns());
        await r.register("offline", { zone: "z1" });
        await r.register("other", { zone: "z2" });
        for (let i = 0; i < 5; i++) assert.deepEqual(await r.multicast('zone = "z1"', `m${i}`), { total: 1, delivered: 1, failed: 0, failedIdentities: [] });
        const sub = r.subscribe("offline");
        await sub.ready;
        const got: string[] = [];
        const it = sub[Symbol.asyncIterator]();
        while (got.length < 5) {
          const m = await Promise.race([it.next(), sleep(10_000).then(() => ({ value: undefined, done: true }))]);
          assert.ok(m.value, `received only ${got.join(",")}`);
          got.push(text(m.value.payload));
        }
        assert.deepEqual(got.sort(), ["m0", "m1", "m2", "m3", "m4"]);
        sub.close();
        // Acknowledged once handed over: past the lease (the backends that lease on Prism's clock), a new
        // subscription gets the next multicast, not the old ones again.
        clock.advance(31_000);
        await r.multicast('zone = "z1"', "m5");
        const again = r.subscribe("offline");
        await again.ready;
        const m = await Promise.race([again[Symbol.asyncIterator]().next(), sleep(10_000).then(() => ({ value: undefined, done: true }))]);
        assert.equal(text(m.value!.payload), "m5");
        again.close();
      });

    if (msg === "postgres" && delivery === "pubsub")
      it("a member the messaging backend refuses is counted failed and named; the other matches still receive", async () => {
        const r = client.registry(await ns());
        const long = "l".repeat(256); // the longest identity the registry takes
        for (const id of ["near-1", "near-2", long]) await r.register(id, { g: "x" });
        await r.register("elsewhere", { g: "y" });
        const subs = ["near-1", "near-2"].map((id) => r.subscribe(id));
        await Promise.all(subs.map((s) => s.ready));
        await sleep(200); // LISTEN propagation
        // PostgreSQL carries a message in one NOTIFY of at most 7999 bytes, its topic member.<identity>
        // included: this payload fits with a short identity (~7.8 KB encoded) but not with a 256-character one
        // (~8.1 KB), which the driver refuses (INVALID_ARGUMENT) for that member only.
        const payload = Buffer.alloc(5800, 97);
        const res = await r.multicast("g = x", payload);
        assert.deepEqual(res, { total: 3, delivered: 2, failed: 1, failedIdentities: [long] });
        for (const s of subs) {
          const m = await Promise.race([s[Symbol.asyncIterator]().next(), sleep(5000).then(() => ({ value: undefined, done: true }))]);
          assert.ok(m.value, "a delivered member received nothing");
          assert.equal(m.value.payload.length, payload.length);
          s.close();
        }
      });

    it("refusals: a syntax error names its position; an unregistered member cannot subscribe; a bad identity is named", async () => {
      const r = client.registry(await ns());
      await assert.rejects(r.enumerate("floor = "), (e: any) => e.code === 3 && /filter: position 9: expected a value/.test(e.message));
      await assert.rejects(r.multicast("(a = 1", "x"), (e: any) => e.code === 3 && /filter: position 7/.test(e.message));
      const sub = r.subscribe("ghost");
      await assert.rejects(sub.ready, (e: any) => e.code === 9 && /"ghost" is not a registered member/.test(e.message));
      await assert.rejects(r.register("bad identity", {}), (e: any) => e.code === 3 && /identity/.test(e.message));
    });
  });
}
