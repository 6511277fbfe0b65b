/**
 * The acceptance suites, unchanged, on outbox namespaces: KeyValue (with
 * keyvalue_outbox) from the store slot, PubSub and Queue from the messaging
 * slot. Each store that claims keyvalue_outbox (postgres, sqlite) with a few
 * messaging backends; the backends' own runs (sqlite.test.ts, postgres.test.ts)
 * cover store and messaging on one instance.
 */
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after } from "node:test";
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

const STORES: Record<string, Record<string, unknown>> = {
  sqlite: { type: "sqlite", path: sqlitePath },
  postgres: { type: "postgres", url: PG, schema: `prism_acc_outbox_${process.pid}`, pool_max: 5 },
};
const MESSAGING: Record<string, Record<string, unknown>> = {
  memstore: { type: "memstore" },
  redis: { type: "redis", url: REDIS, key_prefix: `prism-acc-outbox-${tag}` },
  nats: { type: "nats", servers: NATS, prefix: `acc-outbox-${process.pid}` },
  rabbitmq: { type: "rabbitmq", url: RABBIT, prefix: `acc-outbox-${tag}` },
};
const COMBOS: [string, string][] = [
  ["sqlite", "memstore"],
  ["postgres", "redis"],
  ["sqlite", "nats"],
  ["postgres", "rabbitmq"],
];

after(async () => {
  const c = new pg.Client({ connectionString: PG });
  await c.connect().then(() => c.query(`DROP SCHEMA IF EXISTS "${String(STORES.postgres!.schema)}" CASCADE`)).catch(() => {});
  await c.end().catch(() => {});
  const r = new Redis(REDIS);
  await deleteRedisPrefix(r, String(MESSAGING.redis!.key_prefix)).catch(() => {});
  r.disconnect();
  await cleanupPrefix(NATS, String(MESSAGING.nats!.prefix)).catch(() => {});
  await deletePrefixed(RABBIT, String(MESSAGING.rabbitmq!.prefix)).catch(() => {});
});

for (const [storeType, messagingType] of COMBOS) {
  const store = STORES[storeType]!;
  const messaging = MESSAGING[messagingType]!;
  runAcceptance(
    {
      name: `outbox(${storeType}→${messagingType})`,
      backend: () => store,
      // Only sqlite and memstore take Prism's clock: the pair can run on the ManualClock.
      clock: storeType === "sqlite" && messagingType === "memstore" ? "manual" : "real",
      limits: { visibility_timeout_seconds: 2, stream_claim_timeout_seconds: 2 },
      pattern: {
        name: "outbox",
        slotTypes: { store: storeType, messaging: messagingType },
        entry: () => ({ pattern: "outbox", slots: { store, messaging } }),
      },
    },
    { transports: ["ws"] },
  );
}
