/**
 * Outbox against real processes and real parts: `prism serve` with an outbox
 * namespace whose messaging backend (Redis) sits behind a TCP proxy the test
 * cuts, and an observer (an in-process Prism on the same Redis, not behind
 * the proxy, with a namespace of the same name) that receives what the relay
 * delivers: a Redis queue it dequeues, or Redis pub/sub it subscribes to.
 *
 * 1. SIGKILL between commit and publish (sqlite store → Redis queue; postgres
 *    store → Redis pub/sub): with the proxy cut, N keyed messages are
 *    committed (plus CAS-refused writes and deletes of absent keys, which
 *    must send nothing), Prism is SIGKILLed, the proxy restored, Prism
 *    restarted: exactly the N committed messages arrive, per key in commit
 *    order; duplicates are counted (none expected: nothing was published
 *    before the kill). The store's outbox table then has every row sent.
 * 2. SIGKILL mid-flight (messaging up, producers writing): every committed
 *    message (the outbox table is the truth) arrives, none other; duplicates
 *    (published but not yet marked sent at the kill) are counted and printed.
 * 3. Messaging down for 10 s while messages are written: they wait, then go
 *    out in order per key when it returns; the time to drain is printed.
 * 4. Two Prism processes on one PostgreSQL store: one relay at a time (no
 *    duplicates), and when one is SIGKILLed the other delivers.
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import Database from "better-sqlite3";
import pg from "pg";
import { Redis } from "ioredis";
import { connect, type Prism, type Subscription, type PubSubMessage } from "@prism/client";
import { startServer, type RunningServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { startPrism, type PrismProcess } from "./serve-process.js";
import { TcpProxy } from "../unit/tcp-proxy.js";
import { deleteRedisPrefix } from "../helpers/redis-cleanup.js";

const run = `${process.pid}-${randomBytes(3).toString("hex")}`;
const dir = mkdtempSync(join(tmpdir(), `prism-outbox-${run}-`));
const REDIS = new URL(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
const PG = process.env.POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const prefix = `prism-outbox-e2e-${run}`;
const schema = `prism_outbox_e2e_${process.pid}_${randomBytes(2).toString("hex")}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const b64 = (s: string) => Buffer.from(s).toString("base64");
const TOPIC = "events";

async function post(port: number, method: string, body: unknown): Promise<{ status: number; json: any }> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/v1/${method}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    return { status: res.status, json: JSON.parse((await res.text()) || "{}") };
  } catch {
    return { status: 0, json: undefined }; // the process was killed mid-call: not acknowledged
  }
}

async function counters(port: number, ns: string): Promise<Record<string, number>> {
  const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of body.matchAll(/^prism_pattern_events_total\{([^}]*)\} (\d+)/gm)) {
    const labels = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (labels.namespace === ns && labels.pattern === "outbox") out[labels.event!] = Number(m[2]);
  }
  return out;
}

/** A write with a message; resolves to the HTTP status (0: no answer). */
function setWithMessage(port: number, ns: string, key: string, payload: string, extra: Record<string, unknown> = {}) {
  return post(port, "KeyValue/Set", { namespace: ns, key, value: b64(`value of ${payload}`), ...extra, message: { topic: TOPIC, payload: b64(payload), attributes: { key, payload } } });
}
function deleteWithMessage(port: number, ns: string, key: string, payload: string) {
  return post(port, "KeyValue/Delete", { namespace: ns, key, message: { topic: TOPIC, payload: b64(payload), attributes: { key, payload } } });
}

/** What the observer received: payload → count, and per key the payloads in arrival order. */
class Received {
  readonly count = new Map<string, number>();
  readonly byKey = new Map<string, string[]>();
  lastAt = 0;
  badAttributes: string[] = [];
  note(payload: string, attributes: Record<string, string>): void {
    this.count.set(payload, (this.count.get(payload) ?? 0) + 1);
    const key = attributes.key ?? "?";
    if (attributes.payload !== payload || Object.keys(attributes).length !== 2) this.badAttributes.push(JSON.stringify(attributes));
    const list = this.byKey.get(key) ?? [];
    list.push(payload);
    this.byKey.set(key, list);
    this.lastAt = Date.now();
  }
  get distinct(): number {
    return this.count.size;
  }
  get duplicates(): number {
    let n = 0;
    for (const c of this.count.values()) n += c - 1;
    return n;
  }
  /** Per key, first arrivals only (a duplicate is a later repeat). */
  firstArrivals(key: string): string[] {
    return [...new Set(this.byKey.get(key) ?? [])];
  }
}

/** The observer: an in-process Prism on Redis directly, with a namespace of the same name as the outbox one. */
async function observer(ns: string, primitive: "queue" | "pubsub"): Promise<{ srv: RunningServer; client: Prism }> {
  const config = await validateConfig(
    { namespaces: [{ name: ns, primitives: [primitive], backend: { type: "redis", url: REDIS.toString(), key_prefix: prefix } }] },
    "outbox-observer",
  );
  const srv = await startServer({ config, grpcPort: 0, httpPort: 0, log: () => {} });
  return { srv, client: await connect(`ws://127.0.0.1:${srv.httpPort}`) };
}

/** Subscribes and notes every message until closed. */
async function listen(client: Prism, ns: string, got: Received): Promise<Subscription<PubSubMessage>> {
  const sub = client.pubsub(ns).subscribe(TOPIC);
  await sub.ready;
  void (async () => {
    for await (const m of sub as AsyncIterable<PubSubMessage>) note(got, m.payload, m.attributes);
  })().catch(() => {});
  return sub;
}

function note(got: Received, payload: Uint8Array, attributes: Record<string, string>): void {
  got.note(Buffer.from(payload).toString(), { ...attributes });
}

/** Dequeues (and acks) until `want` distinct messages arrived and `idleMs` passed without one, or `maxMs`. */
async function drainQueue(client: Prism, ns: string, got: Received, want: number, idleMs: number, maxMs: number): Promise<void> {
  const q = client.queue(ns);
  const end = Date.now() + maxMs;
  while (Date.now() < end) {
    const msgs = await q.dequeue(TOPIC, { max: 100, wait: 1 });
    for (const m of msgs) {
      note(got, m.payload, m.attributes);
      await q.ack(TOPIC, m.receipt);
    }
    if (!msgs.length && got.distinct >= want && Date.now() - got.lastAt >= idleMs) return;
  }
}

/** Waits (pub/sub) until `want` distinct messages arrived and `idleMs` passed without one, or `maxMs`. */
async function waitFor(got: Received, want: number, idleMs: number, maxMs: number): Promise<void> {
  const end = Date.now() + maxMs;
  while (Date.now() < end) {
    if (got.distinct >= want && Date.now() - got.lastAt >= idleMs) return;
    await sleep(50);
  }
}

interface Store {
  name: string;
  slot: Record<string, unknown>;
  /** The outbox rows of a namespace, in id order (after the process stopped, for sqlite). */
  rows(dataDir: string, ns: string): Promise<{ id: number; key: string; payload: string; sent: boolean }[]>;
}

const SQLITE: Store = {
  name: "sqlite",
  slot: { type: "sqlite", path: "outbox.db" },
  async rows(dataDir, ns) {
    const db = new Database(join(dataDir, "outbox.db"), { readonly: true });
    try {
      return (db.prepare("SELECT id, key, payload, sent_at FROM prism_outbox WHERE ns = ? ORDER BY id").all(ns) as { id: number; key: string; payload: Buffer; sent_at: number | null }[]).map(
        (r) => ({ id: r.id, key: r.key, payload: r.payload.toString(), sent: r.sent_at !== null }),
      );
    } finally {
      db.close();
    }
  },
};

const POSTGRES: Store = {
  name: "postgres",
  slot: { type: "postgres", url: PG, schema, pool_max: 4 },
  async rows(_dataDir, ns) {
    const c = new pg.Client({ connectionString: PG });
    await c.connect();
    try {
      const r = await c.query<{ id: string; key: string; payload: Buffer; sent_at: string | null }>(`SELECT id, key, payload, sent_at FROM "${schema}".outbox WHERE ns = $1 ORDER BY id`, [ns]);
      return r.rows.map((x) => ({ id: Number(x.id), key: x.key, payload: x.payload.toString(), sent: x.sent_at !== null }));
    } finally {
      await c.end();
    }
  },
};

function configFile(name: string, dataDir: string, ns: string, store: Store, proxyPort: number, deliverTo: "queue" | "pubsub", extra: Record<string, unknown> = {}): string {
  const file = join(dir, `${name}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      server: { data_dir: dataDir },
      backends: {
        store: store.slot,
        messaging: { type: "redis", url: `redis://127.0.0.1:${proxyPort}`, key_prefix: prefix },
      },
      namespaces: [{ name: ns, pattern: "outbox", slots: { store: "store", messaging: "messaging" }, options: { deliver_to: deliverTo, keep_sent_seconds: 3600 }, ...extra }],
    }),
  );
  return file;
}

const serve = (cfg: string) => startPrism(["--config", cfg, "--workers", "1", "--grpc-port", "0", "--http-port", "0"]);

describe("outbox end to end (prism serve; Redis messaging behind a proxy)", { timeout: 240_000 }, () => {
  const tcp = new TcpProxy(REDIS.hostname, Number(REDIS.port || 6379));
  let isCut = false;
  const proxy = {
    start: () => tcp.start(),
    close: () => tcp.close(),
    cut: async () => {
      isCut = true;
      await tcp.cut();
    },
    restore: async () => {
      if (!isCut) return;
      isCut = false;
      await tcp.restore();
    },
  };
  let proxyPort = 0;
  const running = new Set<PrismProcess>();
  const track = (p: PrismProcess) => (running.add(p), p);

  before(async () => {
    proxyPort = await proxy.start();
  });
  after(async () => {
    for (const p of running) await p.stop("SIGKILL").catch(() => {});
    await proxy.close();
    const r = new Redis(REDIS.toString());
    await deleteRedisPrefix(r, prefix).catch(() => {});
    r.disconnect();
    const c = new pg.Client({ connectionString: PG });
    await c.connect().then(() => c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)).catch(() => {});
    await c.end().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  for (const [store, deliverTo] of [
    [SQLITE, "queue"],
    [POSTGRES, "pubsub"],
  ] as const) {
    it(`SIGKILL between commit and publish: exactly the committed messages arrive after the restart (${store.name} → redis ${deliverTo})`, async (t) => {
      const ns = `held-${store.name}`;
      const dataDir = mkdtempSync(join(dir, "data-"));
      const cfg = configFile(ns, dataDir, ns, store, proxyPort, deliverTo);
      const obs = await observer(ns, deliverTo);
      const got = new Received();
      const sub = deliverTo === "pubsub" ? await listen(obs.client, ns, got) : undefined;
      try {
        let prism = track(await serve(cfg));
        await proxy.cut(); // messaging unreachable: nothing can be published
        const committed: string[] = [];
        const mustNot: string[] = [];
        const N = 60;
        for (let i = 0; i < N; i++) {
          const key = `k${i % 6}`;
          const payload = `m-${i}`;
          const r = i % 10 === 9 ? await deleteWithMessage(prism.httpPort, ns, key, payload) : await setWithMessage(prism.httpPort, ns, key, payload);
          assert.equal(r.status, 200, JSON.stringify(r.json));
          if (i % 10 === 9) assert.equal(r.json.deleted, true);
          committed.push(payload);
          if (i % 5 === 4) {
            const refused = await setWithMessage(prism.httpPort, ns, key, `refused-${i}`, { expected_version: 999 });
            assert.equal(refused.status, 412, `CAS refusal: ${JSON.stringify(refused.json)}`);
            mustNot.push(`refused-${i}`);
            const absent = await deleteWithMessage(prism.httpPort, ns, `absent-${i}`, `absent-${i}`);
            assert.equal(absent.json.deleted ?? false, false);
            mustNot.push(`absent-${i}`);
          }
        }
        await sleep(1500);
        const before = await counters(prism.httpPort, ns);
        assert.equal(before.pending, N, `all ${N} wait in the outbox: ${JSON.stringify(before)}`);
        assert.equal(before.published ?? 0, 0);
        assert.ok((before.publish_errors ?? 0) > 0, `the relay tried: ${JSON.stringify(before)}`);

        await prism.stop("SIGKILL");
        running.delete(prism);
        await proxy.restore();
        const t0 = Date.now();
        prism = track(await serve(cfg));
        const listening = Date.now();
        if (deliverTo === "queue") await drainQueue(obs.client, ns, got, N, 2000, 30_000);
        else await waitFor(got, N, 2000, 30_000);
        const drainedIn = got.lastAt - listening;
        const after = await counters(prism.httpPort, ns);
        await prism.stop("SIGTERM");
        running.delete(prism);

        const lost = committed.filter((p) => !got.count.has(p));
        const invented = [...got.count.keys()].filter((p) => !committed.includes(p));
        t.diagnostic(
          `${store.name} → redis ${deliverTo}: ${N} committed while messaging was cut, ${got.distinct} distinct delivered after the restart, ` +
            `${got.duplicates} duplicates, ${lost.length} lost, ${invented.length} invented; restart took ${listening - t0} ms, ` +
            `all delivered ${drainedIn} ms after it listened; counters after: ${JSON.stringify(after)}`,
        );
        assert.deepEqual(lost, [], "none lost");
        assert.deepEqual(invented, [], "none invented (no message for refused writes or deletes of absent keys)");
        for (const p of mustNot) assert.ok(!got.count.has(p), p);
        assert.deepEqual(got.badAttributes, [], "exactly the caller's attributes");
        for (let k = 0; k < 6; k++) {
          const key = `k${k}`;
          assert.deepEqual(got.firstArrivals(key), committed.filter((_, i) => i % 6 === k), `key ${key} in commit order`);
        }
        assert.equal(after.pending, 0);
        const rows = await store.rows(dataDir, ns);
        assert.deepEqual(rows.map((r) => r.payload), committed, "the outbox table holds exactly the committed messages, in commit order");
        assert.ok(rows.every((r) => r.sent), "every row is marked sent");
      } finally {
        await proxy.restore(); // a failed case leaves messaging reachable for the next
        await sub?.close().catch(() => {});
        await obs.client.close().catch(() => {});
        await obs.srv.close();
      }
    });
  }

  it("SIGKILL mid-flight (messaging up, producers writing): every committed message arrives, none other; duplicates counted", async (t) => {
    const ns = "flight";
    const dataDir = mkdtempSync(join(dir, "data-"));
    const cfg = configFile(ns, dataDir, ns, POSTGRES, proxyPort, "pubsub");
    const obs = await observer(ns, "pubsub");
    const got = new Received();
    const sub = await listen(obs.client, ns, got);
    try {
      let prism = track(await serve(cfg));
      const port = prism.httpPort;
      let seq = 0;
      let stop = false;
      const acked = new Set<string>();
      const producer = async (p: number) => {
        while (!stop) {
          const payload = `f-${p}-${seq++}`;
          const r = await setWithMessage(port, ns, `key-${p}`, payload);
          if (r.status === 200) acked.add(payload);
          else if (r.status === 0) return;
        }
      };
      const producers = Array.from({ length: 4 }, (_, p) => producer(p));
      await sleep(800 + Math.floor(Math.random() * 700));
      await prism.stop("SIGKILL");
      running.delete(prism);
      stop = true;
      await Promise.all(producers);
      const beforeRestart = got.distinct;
      prism = track(await serve(cfg));
      const rowsNow = await POSTGRES.rows(dataDir, ns);
      await waitFor(got, rowsNow.length, 2000, 30_000);
      await prism.stop("SIGTERM");
      running.delete(prism);

      const rows = await POSTGRES.rows(dataDir, ns);
      const committed = rows.map((r) => r.payload);
      const lost = committed.filter((p) => !got.count.has(p));
      const invented = [...got.count.keys()].filter((p) => !committed.includes(p));
      const unackedCommitted = committed.filter((p) => !acked.has(p)).length;
      t.diagnostic(
        `postgres → redis pubsub, killed mid-flight: ${acked.size} writes acknowledged, ${committed.length} committed (${unackedCommitted} whose answer was lost in the kill), ` +
          `${beforeRestart} delivered before the kill, ${got.distinct} distinct in all, ${got.duplicates} duplicates (published but not yet marked sent at the kill), ${lost.length} lost, ${invented.length} invented`,
      );
      for (const p of acked) assert.ok(committed.includes(p), `acknowledged ${p} is committed`);
      assert.deepEqual(lost, [], "every committed message arrives");
      assert.deepEqual(invented, [], "no message that was not committed");
      assert.ok(rows.every((r) => r.sent), "every row is marked sent");
      for (let p = 0; p < 4; p++) {
        const key = `key-${p}`;
        assert.deepEqual(got.firstArrivals(key), rows.filter((r) => r.key === key).map((r) => r.payload), `key ${key} in commit order`);
      }
    } finally {
      await proxy.restore();
      await sub.close().catch(() => {});
      await obs.client.close().catch(() => {});
      await obs.srv.close();
    }
  });

  it("messaging down for 10 s: messages wait and go out in order per key when it returns", async (t) => {
    const ns = "outage";
    const dataDir = mkdtempSync(join(dir, "data-"));
    // The relay's failures open the messaging instance's breaker; it probes again 1 s after opening (default 30 s).
    const cfg = configFile(ns, dataDir, ns, POSTGRES, proxyPort, "pubsub", { breaker: { failures: 5, probe_after_ms: 1000 } });
    const obs = await observer(ns, "pubsub");
    const got = new Received();
    const sub = await listen(obs.client, ns, got);
    try {
      const prism = track(await serve(cfg));
      assert.equal((await setWithMessage(prism.httpPort, ns, "warm", "warm-up")).status, 200);
      await waitFor(got, 1, 0, 5000);
      assert.equal(got.distinct, 1, "delivered while messaging is up");
      await proxy.cut();
      const cutAt = Date.now();
      const committed: string[] = [];
      let i = 0;
      while (Date.now() - cutAt < 10_000) {
        const payload = `o-${i}`;
        const r = await setWithMessage(prism.httpPort, ns, `k${i % 5}`, payload);
        assert.equal(r.status, 200, JSON.stringify(r.json));
        committed.push(payload);
        i++;
        await sleep(50);
      }
      const during = await counters(prism.httpPort, ns);
      assert.equal(got.distinct, 1, "nothing went out while messaging was down");
      await proxy.restore();
      const restoredAt = Date.now();
      await waitFor(got, committed.length + 1, 1500, 30_000);
      const drainMs = got.lastAt - restoredAt;
      const after = await counters(prism.httpPort, ns);
      await prism.stop("SIGTERM");
      running.delete(prism);
      t.diagnostic(
        `10 s outage: ${committed.length} messages committed meanwhile (pending ${during.pending}, ${during.publish_errors} publish errors), ` +
          `all delivered ${drainMs} ms after messaging returned, ${got.duplicates} duplicates; counters after: ${JSON.stringify(after)}`,
      );
      const lost = committed.filter((p) => !got.count.has(p));
      assert.deepEqual(lost, [], "none lost");
      assert.equal(got.duplicates, 0);
      for (let k = 0; k < 5; k++) assert.deepEqual(got.firstArrivals(`k${k}`), committed.filter((_, j) => j % 5 === k), `key k${k} in commit order`);
      assert.equal(after.pending, 0);
      assert.equal(after.published, committed.length + 1);
    } finally {
      await proxy.restore();
      await sub.close().catch(() => {});
      await obs.client.close().catch(() => {});
      await obs.srv.close();
    }
  });

  it("two Prism processes on one PostgreSQL store: one relay at a time, and the survivor delivers after a SIGKILL", async (t) => {
    const ns = "fleet";
    const cfgA = configFile(`${ns}-a`, mkdtempSync(join(dir, "data-")), ns, POSTGRES, proxyPort, "pubsub");
    const cfgB = configFile(`${ns}-b`, mkdtempSync(join(dir, "data-")), ns, POSTGRES, proxyPort, "pubsub");
    const obs = await observer(ns, "pubsub");
    const got = new Received();
    const sub = await listen(obs.client, ns, got);
    try {
      const a = track(await serve(cfgA));
      const b = track(await serve(cfgB));
      const committed: string[] = [];
      for (let i = 0; i < 40; i++) {
        const payload = `fl-${i}`;
        const r = await setWithMessage(i % 2 ? b.httpPort : a.httpPort, ns, `k${i % 4}`, payload);
        assert.equal(r.status, 200);
        committed.push(payload);
      }
      await waitFor(got, committed.length, 1500, 20_000);
      const [ca, cb] = [await counters(a.httpPort, ns), await counters(b.httpPort, ns)];
      assert.equal(got.duplicates, 0, "one relay at a time: no duplicates");
      assert.equal((ca.published ?? 0) + (cb.published ?? 0), committed.length, `published by A ${ca.published}, by B ${cb.published}`);
      // Kill the one that published (it holds the relay lock); the other takes over at its next poll.
      const holder = (ca.published ?? 0) > 0 ? a : b;
      const other = holder === a ? b : a;
      await holder.stop("SIGKILL");
      running.delete(holder);
      const killedAt = Date.now();
      for (let i = 40; i < 60; i++) {
        const payload = `fl-${i}`;
        assert.equal((await setWithMessage(other.httpPort, ns, `k${i % 4}`, payload)).status, 200);
        committed.push(payload);
      }
      await waitFor(got, committed.length, 1500, 20_000);
      const takeoverMs = got.lastAt - killedAt;
      await other.stop("SIGTERM");
      running.delete(other);
      t.diagnostic(`two processes: first 40 published by A ${ca.published ?? 0} / B ${cb.published ?? 0}, ${got.duplicates} duplicates; after SIGKILL of the holder the other delivered the next 20 (last ${takeoverMs} ms after the kill)`);
      assert.deepEqual(committed.filter((p) => !got.count.has(p)), [], "none lost");
      for (let k = 0; k < 4; k++) assert.deepEqual(got.firstArrivals(`k${k}`), committed.filter((_, j) => j % 4 === k), `key k${k} in commit order`);
    } finally {
      await proxy.restore();
      await sub.close().catch(() => {});
      await obs.client.close().catch(() => {});
      await obs.srv.close();
    }
  });
});
