/**
 * Crash durability of queues: SIGKILL `prism serve --workers 1` in the middle
 * of a queue run (producers enqueueing, a consumer dequeueing and acking), on
 * Redis, PostgreSQL and NATS (each driver claims queue_basic), then restart it
 * on the same config and drain the queue.
 *
 * Where the driver claims queue_idempotent (all three), every Enqueue
 * carries an idempotency key (the HTTP `Idempotency-Key` header), and after
 * the restart the producers retry, with its key, every enqueue that was not
 * acknowledged (the calls the kill cut off, whose message may or may not have
 * been stored). Asserted then: every payload is delivered (zero losses), and
 * under exactly one message id (zero duplicates from retries: a retry that
 * enqueued a second copy would show up as a second id for one payload).
 *
 * And that the retries did meet messages stored before the kill (otherwise
 * zero duplicates would prove nothing): each backend is reached through a TCP
 * proxy, and just before the kill the proxy stops passing the backend's
 * answers on (Redis, NATS: all of them; PostgreSQL: each connection from its
 * next COMMIT's answer on). Every enqueue in flight then is stored in the
 * backend but never answered: a cut-off call whose message exists. A retry
 * that answers such a message is a replay, seen as the message id it answers
 * being delivered with an enqueued_at_ms from before the restart (a message
 * the restarted process stored would carry a later one). At least one replay
 * per keyed backend is asserted, and the count printed.
 *
 * Always asserted: every message whose Enqueue was acknowledged (HTTP 200 with
 * a message id) is delivered at least once — by the consumer before the kill
 * or by the drain after the restart. Redeliveries (one message id delivered
 * again: its lease was taken but not acked before the kill, which
 * at-least-once allows) are counted and printed, not failed. Each backend gets
 * its own queue name, key prefix / schema / subject prefix, removed after.
 */
import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import { Agent, request } from "node:http";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import pg from "pg";
import { startPrism, type PrismProcess } from "./serve-process.js";
import { cleanupPrefix } from "../unit/nats-cleanup.js";
import { deleteRedisPrefix } from "../helpers/redis-cleanup.js";
import { loadDriver } from "../../src/backends/registry.js";
import { TcpProxy } from "../unit/tcp-proxy.js";

const run = randomBytes(3).toString("hex");
const dir = mkdtempSync(join(tmpdir(), `prism-crash-${run}-`));
const REDIS = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const PG = process.env.POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const NATS = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const RUN_MS = Number(process.env.PRISM_CRASH_RUN_MS ?? 1500);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/**
 * The drain ends after this many empty 1 s long polls in a row: longer than the
 * longest redelivery delay after the kill (leases of 2 s; NATS ack_wait 2 + 2 s).
 */
const DRAIN_IDLE_POLLS = 7;
/**
 * How long the backend's answers are held before the kill: ample for every enqueue in flight to reach
 * the backend (Prism keeps sending; only the answers stop), short of any client or backend timeout.
 */
const HOLD_MS = 300;
/** A PostgreSQL CommandComplete message for COMMIT: the transaction is committed when the server sends it. */
const PG_COMMIT = Buffer.concat([Buffer.from([0x43, 0, 0, 0, 11]), Buffer.from("COMMIT\0")]);

interface Backend {
  name: string;
  /** The server, as a URL (the proxy in front of it gets its host and port). */
  url: string;
  /** The namespace's backend block, reaching the server at `url`. */
  backend(url: string): Record<string, unknown>;
  /** From which answer on a connection's answers are held before the kill (see the header). */
  holdFrom(chunk: Buffer): boolean;
  cleanup(): Promise<void>;
}

const redisPrefix = `prism-crash-${process.pid}-${run}`;
const pgSchema = `prism_crash_${process.pid}_${run}`;
const natsPrefix = `crash-${process.pid}-${run}`;

const BACKENDS: Backend[] = [
  {
    name: "redis",
    url: REDIS,
    backend: (url) => ({ type: "redis", url, key_prefix: redisPrefix }),
    holdFrom: () => true,
    async cleanup() {
      const r = new Redis(REDIS);
      await deleteRedisPrefix(r, redisPrefix);
      r.disconnect();
    },
  },
  {
    name: "postgres",
    url: PG,
    backend: (url) => ({ type: "postgres", url, schema: pgSchema, pool_max: 4 }),
    holdFrom: (chunk) => chunk.includes(PG_COMMIT),
    async cleanup() {
      const c = new pg.Client({ connectionString: PG });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS "${pgSchema}" CASCADE`);
      await c.end();
    },
  },
  {
    name: "nats",
    url: NATS,
    backend: (url) => ({ type: "nats", servers: url, prefix: natsPrefix }),
    holdFrom: () => true,
    async cleanup() {
      await cleanupPrefix(NATS, natsPrefix);
    },
  },
];

function post(agent: Agent, port: number, path: string, body: object, headers: Record<string, string> = {}): Promise<{ status: number; json: any }> {
  return new Promise((resolve) => {
    const data = Buffer.from(JSON.stringify(body));
    const req = request({ host: "127.0.0.1", port, agent, method: "POST", path, headers: { ...headers, "content-length": data.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        let json: any;
        try {
          json = JSON.parse(Buffer.concat(chunks).toString());
        } catch {}
        resolve({ status: res.statusCode!, json });
      });
      res.on("error", () => resolve({ status: 0, json: undefined }));
    });
    // The server is killed mid-call: a connection error means "not acknowledged".
    req.on("error", () => resolve({ status: 0, json: undefined }));
    req.end(data);
  });
}

/** The backend at `proxyPort` on 127.0.0.1 instead of where b.url says. */
function viaProxy(b: Backend, proxyPort: number): Record<string, unknown> {
  const u = new URL(b.url);
  u.hostname = "127.0.0.1";
  u.port = String(proxyPort);
  return b.backend(u.toString().replace(/\/$/, ""));
}

function configFile(b: Backend, backend: Record<string, unknown>): string {
  const file = join(dir, `${b.name}.yaml`);
  // visibility_timeout_seconds 2: NATS sizes its consumer's ack_wait from it (+2 s), and that is when the
  // server redelivers what a killed process had leased; the drain below outwaits it (DRAIN_IDLE_POLLS).
  writeFileSync(file, JSON.stringify({ namespaces: [{ name: "crash", primitives: ["queue"], backend, limits: { visibility_timeout_seconds: 2 } }] }));
  return file;
}

describe("crash: SIGKILL during a queue run loses no acknowledged enqueue", { timeout: 180_000 }, () => {
  after(async () => {
    for (const b of BACKENDS) await b.cleanup().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  for (const b of BACKENDS) {
    it(`${b.name}`, async (t) => {
      const queue = `jobs-${run}`;
      const server = new URL(b.url);
      const proxy = new TcpProxy(server.hostname, Number(server.port));
      await proxy.start();
      t.after(() => proxy.close());
      const backend = viaProxy(b, proxy.port);
      const cfg = configFile(b, backend);
      const keyed = (await loadDriver(String(backend.type))).interfaces.includes("queue_idempotent");
      const acked = new Set<string>();
      /** Enqueues not acknowledged (cut off by the kill, or refused): retried with their key after the restart. */
      const pending = new Set<string>();
      const delivered = new Map<string, number>();
      /** Per payload, the message ids it was delivered under (one, unless a retry enqueued it twice). */
      const ids = new Map<string, Set<string>>();
      /** Per message id, its enqueued_at_ms as delivered (the clock of the Prism process that stored it). */
      const enqueuedAt = new Map<string, number>();
      const note = (payload: string, id: string, at: unknown) => {
        enqueuedAt.set(id, Number(at));
        delivered.set(payload, (delivered.get(payload) ?? 0) + 1);
        let s = ids.get(payload);
        if (!s) ids.set(payload, (s = new Set()));
        s.add(id);
      };
      const enqueue = (a: Agent, port: number, payload: string) =>
        post(a, port, "/v1/Queue/Enqueue", { namespace: "crash", queue, payload: Buffer.from(payload).toString("base64") }, keyed ? { "idempotency-key": `k-${payload}` } : {});
      let prism: PrismProcess = await startPrism(["--config", cfg, "--workers", "1", "--grpc-port", "0", "--http-port", "0"]);
      let agent = new Agent({ keepAlive: true, maxSockets: 32 });
      let stop = false;
      let seq = 0;
      const port1 = prism.httpPort;
      const producer = async () => {
        while (!stop) {
          const payload = `m-${seq++}`;
          const r = await enqueue(agent, port1, payload);
          if (r.status === 200 && r.json?.messageId) acked.add(payload);
          else {
            pending.add(payload);
            if (r.status === 0) return; // killed
          }
        }
      };
      const consumer = async () => {
        while (!stop) {
          const r = await post(agent, port1, "/v1/Queue/Dequeue", { namespace: "crash", queue, max_messages: 10, visibility_timeout_seconds: 2 });
          if (r.status === 0) return;
          for (const m of r.json?.messages ?? []) {
            note(Buffer.from(m.payload, "base64").toString(), m.messageId, m.enqueuedAtMs);
            await post(agent, port1, "/v1/Queue/Ack", { namespace: "crash", queue, receipt: m.receipt });
          }
        }
      };
      const workers = [...Array.from({ length: 6 }, producer), consumer()];
      await sleep(RUN_MS);
      // The enqueues in flight now reach the backend and are stored; their answers stay in the proxy.
      proxy.holdRepliesFrom(b.holdFrom);
      await sleep(HOLD_MS);
      await prism.stop("SIGKILL");
      stop = true;
      await Promise.all(workers);
      agent.destroy();
      proxy.releaseReplies(); // the held answers go nowhere: their connections died with the process
      assert.ok(acked.size > 0, "some enqueues were acknowledged before the kill");
      const cutOff = pending.size;

      // Restart on the same config; drain. Leases taken before the kill end after 2 s (Redis, PostgreSQL: the
      // lease is in the backend) or when the server's ack_wait runs out (NATS: 4 s), and are redelivered.
      // Every message stored before the kill carries an enqueued_at_ms before this; every one the restarted process stores, after.
      await sleep(5);
      const restartedAt = Date.now();
      prism = await startPrism(["--config", cfg, "--workers", "1", "--grpc-port", "0", "--http-port", "0"]);
      agent = new Agent({ keepAlive: true, maxSockets: 4 });
      let retried = 0;
      /** The message id each retry answered: the one stored before the kill, if the cut-off call had stored it. */
      const retryIds = new Map<string, string>();
      try {
        if (keyed) {
          // The producers' retries: each unacknowledged enqueue again, with its key, until acknowledged.
          for (const payload of pending) {
            const r = await enqueue(agent, prism.httpPort, payload);
            assert.equal(r.status, 200, `retry of ${payload}: ${JSON.stringify(r.json)}`);
            acked.add(payload);
            retryIds.set(payload, r.json.messageId);
            retried++;
          }
        }
        let idle = 0;
        for (let i = 0; i < 2000 && idle < DRAIN_IDLE_POLLS; i++) {
          const r = await post(agent, prism.httpPort, "/v1/Queue/Dequeue", { namespace: "crash", queue, max_messages: 100, wait_seconds: 1 });
          assert.equal(r.status, 200, JSON.stringify(r.json));
          const msgs = r.json.messages ?? [];
          if (msgs.length === 0) {
            idle++;
            continue;
          }
          idle = 0;
          for (const m of msgs) {
            note(Buffer.from(m.payload, "base64").toString(), m.messageId, m.enqueuedAtMs);
            await post(agent, prism.httpPort, "/v1/Queue/Ack", { namespace: "crash", queue, receipt: m.receipt });
          }
        }
      } finally {
        agent.destroy();
        await prism.stop("SIGTERM");
      }
      const lost = [...acked].filter((p) => !delivered.has(p));
      const duplicates = [...delivered.values()].filter((n) => n > 1).length;
      const unacked = [...delivered.keys()].filter((p) => !acked.has(p)).length;
      const twice = [...ids].filter(([, s]) => s.size > 1).map(([p]) => p);
      /** Retries answered with a message stored before the kill (delivered with an earlier enqueued_at_ms): replays. */
      const replays = [...retryIds].filter(([, id]) => (enqueuedAt.get(id) ?? Infinity) < restartedAt).length;
      t.diagnostic(`${b.name}: ${cutOff} enqueues cut off by the kill, ${retried} retried with their key, ${replays} of the retries replayed a message stored before the kill`);
      t.diagnostic(
        `${b.name}: ${acked.size} enqueues acknowledged (${retried} of them by a keyed retry after the restart), ${delivered.size} distinct delivered, ` +
          `${duplicates} redelivered (same message id), ${twice.length} enqueued twice (two message ids), ` +
          `${unacked} delivered whose enqueue answer was lost in the kill, ${lost.length} lost`,
      );
      assert.deepEqual(lost.slice(0, 20), [], `${lost.length} acknowledged messages never delivered`);
      if (keyed) {
        assert.ok(pending.size > 0 || retried === 0, "bookkeeping");
        assert.equal(unacked, 0, "every enqueue was acknowledged in the end (retries included)");
        assert.deepEqual(twice.slice(0, 20), [], `${twice.length} payloads enqueued twice: keyed retries must not duplicate`);
        for (const [p, id] of retryIds) assert.deepEqual([...(ids.get(p) ?? [])], [id], `${p}: delivered under the id its retry answered`);
        // Held answers make every enqueue in flight at the kill a stored, unanswered one: without a replay
        // the retries never met a stored message, and "zero duplicates" above would prove nothing.
        assert.ok(replays > 0, `no retry met a message stored before the kill (${cutOff} cut off, ${retried} retried)`);
      }
    });
  }
});
