/**
 * Claims, checked both ways: the wire reports what the driver claims, and an
 * interface the backend does NOT claim is refused with FAILED_PRECONDITION
 * (never half-served).
 */
import assert from "node:assert/strict";
import type { PrimitiveInterfaceName as InterfaceName } from "../../../src/core/interfaces.js";
import type { Suite, SuiteContext } from "../harness.js";
import { bytes, expectCode } from "../util.js";

const FAILED_PRECONDITION = 9;
const INVALID_ARGUMENT = 3;

export async function claimsCase(ctx: SuiteContext): Promise<void> {
  if (ctx.fixture.pattern) {
    // A composed pattern claims what its pattern derives from its slots' backends.
    const info = await ctx.client.admin.getNamespace(await ctx.ns());
    assert.equal(info.pattern, ctx.fixture.pattern.name);
    assert.deepEqual([...info.interfaces].sort(), [...ctx.claims].sort(), "GetNamespace interfaces = the pattern's claims");
    assert.deepEqual(info.slots.map((s) => [s.slot, s.backendType]).sort(), Object.entries(ctx.fixture.pattern.slotTypes).sort());
    return;
  }
  const list = await ctx.client.admin.listBackends();
  const mine = list.find((b) => b.type === ctx.backendType);
  assert.ok(mine, `ListBackends has no "${ctx.backendType}" (got ${list.map((b) => b.type).join(", ")})`);
  assert.deepEqual([...mine.interfaces].sort(), [...ctx.claims].sort(), "claims over the wire = driver.interfaces");
  const health = await ctx.client.admin.health();
  assert.equal(health.status, "SERVING");
}

/** A primitive whose basic interface is unclaimed: the namespace cannot serve it, and calls are refused. */
function primitiveRefused(primitive: string, call: (ctx: SuiteContext, ns: string) => Promise<unknown>): Suite {
  return (test) => {
    test(`a namespace cannot be configured to serve ${primitive}`, async (ctx) => {
      const name = ctx.uid("acc-refused");
      const p = ctx.fixture.pattern;
      await expectCode(
        ctx.client.admin.applyNamespace(p ? { name, ...p.entry(name), primitives: [primitive] } : { name, primitives: [primitive], backend: ctx.fixture.backend("refused") }),
        INVALID_ARGUMENT,
        `ApplyNamespace serving ${primitive}`,
      );
    });
    test(`${primitive} calls on a namespace of this backend → FAILED_PRECONDITION`, async (ctx) => {
      const ns = await ctx.ns();
      await expectCode(call(ctx, ns), FAILED_PRECONDITION, `${primitive} call`);
    });
  };
}

/** An optional interface: the calls that need it are refused with FAILED_PRECONDITION. */
function callsRefused(calls: Record<string, (ctx: SuiteContext, ns: string) => Promise<unknown>>): Suite {
  return (test) => {
    for (const [what, call] of Object.entries(calls)) {
      test(`${what} → FAILED_PRECONDITION`, async (ctx) => {
        const ns = await ctx.ns();
        await expectCode(call(ctx, ns), FAILED_PRECONDITION, what);
      });
    }
  };
}

/** A keyed write on a backend without `iface`: FAILED_PRECONDITION naming the interface (when the primitive is served). */
function keyedRefused(iface: InterfaceName, basic: InterfaceName, call: (ctx: SuiteContext, ns: string) => Promise<unknown>): Suite {
  return (test) => {
    test(`a call with an idempotency_key → FAILED_PRECONDITION naming ${iface}`, async (ctx) => {
      const ns = await ctx.ns();
      const e = await expectCode(call(ctx, ns), FAILED_PRECONDITION, `keyed call without ${iface}`);
      if (ctx.claims.has(basic)) assert.match(e.message, new RegExp(`does not implement ${iface}`));
    });
  };
}

export const UNCLAIMED: Record<InterfaceName, Suite> = {
  keyvalue_basic: primitiveRefused("keyvalue", (c, ns) => c.client.kv(ns).get("k")),
  keyvalue_ttl: callsRefused({
    "set with ttl": (c, ns) => c.client.kv(ns).set("k", "v", { ttl: 5 }),
    expire: async (c, ns) => {
      await c.client.kv(ns).set("k", "v");
      return c.client.kv(ns).expire("k", 5);
    },
    ttl: (c, ns) => c.client.kv(ns).ttl("k"),
    persist: (c, ns) => c.client.kv(ns).persist("k"),
  }),
  keyvalue_scan: callsRefused({ scanPage: (c, ns) => c.client.kv(ns).scanPage({ prefix: "" }) }),
  keyvalue_batch: callsRefused({
    batchGet: (c, ns) => c.client.kv(ns).batchGet(["a"]),
    batchSet: (c, ns) => c.client.kv(ns).batchSet([{ key: "a", value: "v" }]),
    batchDelete: (c, ns) => c.client.kv(ns).batchDelete(["a"]),
  }),
  keyvalue_cas: callsRefused({
    "set ifAbsent": (c, ns) => c.client.kv(ns).set("k", "v", { ifAbsent: true }),
    "set expectedVersion": (c, ns) => c.client.kv(ns).set("k", "v", { expectedVersion: 0 }),
  }),
  keyvalue_outbox: (test) => {
    callsRefused({
      "set with a message": (c, ns) => c.client.kv(ns).set("k", "v", { message: { topic: "t", payload: "x" } }),
      "delete with a message": async (c, ns) => {
        await c.client.kv(ns).set("k", "v").catch(() => {}); // a namespace not serving keyvalue refuses this too
        return c.client.kv(ns).delete("k", { message: { topic: "t", payload: "x" } });
      },
    })(test, undefined as never);
    test("an outbox namespace with this backend as its store is refused (INVALID_ARGUMENT)", async (ctx) => {
      if (ctx.fixture.pattern) return; // a composed pattern is not a backend
      const name = ctx.uid("acc-refused");
      await expectCode(
        ctx.client.admin.applyNamespace({ name, pattern: "outbox", slots: { store: ctx.fixture.backend(name), messaging: { type: "memstore" } } }),
        INVALID_ARGUMENT,
        "ApplyNamespace outbox with this store",
      );
    });
  },
  keyvalue_idempotent: keyedRefused("keyvalue_idempotent", "keyvalue_basic", (c, ns) =>
    c.client.call("KeyValue", "Set", { namespace: ns, key: "k", value: bytes("v"), idempotencyKey: "i" }),
  ),
  pubsub_idempotent: keyedRefused("pubsub_idempotent", "pubsub_basic", (c, ns) =>
    c.client.call("PubSub", "Publish", { namespace: ns, topic: "a.b", payload: bytes("v"), idempotencyKey: "i" }),
  ),
  queue_idempotent: keyedRefused("queue_idempotent", "queue_basic", (c, ns) =>
    c.client.call("Queue", "Enqueue", { namespace: ns, queue: "q", payload: bytes("v"), idempotencyKey: "i" }),
  ),
  stream_idempotent: keyedRefused("stream_idempotent", "stream_basic", (c, ns) =>
    c.client.call("Stream", "Append", { namespace: ns, stream: "s", payload: bytes("v"), idempotencyKey: "i" }),
  ),
  pubsub_basic: primitiveRefused("pubsub", (c, ns) => c.client.pubsub(ns).publish("a.b", "x")),
  pubsub_wildcards: callsRefused({
    "subscribe a.*": async (c, ns) => {
      const sub = c.client.pubsub(ns).subscribe("a.*");
      try {
        await sub.ready;
      } finally {
        await sub.close().catch(() => {});
      }
    },
  }),
  queue_basic: primitiveRefused("queue", (c, ns) => c.client.queue(ns).enqueue("q", "x")),
  queue_visibility: callsRefused({
    "dequeue with visibilityTimeout": (c, ns) => c.client.queue(ns).dequeue("q", { visibilityTimeout: 5 }),
    extendVisibility: async (c, ns) => {
      const q = c.client.queue(ns);
      await q.enqueue("q", "x");
      const [m] = await q.dequeue("q");
      assert.ok(m, "a message to extend");
      return q.extendVisibility("q", m.receipt, 5);
    },
  }),
  // No call needs queue_dead_letter alone: an unclaimed DLQ is only a missing guarantee.
  queue_dead_letter: (test) =>
    test("refusal", { skip: "no call depends on queue_dead_letter alone (an unclaimed DLQ is a missing guarantee, not a call)" }, async () => {}),
  queue_delayed: callsRefused({
    "enqueue with delaySeconds": (c, ns) => c.client.queue(ns).enqueue("q", "x", { delaySeconds: 5 }),
    "nack with requeueAfter": async (c, ns) => {
      const q = c.client.queue(ns);
      await q.enqueue("q", bytes("x"));
      const [m] = await q.dequeue("q");
      assert.ok(m, "a message to nack");
      return q.nack("q", m.receipt, { requeueAfter: 5 });
    },
  }),
  stream_basic: primitiveRefused("stream", (c, ns) => c.client.stream(ns).append("s", "x")),
  stream_consumer_groups: callsRefused({
    readGroup: (c, ns) => c.client.stream(ns).readGroup("s", "g", "c1"),
    ack: (c, ns) => c.client.stream(ns).ack("s", "g", [1]),
  }),
  stream_replay: callsRefused({
    "read from offset 2": async (c, ns) => {
      await c.client.stream(ns).append("s", "x");
      return c.client.stream(ns).read("s", { from: 2 });
    },
  }),
};
