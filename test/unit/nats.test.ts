/**
 * NATS driver, driver level. Naming and codecs are pure; the rest runs
 * against the real NATS + JetStream on 127.0.0.1:4222 (or NATS_URL), under a
 * per-run prefix whose streams are deleted afterwards. The outage test starts
 * its own nats-server (JetStream, store under os.tmpdir()) on a free port,
 * stops and restarts it.
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { systemClock } from "../../src/core/clock.js";
import { DEFAULT_LIMITS } from "../../src/config/schema.js";
import { PrismError } from "../../src/core/errors.js";
import type { BackendInstance, NamespaceLimits, NamespaceStores } from "../../src/backends/driver.js";
import { driver } from "../../src/backends/nats/index.js";
import { optionsSchema } from "../../src/backends/nats/options.js";
import { enc, kvKey, kvKeyDecode, Names } from "../../src/backends/nats/names.js";
import { decodeAttributes, encodeAttributes } from "../../src/backends/nats/codec.js";
import { ackSubjectFor, parseAckSubject } from "../../src/backends/nats/pull.js";
import { cleanupPrefix } from "./nats-cleanup.js";
import { freePort, haveBinary, privateNats, tcpOpen, type PrivateServer } from "../helpers/private-servers.js";

const servers = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const prefix = `punit-${process.pid}-${randomBytes(3).toString("hex")}`;
const limits: NamespaceLimits = { ...DEFAULT_LIMITS, maxDeliveries: 3, visibilityTimeoutSeconds: 1, streamClaimTimeoutSeconds: 1 };
const b = (s: string) => Buffer.from(s);
const quiet = { clock: systemClock, log: () => {} };

function reason(e: unknown): string {
  return e instanceof PrismError ? e.reason : String(e);
}

async function rejectsWith(p: Promise<unknown>, r: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.equal(reason(e), r);
    return true;
  });
}

/** Retries fn until it resolves (bounded). */
async function eventually<T>(fn: () => Promise<T>, what: string, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  while (Date.now() < end) {
    try {
      return await fn();
    } catch (e) {
      last = e;
      await sleep(200);
    }
  }
  assert.fail(`${what}: still failing after ${ms} ms: ${(last as Error)?.message}`);
}

describe("nats naming", () => {
  it("enc is injective on names that prefix or mimic each other, and yields subject/stream-safe tokens", () => {
    const names = ["users", "usersAbc", "a.b", "a_2Eb", "a_b", "a-b", "ключ", "x:y@z", "a__b", "A", "a"];
    const encoded = names.map(enc);
    assert.equal(new Set(encoded).size, names.length, `collision in ${encoded.join(" ")}`);
    for (const e of encoded) {
      assert.match(e, /^[A-Za-z0-9_-]+$/);
      assert.ok(!e.includes("__"), `${e} must not contain the separator`);
    }
    const a = new Names("p", "users").queue("jobs");
    const c = new Names("p", "usersAbc").queue("jobs");
    assert.notEqual(a.stream, c.stream);
    assert.notEqual(a.subject, c.subject);
    // (namespace, queue) pairs whose concatenations agree stay apart
    assert.notEqual(new Names("p", "a").queue("b__c").stream, new Names("p", "a__b").queue("c").stream);
  });

  it("long names are hashed into bounded, still distinct stream names", () => {
    const n = new Names("prism", "n".repeat(200));
    const s1 = n.stream("s".repeat(255)).stream;
    const s2 = n.stream(`${"s".repeat(254)}t`).stream;
    assert.ok(s1.length <= 120 && s2.length <= 120);
    assert.notEqual(s1, s2);
    assert.ok(new Names("prism", "n".repeat(200)).bucket.length <= 120);
  });

  it("kv keys are hex: reversible, and hex order is UTF-8 byte order", () => {
    const keys = ["p/🔑", "p/\uFF21", "p/", "p", "a b/c?d", "ключ"];
    for (const k of keys) assert.equal(kvKeyDecode(kvKey(k)), k);
    const byHex = [...keys].sort((x, y) => (kvKey(x) < kvKey(y) ? -1 : 1));
    const byBytes = [...keys].sort((x, y) => Buffer.compare(b(x), b(y)));
    assert.deepEqual(byHex, byBytes);
  });

  it("attributes survive the header encoding (any UTF-8, '=', '&', empty values)", () => {
    const attrs = { "x-ключ": "значение", "a=b": "c&d", empty: "", "with space": "line\r\nbreak" };
    assert.deepEqual(decodeAttributes(encodeAttributes(attrs)), attrs);
    assert.equal(encodeAttributes({}), "");
    assert.match(encodeAttributes(attrs), /^[\x21-\x7e]*$/, "header-safe ASCII");
  });

  it("parses v1 and v2 ack subjects; a reconstructed ack subject parses back to its sequence", () => {
    assert.deepEqual(parseAckSubject("$JS.ACK.S.C.3.42.7.1700000000123456789.0"), { deliveries: 3, seq: 42, timestampMs: 1700000000123 });
    assert.deepEqual(parseAckSubject("$JS.ACK.dom.acchash.S.C.2.9.5.1700000000000000000.1.tok"), { deliveries: 2, seq: 9, timestampMs: 1700000000000 });
    assert.equal(parseAckSubject("_INBOX.x.y"), null);
    assert.equal(parseAckSubject(ackSubjectFor("S", "C", 77))?.seq, 77);
  });
});

describe("nats driver (shared server)", () => {
  let inst: BackendInstance;
  let ok = false;
  const stores = (ns: string, l: NamespaceLimits = limits): NamespaceStores => inst.namespace(ns, l);

  before(async () => {
    ok = await tcpOpen(Number(new URL(servers).port || 4222));
    inst = driver.create(optionsSchema.parse({ servers, prefix }), quiet);
  });
  after(async () => {
    await inst.close();
    if (ok) await cleanupPrefix(servers, prefix);
  });

  it("options: defaults, arrays of servers, strict", () => {
    assert.deepEqual(optionsSchema.parse({}), { servers: "nats://127.0.0.1:4222", prefix: "prism" });
    assert.ok(optionsSchema.safeParse({ servers: ["nats://a:4222", "b:4223"] }).success);
    assert.ok(!optionsSchema.safeParse({ prefix: "has.dot" }).success, "prefix must be one subject token");
    assert.ok(!optionsSchema.safeParse({ nope: 1 }).success);
  });

  it("health reports the round trip", async (t) => {
    if (!ok) return t.skip("no NATS");
    const h = await inst.health();
    assert.equal(h.ok, true, h.message);
  });

  it("streams, queues and buckets of namespaces that prefix each other are separate JetStream objects", async (t) => {
    if (!ok) return t.skip("no NATS");
    const ns = `iso-${randomBytes(3).toString("hex")}`;
    const [a, c] = [stores(ns), stores(`${ns}.x`)];
    await a.queue!.enqueue("jobs", b("a"), {}, 0);
    await c.queue!.enqueue("jobs", b("c"), {}, 0);
    await a.stream!.append("log", b("a"), {});
    assert.equal(await c.stream!.append("log", b("c"), {}), 1, "own stream, own offsets");
    await a.keyvalue!.set("k", b("a"), {});
    assert.equal(await c.keyvalue!.get("k"), null);
    const [m] = await a.queue!.dequeue("jobs", { maxMessages: 10, visibilityTimeoutMs: 5000, waitMs: 0 });
    assert.equal(Buffer.from(m!.payload).toString(), "a");
    await a.queue!.ack("jobs", m!.receipt);
  });

  it("a lease longer than the consumer's ack_wait is kept alive with progress (no early redelivery)", async (t) => {
    if (!ok) return t.skip("no NATS");
    // namespace visibility 1 s → ack_wait 3 s; this lease is 4.5 s
    const q = stores(`lease-${randomBytes(3).toString("hex")}`).queue!;
    await q.enqueue("long", b("x"), {}, 0);
    const [m] = await q.dequeue("long", { maxMessages: 1, visibilityTimeoutMs: 4500, waitMs: 0 });
    await sleep(3800);
    assert.deepEqual(await q.dequeue("long", { maxMessages: 1, visibilityTimeoutMs: 1000, waitMs: 0 }), [], "still leased past ack_wait");
    await q.ack("long", m!.receipt);
    assert.deepEqual(await q.dequeue("long", { maxMessages: 1, visibilityTimeoutMs: 1000, waitMs: 0 }), []);
  });

  it("a receipt reaching another Prism process (instance) is refused as stale; the message is redelivered after its lease", async (t) => {
    if (!ok) return t.skip("no NATS");
    const other = driver.create(optionsSchema.parse({ servers, prefix }), quiet);
    try {
      const ns = `xproc-${randomBytes(3).toString("hex")}`;
      const q1 = stores(ns).queue!;
      const q2 = other.namespace(ns, limits).queue!;
      await q1.enqueue("jobs", b("x"), {}, 0);
      const [m] = await q1.dequeue("jobs", { maxMessages: 1, visibilityTimeoutMs: 1000, waitMs: 0 });
      await rejectsWith(q2.ack("jobs", m!.receipt), "PRISM_ERR_STALE_RECEIPT");
      const [again] = await eventually(async () => {
        const got = await q2.dequeue("jobs", { maxMessages: 1, visibilityTimeoutMs: 5000, waitMs: 0 });
        assert.equal(got.length, 1);
        return got;
      }, "redelivery to the other instance");
      assert.equal(again!.deliveryCount, 2);
      await q2.ack("jobs", again!.receipt);
    } finally {
      await other.close();
    }
  });

  it("consumer groups: an ack sent through another instance takes effect (not redelivered), though it is not counted", async (t) => {
    if (!ok) return t.skip("no NATS");
    const other = driver.create(optionsSchema.parse({ servers, prefix }), quiet);
    try {
      const ns = `grp-${randomBytes(3).toString("hex")}`;
      const s1 = stores(ns).stream!;
      const s2 = other.namespace(ns, limits).stream!;
      const o1 = await s1.append("ev", b("1"), {});
      const o2 = await s1.append("ev", b("2"), {});
      const got = await s1.readGroup!("ev", "g", "c1", 10, 0);
      assert.deepEqual(got.map((r) => r.offset), [o1, o2]);
      assert.equal(await s2.ackGroup!("ev", "g", [o1]), 0, "not delivered by this instance: not counted");
      assert.equal(await s1.ackGroup!("ev", "g", [o2]), 1);
      await sleep(limits.streamClaimTimeoutSeconds * 1000 + 800);
      assert.deepEqual(await s1.readGroup!("ev", "g", "c1", 10, 0), [], "both acks took effect: nothing redelivered");
    } finally {
      await other.close();
    }
  });

  it("stream retention: max_msgs from the namespace limits drops the oldest; offsets keep counting", async (t) => {
    if (!ok) return t.skip("no NATS");
    const s = stores(`ret-${randomBytes(3).toString("hex")}`, { ...limits, streamMaxCount: 3 }).stream!;
    for (let i = 1; i <= 5; i++) assert.equal(await s.append("log", b(`e${i}`), {}), i);
    const recs = await s.read("log", 0, 100);
    assert.deepEqual(recs.map((r) => r.offset), [3, 4, 5]);
    assert.deepEqual((await s.read("log", 1, 100)).map((r) => r.offset), [3, 4, 5], "a read from a dropped offset starts at the oldest retained");
  });

  it("a 1 MiB value fits; a payload over the server's max_payload is INVALID_ARGUMENT, not UNAVAILABLE", async (t) => {
    if (!ok) return t.skip("no NATS");
    const s = stores(`big-${randomBytes(3).toString("hex")}`);
    const mib = randomBytes(1024 * 1024);
    await s.keyvalue!.set("big", mib, {});
    assert.ok(Buffer.from((await s.keyvalue!.get("big"))!.value).equals(mib));
    await rejectsWith(s.pubsub!.publish("t", randomBytes(2 * 1024 * 1024), {}), "PRISM_ERR_INVALID_ARGUMENT");
  });
});

describe("nats driver: outage and recovery (own nats-server)", () => {
  let port: number;
  let dir: string;
  let nats: PrivateServer | undefined;

  const startNats = (): Promise<void> => (nats ??= privateNats(port, dir)).start();
  const stopNats = async (): Promise<void> => nats?.stop();

  before(async () => {
    port = await freePort();
    dir = mkdtempSync(join(tmpdir(), "prism-nats-unit-"));
  });
  after(async () => {
    await stopNats();
    rmSync(dir, { recursive: true, force: true });
  });

  it("create() does not throw while NATS is down; calls answer UNAVAILABLE; it connects when NATS starts, and acknowledged writes survive a restart", { timeout: 60_000 }, async (t) => {
    if (!(await haveBinary("nats-server"))) return t.skip("no nats-server binary");
    const inst = driver.create(optionsSchema.parse({ servers: `nats://127.0.0.1:${port}`, prefix: "outage" }), quiet);
    try {
      const s = inst.namespace("ns", limits);
      await rejectsWith(s.stream!.append("log", b("early"), {}), "PRISM_ERR_BACKEND_UNAVAILABLE");
      await rejectsWith(s.pubsub!.publish("t", b("x"), {}), "PRISM_ERR_BACKEND_UNAVAILABLE");
      assert.equal((await inst.health()).ok, false);

      await startNats();
      const acked: number[] = [];
      acked.push(await eventually(() => s.stream!.append("log", b("r0"), {}), "first append after NATS started"));
      await s.queue!.enqueue("jobs", b("job"), {}, 0);
      await s.keyvalue!.set("k", b("v"), {});
      assert.equal((await inst.health()).ok, true);

      await stopNats();
      await eventually(async () => {
        await rejectsWith(s.stream!.append("log", b("during outage"), {}), "PRISM_ERR_BACKEND_UNAVAILABLE");
      }, "UNAVAILABLE while NATS is down");

      await startNats();
      acked.push(await eventually(() => s.stream!.append("log", b("r1"), {}), "append after restart"));
      const recs = await s.stream!.read("log", 0, 100);
      assert.deepEqual(recs.map((r) => Buffer.from(r.payload).toString()), ["r0", "r1"], "every acknowledged record survived, nothing else");
      assert.deepEqual(recs.map((r) => r.offset), acked);
      const [m] = await s.queue!.dequeue("jobs", { maxMessages: 1, visibilityTimeoutMs: 5000, waitMs: 0 });
      assert.equal(Buffer.from(m!.payload).toString(), "job", "the enqueued job survived");
      await s.queue!.ack("jobs", m!.receipt);
      assert.equal(Buffer.from((await s.keyvalue!.get("k"))!.value).toString(), "v");
    } finally {
      await inst.close();
    }
  });
});
