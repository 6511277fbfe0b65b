/**
 * The namespace model (src/config/resolve.ts, src/config/needs.ts,
 * src/patterns/registry.ts): named backend instances, patterns with slots,
 * interface checks both ways for every primitive and driver, `needs` and the
 * automatic choice with its explanation. Validation only: nothing connects.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { validateConfig, ConfigError } from "../../src/config/load.js";
import { resolveNamespace } from "../../src/config/resolve.js";
import { PATTERNS } from "../../src/patterns/registry.js";
import { backendTypes, loadDriver } from "../../src/backends/registry.js";
import { PRIMITIVES } from "../../src/core/interfaces.js";

/** Which primitive patterns each driver can serve (its required-interface claims), written out so a claim change shows up here. */
const SERVES: Record<string, string[]> = {
  memstore: ["keyvalue", "pubsub", "queue", "stream"],
  sqlite: ["keyvalue", "pubsub", "queue", "stream"],
  redis: ["keyvalue", "pubsub", "queue", "stream"],
  nats: ["keyvalue", "pubsub", "queue", "stream"],
  postgres: ["keyvalue", "pubsub", "queue", "stream"],
  rabbitmq: ["pubsub", "queue"],
  mqtt: ["pubsub"],
  kafka: ["pubsub", "stream"],
  // Payload stores (claim-check's payloads slot): no primitive.
  filesystem: [],
  s3: [],
};

const OPTIONS: Record<string, Record<string, unknown>> = { sqlite: { path: "x.db" }, filesystem: { root: "payloads" }, s3: { bucket: "bkt" } };

async function problemsOf(raw: unknown): Promise<string[]> {
  try {
    await validateConfig(raw, "t.yaml");
    return [];
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.problems;
  }
}

test("every driver is in the table, and every primitive pattern has one slot named after it", () => {
  assert.deepEqual(Object.keys(SERVES).sort(), backendTypes().sort());
  for (const p of PRIMITIVES) {
    const def = PATTERNS.find((x) => x.name === p)!;
    assert.deepEqual(def.slots.map((s) => s.name), [p]);
    assert.deepEqual(def.serves, [p]);
  }
});

for (const type of Object.keys(SERVES)) {
  for (const primitive of PRIMITIVES) {
    const ok = SERVES[type]!.includes(primitive);
    test(`slot check: pattern ${primitive} on a named ${type} instance is ${ok ? "accepted" : "refused, naming slot, instance and interface"}`, async () => {
      const problems = await problemsOf({
        backends: { inst: { type, ...OPTIONS[type] } },
        namespaces: [{ name: "ns", pattern: primitive, slots: { [primitive]: "inst" } }],
      });
      if (ok) assert.deepEqual(problems, []);
      else assert.deepEqual(problems, [`namespaces[0].slots.${primitive}: backend "inst" (${type}) lacks ${primitive}_basic, required by pattern ${primitive}`]);
    });
  }
}

test("the refusal names the namespace's index, the slot, the instance, its type and the interface", async () => {
  const problems = await problemsOf({
    backends: { events: { type: "mqtt" }, main: { type: "postgres" } },
    namespaces: [
      { name: "a", pattern: "keyvalue", slots: { keyvalue: "main" } },
      { name: "b", backend: "main" },
      { name: "c", primitives: ["pubsub"], backend: "events" },
      { name: "d", pattern: "keyvalue", slots: { keyvalue: "events" } },
    ],
  });
  assert.deepEqual(problems, ['namespaces[3].slots.keyvalue: backend "events" (mqtt) lacks keyvalue_basic, required by pattern keyvalue']);
});

test("references: unknown instance, unknown pattern, a slot the pattern lacks, a missing backend", async () => {
  assert.deepEqual(await problemsOf({ backends: { main: { type: "postgres" } }, namespaces: [{ name: "a", backend: "mian" }] }), [
    'namespaces[0].backend: unknown backend instance "mian" (declared: main)',
  ]);
  assert.match((await problemsOf({ namespaces: [{ name: "a", pattern: "graph", backend: { type: "memstore" } }] })).join("\n"), /namespaces\[0\]\.pattern: unknown pattern "graph" \(known: keyvalue, pubsub, queue, stream, cache-aside, multicast-registry, outbox, claim-check\)/);
  assert.deepEqual(await problemsOf({ namespaces: [{ name: "a", pattern: "keyvalue", slots: { keyvalue: { type: "memstore" }, cache: { type: "memstore" } } }] }), [
    'namespaces[0].slots.cache: pattern keyvalue has no slot "cache" (slots: keyvalue)',
  ]);
  assert.deepEqual(await problemsOf({ namespaces: [{ name: "a", pattern: "queue" }] }), ["namespaces[0]: needs a backend (or slots)"]);
  assert.deepEqual(await problemsOf({ namespaces: [{ name: "a", pattern: "queue", primitives: ["keyvalue"], backend: { type: "memstore" } }] }), [
    "namespaces[0].primitives: pattern queue serves queue; leave primitives out",
  ]);
  assert.deepEqual(await problemsOf({ backends: { x: { type: "redsi" } }, namespaces: [] }), [
    'backends.x.type: unknown backend "redsi" (known: memstore, sqlite, redis, nats, postgres, rabbitmq, mqtt, kafka, filesystem, s3)',
  ]);
});

test("slots without a pattern compose primitives on different instances; primitives follow from the slots", async () => {
  const cfg = await validateConfig(
    { backends: { cache: { type: "redis" }, jobs: { type: "postgres" } }, namespaces: [{ name: "app", slots: { keyvalue: "cache", queue: "jobs" } }] },
    "t.yaml",
  );
  assert.deepEqual(cfg.namespaces[0]!.primitives, ["keyvalue", "queue"]);
  const { resolved } = await resolveNamespace(cfg.namespaces[0]!, [], new Map(Object.entries(cfg.backends)));
  assert.deepEqual(resolved!.slots.map((s) => [s.slot, s.instance, s.type]), [["keyvalue", "cache", "redis"], ["queue", "jobs", "postgres"]]);
  // Instance options are validated and defaulted like inline ones.
  assert.equal(cfg.backends.cache!.url, "redis://127.0.0.1:6379");
});

test("the inline shorthand keeps working and still names the backend type in refusals", async () => {
  assert.deepEqual(await problemsOf({ namespaces: [{ name: "n", primitives: ["pubsub", "queue"], backend: { type: "mqtt" } }] }), [
    'namespaces[0].backend: backend "mqtt" does not implement queue_basic, required by pattern queue',
  ]);
});

// ---------------------------------------------------------------- needs

const INSTANCES = {
  mem: { type: "memstore" },
  lite: { type: "sqlite", path: "lite.db" },
  cache: { type: "redis" },
  main: { type: "postgres" },
  events: { type: "nats" },
  bus: { type: "mqtt" },
};

/** needs × pattern → the instance chosen among INSTANCES, or the refusal's start. */
const NEEDS_TABLE: { pattern: string; needs: Record<string, unknown>; choice?: string; refused?: RegExp }[] = [
  // Recommended order for keyvalue: redis, postgres, sqlite, memstore.
  { pattern: "keyvalue", needs: {}, choice: "cache" },
  { pattern: "keyvalue", needs: { persistence: "required" }, choice: "main" },
  { pattern: "keyvalue", needs: { ttl: "required" }, choice: "cache" },
  // nats has no keyvalue_ttl: with persistence + ttl, postgres.
  { pattern: "keyvalue", needs: { persistence: "required", ttl: "required" }, choice: "main" },
  { pattern: "keyvalue", needs: { max_value_bytes: 600 * 1024 * 1024 }, choice: "main" },
  { pattern: "keyvalue", needs: { latency_p99_ms: 2.5 }, choice: "cache" },
  { pattern: "keyvalue", needs: { latency_p99_ms: 0.5 }, refused: /no declared backend instance satisfies slot "keyvalue"/ },
  { pattern: "keyvalue", needs: { throughput_rps: 300_000 }, choice: "mem" },
  { pattern: "keyvalue", needs: { consistency: "strong", persistence: "required" }, choice: "main" },
  { pattern: "queue", needs: { delivery: "at-least-once", persistence: "required" }, choice: "main" },
  { pattern: "queue", needs: { delivery: "at-most-once" }, refused: /no declared backend instance satisfies slot "queue"/ },
  { pattern: "pubsub", needs: { delivery: "at-least-once" }, choice: "bus" },
  { pattern: "pubsub", needs: { persistence: "required" }, refused: /rejected backend "bus" \(mqtt\): persistence: required, but mqtt pubsub is not durable/ },
  { pattern: "stream", needs: { ttl: "required", persistence: "required" }, choice: "events" },
];

for (const row of NEEDS_TABLE) {
  test(`needs ${JSON.stringify(row.needs)} on pattern ${row.pattern} → ${row.choice ?? "refused"}`, async () => {
    const raw = { backends: INSTANCES, namespaces: [{ name: "n", pattern: row.pattern, backend: { auto: true }, needs: row.needs }] };
    if (row.refused) {
      const problems = await problemsOf(raw);
      assert.equal(problems.length, 1, problems.join("\n"));
      assert.match(problems[0]!, /^namespaces\[0\]\.backend: /);
      assert.match(problems[0]!, row.refused);
      return;
    }
    const cfg = await validateConfig(raw, "t.yaml");
    const { resolved, problems } = await resolveNamespace(cfg.namespaces[0]!, [], new Map(Object.entries(cfg.backends)));
    assert.deepEqual(problems, []);
    assert.equal(resolved!.slots[0]!.instance, row.choice);
    assert.equal(resolved!.slots[0]!.auto, true);
    // The explanation names the choice and every instance it rejected, with a reason.
    assert.match(resolved!.explanation[0]!, new RegExp(`^slot ${row.pattern}: chose backend "${row.choice}"`));
    const rejected = resolved!.explanation.filter((l) => l.startsWith("rejected "));
    for (const l of rejected) assert.match(l, /^rejected backend "[a-z]+" \([a-z]+\): .+/);
  });
}

test("explicit backends are checked against needs: persistence on memstore and ttl on nats are refused", async () => {
  assert.deepEqual(await problemsOf({ namespaces: [{ name: "s", pattern: "keyvalue", backend: { type: "memstore" }, needs: { persistence: "required" } }] }), [
    'namespaces[0].needs: backend "memstore" for slot "keyvalue": persistence: required, but memstore keyvalue is not durable',
  ]);
  assert.deepEqual(
    await problemsOf({ backends: { events: { type: "nats" } }, namespaces: [{ name: "s", pattern: "keyvalue", backend: "events", needs: { ttl: "required" } }] }),
    ['namespaces[0].needs: backend "events" (nats) for slot "keyvalue": ttl: required, but nats does not implement keyvalue_ttl'],
  );
  // Undeclared counts as not satisfied: redis does not declare durability (it depends on the server's settings).
  assert.deepEqual(await problemsOf({ namespaces: [{ name: "s", pattern: "keyvalue", backend: { type: "redis" }, needs: { persistence: "required" } }] }), [
    'namespaces[0].needs: backend "redis" for slot "keyvalue": persistence: required, but redis does not declare durability for keyvalue',
  ]);
  assert.deepEqual(await problemsOf({ namespaces: [{ name: "s", pattern: "keyvalue", backend: { type: "postgres" }, needs: { persistence: "required", ttl: "required" } }] }), []);
});

test("an automatic choice is sticky while it still fits, and explains why", async () => {
  const cfg = await validateConfig({ backends: INSTANCES, namespaces: [{ name: "n", pattern: "keyvalue", backend: { auto: true } }] }, "t.yaml");
  const instances = new Map(Object.entries(cfg.backends));
  const first = await resolveNamespace(cfg.namespaces[0]!, [], instances);
  assert.equal(first.resolved!.slots[0]!.instance, "cache");
  const again = await resolveNamespace(cfg.namespaces[0]!, [], instances, { keyvalue: "main" });
  assert.equal(again.resolved!.slots[0]!.instance, "main");
  assert.match(again.resolved!.explanation[0]!, /chosen before and still satisfies every need/);
  // A previous choice that no longer fits (mqtt has no keyvalue) is dropped for the best fit.
  const moved = await resolveNamespace(cfg.namespaces[0]!, [], instances, { keyvalue: "bus" });
  assert.equal(moved.resolved!.slots[0]!.instance, "cache");
});

test("every driver declares properties only for primitives it serves", async () => {
  for (const type of backendTypes()) {
    const d = await loadDriver(type);
    for (const p of Object.keys(d.properties)) assert.ok(SERVES[type]!.includes(p), `${type} declares properties for ${p}, which it does not serve`);
  }
});
