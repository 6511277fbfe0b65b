/**
 * Cache-Aside semantics against real parts: Redis as the cache and
 * PostgreSQL as the source, each behind a TCP proxy so that the test can
 * count what reaches them and cut them. Counts come from the wire (the
 * proxy) and from prism_pattern_events_total.
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { startServer, type RunningServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { TcpProxy } from "../unit/tcp-proxy.js";
import { deleteRedisPrefix } from "../helpers/redis-cleanup.js";

const REDIS = new URL(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
const PG = new URL(process.env.POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test");
const tag = `${process.pid}-${randomBytes(3).toString("hex")}`;
const prefix = `prism-ca-e2e-${tag}`;

async function call(port: number, method: string, body: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(`http://127.0.0.1:${port}/v1/${method}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: res.status, json: JSON.parse((await res.text()) || "{}") };
}
const b64 = (s: string) => Buffer.from(s).toString("base64");
const text = (b: string | undefined) => Buffer.from(b ?? "", "base64").toString();

async function events(port: number, ns: string): Promise<Record<string, number>> {
  const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of body.matchAll(/^prism_pattern_events_total\{([^}]*)\} (\d+)/gm)) {
    const labels = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (labels.namespace === ns) out[labels.event!] = Number(m[2]);
  }
  return out;
}

/**
 * Statements the source executed so far: PostgreSQL Execute messages on the
 * wire ('E', length 9, unnamed portal, no row limit). Prepared statements
 * repeat without their SQL text, so the SQL cannot be counted; while only
 * Gets run, every execution is a read.
 */
const EXECUTE = "E\0\0\0\t\0\0\0\0\0";
const sourceReads = (p: TcpProxy) => p.sent.split(EXECUTE).length - 1;

describe("cache-aside (redis cache over postgres source, through proxies)", () => {
  const cacheProxy = new TcpProxy(REDIS.hostname, Number(REDIS.port || 6379));
  const sourceProxy = new TcpProxy(PG.hostname, Number(PG.port || 5432));
  let srv: RunningServer;
  let redis: Redis;

  before(async () => {
    const cachePort = await cacheProxy.start();
    const sourcePort = await sourceProxy.start();
    const sourceUrl = new URL(PG);
    sourceUrl.port = String(sourcePort);
    const config = await validateConfig(
      {
        server: { breaker: { failures: 0 } },
        backends: {
          cache: { type: "redis", url: `redis://127.0.0.1:${cachePort}`, key_prefix: prefix },
          main: { type: "postgres", url: sourceUrl.toString(), schema: `prism_ca_${process.pid}` },
        },
        namespaces: [
          { name: "ca", pattern: "cache-aside", slots: { cache: "cache", source: "main" }, options: { ttl_seconds: 60 } },
          { name: "ca-through", pattern: "cache-aside", slots: { cache: "cache", source: "main" }, options: { write: "through" } },
        ],
      },
      "cache-aside-test",
    );
    srv = await startServer({ config, grpcPort: 0, httpPort: 0, log: () => {} });
    redis = new Redis(REDIS.toString());
  });
  after(async () => {
    await srv?.close();
    await deleteRedisPrefix(redis, prefix).catch(() => {});
    redis?.disconnect();
    await cacheProxy.close();
    await sourceProxy.close();
  });

  it("a miss reads the source once and fills the cache; hits do not touch the source", async () => {
    assert.equal((await call(srv.httpPort, "KeyValue/Set", { namespace: "ca", key: "k1", value: b64("v1") })).status, 200);
    const before = sourceReads(sourceProxy);
    const first = await call(srv.httpPort, "KeyValue/Get", { namespace: "ca", key: "k1" });
    assert.equal(text(first.json.value), "v1");
    assert.equal(sourceReads(sourceProxy) - before, 1);
    for (let i = 0; i < 5; i++) assert.equal(text((await call(srv.httpPort, "KeyValue/Get", { namespace: "ca", key: "k1" })).json.value), "v1");
    assert.equal(sourceReads(sourceProxy) - before, 1, "hits are served by the cache");
    // The cached copy carries the source's version.
    assert.equal((await call(srv.httpPort, "KeyValue/Get", { namespace: "ca", key: "k1" })).json.version, first.json.version);
    // The fill holds the namespace's TTL (options.ttl_seconds: 60) in the cache; the source's key has none.
    const pttl = await redis.pttl(`${prefix}:{ca}:kv:k1`);
    assert.ok(pttl > 50_000 && pttl <= 60_000, `the cached copy expires with ttl_seconds 60 (PTTL ${pttl} ms)`);
    const e = await events(srv.httpPort, "ca");
    assert.ok(e.hit! >= 6 && e.miss! >= 1 && e.fill! >= 1, JSON.stringify(e));
  });

  it("concurrent misses on one key cause one source read (coalesced)", async () => {
    await call(srv.httpPort, "KeyValue/Set", { namespace: "ca", key: "hot", value: b64("h") });
    const before = sourceReads(sourceProxy);
    const e0 = await events(srv.httpPort, "ca");
    // The source's answers are held until all 20 Gets have missed: every one of them arrives while the
    // first source read is in flight, whatever the machine's speed.
    sourceProxy.holdReplies();
    let all: Promise<{ status: number; json: any }[]>;
    try {
      all = Promise.all(Array.from({ length: 20 }, () => call(srv.httpPort, "KeyValue/Get", { namespace: "ca", key: "hot" })));
      const deadline = Date.now() + 10_000;
      while (((await events(srv.httpPort, "ca")).miss ?? 0) - (e0.miss ?? 0) < 20) {
        assert.ok(Date.now() < deadline, "20 misses within 10 s");
        await sleep(20);
      }
    } finally {
      sourceProxy.releaseReplies();
    }
    for (const r of await all) assert.equal(text(r.json.value), "h");
    assert.equal(sourceReads(sourceProxy) - before, 1, "one source read for 20 concurrent misses");
    const e1 = await events(srv.httpPort, "ca");
    assert.equal((e1.coalesced ?? 0) - (e0.coalesced ?? 0), 19, "the other 19 shared it");
    assert.equal((e1.fill ?? 0) - (e0.fill ?? 0), 1, "one fill");
  });

  it("Set invalidates (the next Get reads the new value); write-through replaces the cached copy", async () => {
    await call(srv.httpPort, "KeyValue/Set", { namespace: "ca", key: "k2", value: b64("old") });
    assert.equal(text((await call(srv.httpPort, "KeyValue/Get", { namespace: "ca", key: "k2" })).json.value), "old");
    await call(srv.httpPort, "KeyValue/Set", { namespace: "ca", key: "k2", value: b64("new") });
    assert.equal(text((await call(srv.httpPort, "KeyValue/Get", { namespace: "ca", key: "k2" })).json.value), "new");
    await call(srv.httpPort, "KeyValue/Delete", { namespace: "ca", key: "k2" });
    assert.equal((await call(srv.httpPort, "KeyValue/Get", { namespace: "ca", key: "k2" })).json.found, false);

    await call(srv.httpPort, "KeyValue/Set", { namespace: "ca-through", key: "t", value: b64("t1") });
    const before = sourceReads(sourceProxy);
    assert.equal(text((await call(srv.httpPort, "KeyValue/Get", { namespace: "ca-through", key: "t" })).json.value), "t1");
    assert.equal(sourceReads(sourceProxy) - before, 0, "write-through: the first Get is already a hit");
  });

  it("a failed source write leaves the cache without the new value", async () => {
    await call(srv.httpPort, "KeyValue/Set", { namespace: "ca-through", key: "w", value: b64("committed") });
    await sourceProxy.cut();
    const r = await call(srv.httpPort, "KeyValue/Set", { namespace: "ca-through", key: "w", value: b64("refused") });
    assert.equal(r.status, 503, JSON.stringify(r.json));
    // The cache still answers with the committed value (write-through put it there); never "refused".
    assert.equal(text((await call(srv.httpPort, "KeyValue/Get", { namespace: "ca-through", key: "w" })).json.value), "committed");
    await sourceProxy.restore();
  });

  it("a cache that is down degrades to source reads (counted), never to errors, and is not served stale when it returns", async () => {
    await call(srv.httpPort, "KeyValue/Set", { namespace: "ca", key: "d", value: b64("before") });
    assert.equal(text((await call(srv.httpPort, "KeyValue/Get", { namespace: "ca", key: "d" })).json.value), "before"); // cached now
    const errorsBefore = (await events(srv.httpPort, "ca")).cache_error ?? 0;
    await cacheProxy.cut();
    for (let i = 0; i < 3; i++) {
      const g = await call(srv.httpPort, "KeyValue/Get", { namespace: "ca", key: "d" });
      assert.equal(g.status, 200, JSON.stringify(g.json));
      assert.equal(text(g.json.value), "before");
    }
    // A write while the cache is down: the source takes it; the invalidation fails and is remembered.
    assert.equal((await call(srv.httpPort, "KeyValue/Set", { namespace: "ca", key: "d", value: b64("after") })).status, 200);
    assert.equal(text((await call(srv.httpPort, "KeyValue/Get", { namespace: "ca", key: "d" })).json.value), "after");
    assert.ok(((await events(srv.httpPort, "ca")).cache_error ?? 0) > errorsBefore);
    await cacheProxy.restore();
    // The cache still holds "before" for d: Prism must not serve it.
    for (let i = 0; i < 20; i++) {
      const g = await call(srv.httpPort, "KeyValue/Get", { namespace: "ca", key: "d" });
      assert.equal(text(g.json.value), "after");
      await sleep(25);
    }
  });

  it("refusals: TTL on a cache-aside namespace, a cache without keyvalue_ttl, both slots on one instance, unknown options", async () => {
    const ttl = await call(srv.httpPort, "KeyValue/Set", { namespace: "ca", key: "x", value: b64("1"), ttl_seconds: 5 });
    assert.equal(ttl.status, 412);
    const nats = await call(srv.httpPort, "Admin/ApplyNamespace", { namespace: { name: "bad", pattern: "cache-aside", slots: { cache: { type: "nats" }, source: "main" } } });
    assert.equal(nats.status, 400);
    assert.match(nats.json.error.message, /slots\.cache: backend "nats" does not implement keyvalue_ttl, required by pattern cache-aside/);
    const same = await call(srv.httpPort, "Admin/ApplyNamespace", { namespace: { name: "bad", pattern: "cache-aside", slots: { cache: "cache", source: "cache" } } });
    assert.equal(same.status, 400);
    assert.match(same.json.error.message, /slots "cache" and "source" of pattern cache-aside name the same backend \("cache"\)/);
    const opt = await call(srv.httpPort, "Admin/ApplyNamespace", { namespace: { name: "bad", pattern: "cache-aside", slots: { cache: "cache", source: "main" }, options: { ttl: 5 } } });
    assert.equal(opt.status, 400);
    assert.match(opt.json.error.message, /options/);
  });
});
