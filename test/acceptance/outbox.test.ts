/**
 * The acceptance suites, unchanged, on outbox namespaces: KeyValue (with
 * keyvalue_outbox) from the store slot, PubSub and Queue from the messaging
 * slot (the keyvalue_outbox suite also delivers with deliver_to: queue when the
 * messaging backend has queues). Every store that claims keyvalue_outbox
 * (sqlite, postgres) with every messaging backend (memstore, redis, nats,
 * rabbitmq, mqtt, postgres, sqlite; kafka when PRISM_TEST_KAFKA_BROKERS names
 * a cluster): this file runs the sqlite store, outbox-postgres.test.ts the
 * postgres one (PRISM_OUTBOX_STORE picks), so each file stays within the
 * runner's per-file limit. store = messaging on one instance is the backends'
 * own runs (sqlite.test.ts, postgres.test.ts).
 */
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe } from "node:test";
import pg from "pg";
import { Redis } from "ioredis";
import { runAcceptance } from "./harness.js";
import { deleteRedisPrefix } from "../helpers/redis-cleanup.js";
import { cleanupPrefix } from "../unit/nats-cleanup.js";
import { deletePrefixed } from "../unit/rabbitmq-cleanup.js";

const tag = `${process.pid}-${randomBytes(3).toString("hex")}`;
const sqlitePath = join(tmpdir(), `prism-acc-outbox-${tag}.db`);
process.on("exit", () => ["", "-wal", "-shm"].forEach((s) => rmSync(sqlitePath + s, { force: true })));
const PG = process.env.POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const REDIS = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const NATS = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const RABBIT = process.env.PRISM_TEST_RABBITMQ_URL ?? "amqp://guest:guest@127.0.0.1:5672";
const MQTT = process.env.MQTT_URL ?? "mqtt://127.0.0.1:1883";
const KAFKA_BROKERS = process.env.PRISM_TEST_KAFKA_BROKERS?.split(",").map((x) => x.trim()).filter(Boolean) ?? [];
const sqliteMessagingPath = join(tmpdir(), `prism-acc-outbox-msg-${tag}.db`);
process.on("exit", () => ["", "-wal", "-shm"].forEach((s) => rmSync(sqliteMessagingPath + s, { force: true })));

const STORES: Record<string, Record<string, unknown>> = {
  sqlite: { type: "sqlite", path: sqlitePath },
  postgres: { type: "postgres", url: PG, schema: `prism_acc_outbox_${process.pid}`, pool_max: 5 },
};
const MESSAGING: Record<string, Record<string, unknown>> = {
  memstore: { type: "memstore" },
  redis: { type: "redis", url: REDIS, key_prefix: `prism-acc-outbox-${tag}` },
  nats: { type: "nats", servers: NATS, prefix: `acc-outbox-${process.pid}` },
  rabbitmq: { type: "rabbitmq", url: RABBIT, prefix: `acc-outbox-${tag}` },
  mqtt: { type: "mqtt", url: MQTT, prefix: `acc-outbox-${process.pid}` },
  postgres: { type: "postgres", url: PG, schema: `prism_acc_outbox_msg_${process.pid}`, pool_max: 5 },
  sqlite: { type: "sqlite", path: sqliteMessagingPath },
  kafka: { type: "kafka", brokers: KAFKA_BROKERS.length ? KAFKA_BROKERS : ["127.0.0.1:9092"], prefix: `prism-acc-outbox-${tag}`, replication_factor: 1 },
};
export function outboxCombos(storeType: "sqlite" | "postgres"): [string, string][] {
  return Object.keys(MESSAGING)
    .filter((m) => m !== storeType)
    .map((m) => [storeType, m]);
}
const COMBOS = outboxCombos(process.env.PRISM_OUTBOX_STORE === "postgres" ? "postgres" : "sqlite");

after(async () => {
  const c = new pg.Client({ connectionString: PG });
  await c.connect().catch(() => {});
  for (const schema of [String(STORES.postgres!.schema), String(MESSAGING.postgres!.schema)]) await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
  await c.end().catch(() => {});
  const r = new Redis(REDIS);
  await deleteRedisPrefix(r, String(MESSAGING.redis!.key_prefix)).catch(() => {});
  r.disconnect();
  await cleanupPrefix(NATS, String(MESSAGING.nats!.prefix)).catch(() => {});
  await deletePrefixed(RABBIT, String(MESSAGING.rabbitmq!.prefix)).catch(() => {});
});

// The pairs run three at a time: each spends most of its ~20 s in the real-clock cases' sleeps (TTL,
// visibility), and every case works in namespaces of its own, so pairs never see each other's data.
describe(`outbox store ${COMBOS[0]?.[0]} with every messaging backend`, { concurrency: 3 }, () => {
for (const [storeType, messagingType] of COMBOS) {
  const store = STORES[storeType]!;
  const messaging = MESSAGING[messagingType]!;
  runAcceptance(
    {
      name: `outbox(${storeType}→${messagingType})`,
      backend: () => store,
      // Only sqlite and memstore take Prism's clock: the pair can run on the ManualClock.
      clock: storeType === "sqlite" && messagingType === "memstore" ? "manual" : "real",
      skipReason: async () => (messagingType === "kafka" && !KAFKA_BROKERS.length ? "PRISM_TEST_KAFKA_BROKERS is not set: no Kafka broker on this machine" : undefined),
      // 6 s, not the 2 s of the single-backend files: three pairs at once in a loaded full run took over
      // 3 s between a queue_basic case's dequeue and its drain, so leases of the namespace's default ran
      // out and the messages were (rightly) delivered again, which those cases count as duplicates.
      limits: { visibility_timeout_seconds: 6, stream_claim_timeout_seconds: 2 },
      pattern: {
        name: "outbox",
        slotTypes: { store: storeType, messaging: messagingType },
        entry: () => ({ pattern: "outbox", slots: { store, messaging } }),
      },
    },
    { transports: ["ws"] },
  );
}
});
