/**
 * keyvalue_outbox: a Set or Delete carrying a message commits both in one
 * transaction, and the outbox pattern's relay delivers the committed message,
 * exactly as the caller gave it, in commit order per key; a write refused by
 * compare-and-set sends nothing.
 *
 * On a backend fixture that claims the interface (postgres, sqlite) the cases
 * build outbox namespaces with this backend in both slots (store and
 * messaging: different families, so they may share an instance); on an
 * outbox pattern fixture they use the fixture's own slots.
 */
import assert from "node:assert/strict";
import type { Suite, SuiteContext } from "../harness.js";
import type { PubSubMessage, SubscriptionClient } from "../sdk.js";
import { assertBytes, collect, expectCode, subscribed, text, within } from "../util.js";

const FAILED_PRECONDITION = 9;
const INVALID_ARGUMENT = 3;

/** A fresh outbox namespace (options over the fixture's). */
export async function outboxNs(ctx: SuiteContext, options: Record<string, unknown> = {}): Promise<string> {
  const name = ctx.uid("acc-outbox");
  const p = ctx.fixture.pattern;
  const entry: Record<string, unknown> =
    p?.name === "outbox" ? p.entry(name) : { pattern: "outbox", slots: { store: ctx.fixture.backend(name), messaging: ctx.fixture.backend(name) } };
  await ctx.client.admin.applyNamespace({ name, ...entry, options: { ...((entry.options as object) ?? {}), ...options }, limits: ctx.limits });
  return name;
}

async function withSub<T>(ctx: SuiteContext, ns: string, topic: string, fn: (sub: SubscriptionClient) => Promise<T>): Promise<T> {
  const sub = ctx.client.pubsub(ns).subscribe(topic);
  try {
    await subscribed(sub, `subscribe ${topic}`);
    return await fn(sub);
  } finally {
    await sub.close().catch(() => {});
  }
}

/** Nothing more arrives within ms. */
async function noMore(sub: SubscriptionClient, ms: number, what: string): Promise<void> {
  const it = (sub as AsyncIterable<PubSubMessage>)[Symbol.asyncIterator]();
  const r = await within(it.next(), ms, what).then(
    (x) => x,
    () => undefined,
  );
  assert.equal(r, undefined, `${what}: an unexpected message arrived: ${r && !r.done ? text(r.value.payload) : "(end)"}`);
}

/** Per key, the payloads in arrival order. */
function perKey(msgs: PubSubMessage[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const m of msgs) (out[m.attributes.key!] ??= []).push(text(m.payload)!);
  return out;
}

export const keyvalue_outbox: Suite = (test) => {
  test("Set with a message: the subscriber gets exactly the caller's payload and attributes, per key in commit order", async (ctx) => {
    const ns = await outboxNs(ctx);
    const kv = ctx.client.kv(ns);
    await withSub(ctx, ns, "orders.events", async (sub) => {
      const sent: Record<string, string[]> = {};
      for (let i = 0; i < 12; i++) {
        const key = `order-${i % 3}`;
        const payload = `event-${i}`;
        await kv.set(key, `value-${i}`, { message: { topic: "orders.events", payload, attributes: { key, seq: String(i), "x-ключ": "значение" } } });
        (sent[key] ??= []).push(payload);
      }
      const bin = new Uint8Array([0, 255, 0, 1]);
      await kv.set("order-bin", "v", { message: { topic: "orders.events", payload: bin, attributes: { key: "order-bin" } } });
      const got = await collect(sub, 13, "outbox subscriber");
      const binMsg = got.find((m) => m.attributes.key === "order-bin")!;
      assertBytes(binMsg.payload, bin, "binary payload, as given (not the stored value)");
      assert.deepEqual({ ...binMsg.attributes }, { key: "order-bin" }, "exactly the caller's attributes");
      const rest = got.filter((m) => m !== binMsg);
      assert.deepEqual(perKey(rest), sent, "per key, in commit order");
      for (const m of rest) {
        assert.equal(m.topic, "orders.events");
        assert.deepEqual(Object.keys(m.attributes).sort(), ["key", "seq", "x-ключ"]);
        assert.equal(m.attributes["x-ключ"], "значение");
        assert.equal(text(m.payload), `event-${m.attributes.seq}`);
      }
      assert.equal(text(await kv.get("order-2")), "value-11", "the values were committed too");
      await noMore(sub, 300, "after the 13 messages");
    });
  });

  test("concurrent writers: per key, messages arrive in version (commit) order", async (ctx) => {
    const ns = await outboxNs(ctx);
    const kv = ctx.client.kv(ns);
    await withSub(ctx, ns, "bursts", async (sub) => {
      const writes = await Promise.all(
        Array.from({ length: 40 }, async (_, i) => {
          const key = `k${i % 4}`;
          const payload = `w${i}`;
          const { version } = await kv.set(key, payload, { message: { topic: "bursts", payload, attributes: { key } } });
          return { key, payload, version };
        }),
      );
      const got = await collect(sub, writes.length, "burst subscriber");
      const expected: Record<string, string[]> = {};
      for (const w of [...writes].sort((a, b) => a.version - b.version)) (expected[w.key] ??= []).push(w.payload);
      assert.deepEqual(perKey(got), expected, "each key's messages in the order of the versions its writes got");
    });
  });

  test("Delete with a message sends it once the key is deleted; deleting an absent key sends nothing", async (ctx) => {
    const ns = await outboxNs(ctx);
    const kv = ctx.client.kv(ns);
    await withSub(ctx, ns, "deletes", async (sub) => {
      await kv.set("gone", "x");
      assert.equal(await kv.delete("gone", { message: { topic: "deletes", payload: "deleted gone", attributes: { key: "gone" } } }), true);
      assert.equal(await kv.get("gone"), null);
      assert.equal(await kv.delete("gone", { message: { topic: "deletes", payload: "deleted again", attributes: { key: "gone" } } }), false);
      assert.equal(await kv.delete("never", { message: { topic: "deletes", payload: "never existed", attributes: { key: "never" } } }), false);
      await kv.set("gone", "y", { message: { topic: "deletes", payload: "set after", attributes: { key: "gone" } } });
      const got = await collect(sub, 2, "delete subscriber");
      assert.deepEqual(got.map((m) => text(m.payload)), ["deleted gone", "set after"]);
      await noMore(sub, 300, "after the delete and the set");
    });
  });

  test("a write refused by compare-and-set commits neither the value nor the message", async (ctx) => {
    const ns = await outboxNs(ctx);
    const kv = ctx.client.kv(ns);
    await withSub(ctx, ns, "cas", async (sub) => {
      const m = (payload: string) => ({ message: { topic: "cas", payload, attributes: { key: "k" } } });
      const v1 = (await kv.set("k", "one", m("committed one"))).version;
      await expectCode(kv.set("k", "two", { ifAbsent: true, ...m("refused ifAbsent") }), FAILED_PRECONDITION, "ifAbsent on an existing key");
      await expectCode(kv.set("k", "three", { expectedVersion: v1 + 5, ...m("refused version") }), FAILED_PRECONDITION, "wrong expectedVersion");
      await kv.set("k", "four", { expectedVersion: v1, ...m("committed four") });
      const got = await collect(sub, 2, "cas subscriber");
      assert.deepEqual(got.map((x) => text(x.payload)), ["committed one", "committed four"]);
      assert.equal(text(await kv.get("k")), "four");
      await noMore(sub, 300, "after the refused writes");
    });
  });

  test("deliver_to: queue: the message is enqueued on the queue its topic names", async (ctx) => {
    if (!ctx.claims.has("queue_basic") && ctx.fixture.pattern) return; // the fixture's messaging backend has no queue
    const ns = await outboxNs(ctx, { deliver_to: "queue" });
    const kv = ctx.client.kv(ns);
    const q = ctx.client.queue(ns);
    for (let i = 0; i < 5; i++) await kv.set("job", `state-${i}`, { message: { topic: "jobs", payload: `job-${i}`, attributes: { n: String(i) } } });
    const got: string[] = [];
    const deadline = Date.now() + 10_000;
    while (got.length < 5 && Date.now() < deadline) {
      for (const msg of await q.dequeue("jobs", { max: 10, wait: 1 })) {
        assert.deepEqual({ ...msg.attributes }, { n: text(msg.payload)!.slice(4) }, "exactly the caller's attributes");
        got.push(text(msg.payload)!);
        await q.ack("jobs", msg.receipt);
      }
    }
    assert.deepEqual(got, ["job-0", "job-1", "job-2", "job-3", "job-4"], "one key: in commit order");
    // A queue destination takes queue names, not topics with wildcards.
    await expectCode(kv.set("job", "x", { message: { topic: "bad name", payload: "x" } }), INVALID_ARGUMENT, "a queue name with a space");
  });

  test("a topic the messaging side cannot take is refused before anything is committed", async (ctx) => {
    const ns = await outboxNs(ctx);
    const kv = ctx.client.kv(ns);
    await expectCode(kv.set("k", "v", { message: { topic: "a.*", payload: "x" } }), INVALID_ARGUMENT, "a wildcard topic");
    await expectCode(kv.set("k", "v", { message: { topic: "", payload: "x" } }), INVALID_ARGUMENT, "an empty topic");
    assert.equal(await kv.get("k"), null, "the refused write changed nothing");
  });

  test("options.id_attribute adds the outbox id (increasing) next to the caller's attributes", async (ctx) => {
    const ns = await outboxNs(ctx, { id_attribute: "outbox-id" });
    const kv = ctx.client.kv(ns);
    await withSub(ctx, ns, "ids", async (sub) => {
      await kv.set("k", "1", { message: { topic: "ids", payload: "a", attributes: { mine: "x" } } });
      await kv.set("k", "2", { message: { topic: "ids", payload: "b" } });
      const [a, b] = await collect(sub, 2, "id subscriber");
      assert.equal(a!.attributes.mine, "x");
      assert.ok(Number(a!.attributes["outbox-id"]) > 0 && Number(b!.attributes["outbox-id"]) > Number(a!.attributes["outbox-id"]), JSON.stringify([a!.attributes, b!.attributes]));
    });
  });

  test("a plain keyvalue namespace on this backend refuses a Set with a message (nothing would send it)", async (ctx) => {
    if (ctx.fixture.pattern) return; // the fixture's namespaces are outbox namespaces
    const name = ctx.uid("acc-plain");
    await ctx.client.admin.applyNamespace({ name, pattern: "keyvalue", backend: ctx.fixture.backend(name), limits: ctx.limits });
    const kv = ctx.client.kv(name);
    await expectCode(kv.set("k", "v", { message: { topic: "t", payload: "x" } }), FAILED_PRECONDITION, "Set with a message");
    await expectCode(kv.delete("k", { message: { topic: "t", payload: "x" } }), FAILED_PRECONDITION, "Delete with a message");
    assert.equal(await kv.get("k"), null);
    const info = await ctx.client.admin.getNamespace(name);
    assert.ok(!info.interfaces.includes("keyvalue_outbox"), `a plain namespace does not claim keyvalue_outbox: ${info.interfaces.join(", ")}`);
  });
};
