/**
 * The KeyValue acceptance suites, unchanged, on cache-aside namespaces: every
 * combination of a cache (keyvalue_ttl: redis, memstore, postgres, sqlite) and
 * a source (keyvalue_basic: postgres, sqlite, redis, nats, memstore) that
 * satisfies the pattern's slots, 20 in all. The namespace claims what
 * the pattern derives (basic and batch always; scan and CAS from the source).
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

const tag = `${process.pid}-${randomBytes(3).toString("hex")}`;
const sqlitePath = join(tmpdir(), `prism-acc-cache-aside-${tag}.db`);
const sqliteCachePath = join(tmpdir(), `prism-acc-cache-aside-cache-${tag}.db`);
process.on("exit", () => [sqlitePath, sqliteCachePath].forEach((p) => ["", "-wal", "-shm"].forEach((s) => rmSync(p + s, { force: true }))));
const PG = process.env.POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";

const CACHES: Record<string, Record<string, unknown>> = {
  memstore: { type: "memstore" },
  redis: { type: "redis", url: process.env.REDIS_URL ?? "redis://127.0.0.1:6379", key_prefix: `prism-acc-ca-${tag}-cache` },
  postgres: { type: "postgres", url: PG, schema: `prism_acc_ca_cache_${process.pid}` },
  sqlite: { type: "sqlite", path: sqliteCachePath },
};
const SOURCES: Record<string, Record<string, unknown>> = {
  postgres: { type: "postgres", url: PG, schema: `prism_acc_ca_${process.pid}` },
  sqlite: { type: "sqlite", path: sqlitePath },
  redis: { type: "redis", url: process.env.REDIS_URL ?? "redis://127.0.0.1:6379", key_prefix: `prism-acc-ca-${tag}-src` },
  nats: { type: "nats", servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222", prefix: `acc-ca-${process.pid}` },
  // Its own options: an inline block equal to the memstore cache's would be the same instance (refused).
  memstore: { type: "memstore", sweep_interval_ms: 1000 },
};

after(async () => {
  const c = new pg.Client({ connectionString: String(SOURCES.postgres!.url) });
  await c.connect().catch(() => {});
  for (const schema of [String(SOURCES.postgres!.schema), String(CACHES.postgres!.schema)]) await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
  await c.end().catch(() => {});
  const r = new Redis(String(CACHES.redis!.url));
  for (const p of [String(CACHES.redis!.key_prefix), String(SOURCES.redis!.key_prefix)]) await deleteRedisPrefix(r, p).catch(() => {});
  r.disconnect();
});

// memstore and sqlite run on Prism's clock; the others keep time themselves.
const PRISM_CLOCK = new Set(["memstore", "sqlite"]);
for (const [cacheType, cache] of Object.entries(CACHES)) {
  for (const [sourceType, source] of Object.entries(SOURCES)) {
    const realClock = !PRISM_CLOCK.has(cacheType) || !PRISM_CLOCK.has(sourceType);
    runAcceptance(
      {
        name: `cache-aside(${cacheType}→${sourceType})`,
        backend: () => cache,
        clock: realClock ? "real" : "manual",
        pattern: {
          name: "cache-aside",
          slotTypes: { cache: cacheType, source: sourceType },
          entry: () => ({ pattern: "cache-aside", slots: { cache, source }, options: { ttl_seconds: 60 } }),
        },
      },
      // One transport per combination keeps the run short; the transports are covered by the backends' own runs.
      { transports: ["ws"] },
    );
  }
}
