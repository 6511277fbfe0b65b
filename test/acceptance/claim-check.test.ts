/**
 * Claim Check on every combination of its slots: payloads on filesystem and
 * on s3 (s3rver, started here), each with the fronted primitive on a real
 * backend (queue: memstore, redis; keyvalue: redis, postgres; stream: redis;
 * pubsub: memstore), and on filesystem every other messages backend that
 * serves the fronted primitive (queue: sqlite, postgres, nats, rabbitmq;
 * keyvalue: memstore, sqlite, nats; stream: memstore, sqlite, postgres, nats;
 * pubsub: redis, nats, mqtt, rabbitmq, postgres): 26 in all. Transparent
 * claims above the threshold through the SDK, streamed uploads and
 * downloads over HTTP and gRPC, digests, ranges, the "too large to inline"
 * answer, orphans deleted (failed claim writes, overwritten, deleted and
 * expired keys, acked messages) and the sweeper leaving none.
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { Redis } from "ioredis";
import { startServer, type RunningServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { loadDriver } from "../../src/backends/registry.js";
import type { BackendInstance, PayloadStore } from "../../src/backends/driver.js";
import { systemClock } from "../../src/core/clock.js";
import { claimCheck, connect, PrismError, type Prism } from "@prism/client";
import { startS3rver, type S3rverHandle } from "../helpers/s3rver.js";
import { claimCheckClient, generated, grpcGet, grpcPut, httpGet, httpPut } from "../helpers/payload-stream.js";
import { deleteRedisPrefix } from "../helpers/redis-cleanup.js";
import { cleanupPrefix } from "../unit/nats-cleanup.js";
import { deletePrefixed } from "../unit/rabbitmq-cleanup.js";
import { sleep } from "./util.js";
import { WebSocket } from "ws";
import { request } from "node:http";
import { prism } from "../../src/gen/prism.js";

const tag = `${process.pid}-${randomBytes(3).toString("hex")}`;
const REDIS = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const PG = process.env.POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const NATS = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const RABBIT = process.env.RABBITMQ_URL ?? "amqp://guest:guest@127.0.0.1:5672";
const dataDir = mkdtempSync(join(tmpdir(), "prism-acc-cc-"));
let s3: S3rverHandle;

const MESSAGES: Record<string, Record<string, unknown>> = {
  memstore: { type: "memstore" },
  redis: { type: "redis", url: REDIS, key_prefix: `prism-acc-cc-${tag}` },
  postgres: { type: "postgres", url: PG, schema: `prism_acc_cc_${process.pid}` },
  sqlite: { type: "sqlite", path: "cc-messages.db" },
  nats: { type: "nats", servers: NATS, prefix: `acc-cc-${process.pid}` },
  rabbitmq: { type: "rabbitmq", url: RABBIT, prefix: `acc-cc-${tag}` },
  mqtt: { type: "mqtt", url: process.env.MQTT_URL ?? "mqtt://127.0.0.1:1883", prefix: `acc-cc-${process.pid}` },
};
/** Every other messages backend that serves each fronted primitive (on the filesystem payload store): each slot varied. */
const MORE: Record<"queue" | "keyvalue" | "stream" | "pubsub", string[]> = {
  queue: ["sqlite", "postgres", "nats", "rabbitmq"],
  keyvalue: ["memstore", "sqlite", "nats"],
  stream: ["memstore", "sqlite", "postgres", "nats"],
  pubsub: ["redis", "nats", "mqtt", "rabbitmq", "postgres"],
};
const PAYLOADS: Record<string, () => Record<string, unknown>> = {
  filesystem: () => ({ type: "filesystem", root: "payloads" }),
  s3: () => s3.options(`cc-${tag}/`),
};
const COMBOS: { payloads: string; fronts: "queue" | "keyvalue" | "stream" | "pubsub"; messages: string }[] = [];
for (const payloads of Object.keys(PAYLOADS)) {
  COMBOS.push({ payloads, fronts: "queue", messages: "memstore" }, { payloads, fronts: "keyvalue", messages: "redis" }, { payloads, fronts: "stream", messages: "redis" }, { payloads, fronts: "pubsub", messages: "memstore" });
}
COMBOS.push({ payloads: "filesystem", fronts: "queue", messages: "redis" }, { payloads: "s3", fronts: "keyvalue", messages: "postgres" });
for (const [fronts, backends] of Object.entries(MORE) as [keyof typeof MORE, string[]][]) for (const messages of backends) COMBOS.push({ payloads: "filesystem", fronts, messages });

let srv: RunningServer;
let client: Prism;
const counters: BackendInstance[] = [];

before(async () => {
  s3 = await startS3rver();
  const config = await validateConfig({ server: { data_dir: dataDir, workers: 1 }, namespaces: [] }, "acceptance");
  srv = await startServer({ config, grpcPort: 0, httpPort: 0, log: () => {} });
  client = await connect(`ws://127.0.0.1:${srv.httpPort}`);
});

after(async () => {
  await client?.close();
  await srv?.close();
  for (const c of counters) await c.close();
  await s3?.close();
  rmSync(dataDir, { recursive: true, force: true });
  const r = new Redis(REDIS);
  await deleteRedisPrefix(r, String(MESSAGES.redis!.key_prefix)).catch(() => {});
  r.disconnect();
  const c = new pg.Client({ connectionString: PG });
  await c.connect().then(() => c.query(`DROP SCHEMA IF EXISTS "${String(MESSAGES.postgres!.schema)}" CASCADE`)).catch(() => {});
  await c.end().catch(() => {});
  await cleanupPrefix(NATS, String(MESSAGES.nats!.prefix)).catch(() => {});
  await deletePrefixed(RABBIT, String(MESSAGES.rabbitmq!.prefix)).catch(() => {});
});

/** What the test sees of a namespace's payload store: the driver itself, on the same directory or bucket. */
async function payloadView(kind: string, ns: string): Promise<PayloadStore> {
  const d = await loadDriver(kind);
  const opts = kind === "filesystem" ? { root: join(dataDir, "payloads") } : s3.options(`cc-${tag}/`);
  const inst = d.create(opts, { clock: systemClock, log: () => {} });
  counters.push(inst);
  return inst.namespace(ns, {} as never).payload!;
}

async function ids(p: PayloadStore): Promise<string[]> {
  const out: string[] = [];
  let cursor = "";
  do {
    const page = await p.list(cursor, 500);
    out.push(...page.items.map((i) => i.id));
    cursor = page.nextCursor;
  } while (cursor !== "");
  return out;
}

async function count(p: PayloadStore): Promise<number> {
  return (await ids(p)).length;
}

async function eventually(what: string, f: () => Promise<boolean>, ms = 8000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) assert.fail(`${what}: not within ${ms} ms`);
    await sleep(50);
  }
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

for (const combo of COMBOS) {
  describe(`claim-check (payloads ${combo.payloads}, fronts ${combo.fronts} on ${combo.messages})`, () => {
    let n = 0;
    const created: string[] = [];
    // Each namespace's sweeper runs every 100 ms: removed with the combination, 26 combinations' worth do not pile up.
    after(async () => {
      for (const name of created) await client.admin.deleteNamespace(name).catch(() => {});
    });
    const ns = async (options: Record<string, unknown> = {}) => {
      const name = `cc-${combo.payloads}-${combo.fronts}-${combo.messages}-${++n}-${randomBytes(2).toString("hex")}`;
      created.push(name);
      await client.admin.applyNamespace({
        name,
        pattern: "claim-check",
        slots: { payloads: PAYLOADS[combo.payloads]!(), messages: MESSAGES[combo.messages] },
        options: { fronts: combo.fronts, threshold_bytes: 1024, sweep_interval_ms: 100, orphan_grace_seconds: 1, ...options },
      });
      return { name, payloads: await payloadView(combo.payloads, name) };
    };

    it("values above the threshold are claimed and handed back transparently; small ones stay inline", async () => {
      const { name, payloads } = await ns();
      const big = randomBytes(300 * 1024);
      const small = Buffer.from("tiny");
      if (combo.fronts === "keyvalue") {
        const kv = client.kv(name);
        await kv.set("big", big);
        await kv.set("small", small);
        assert.equal(await count(payloads), 1, "one payload: the big value");
        assert.equal(sha((await kv.get("big"))!), sha(big));
        assert.deepEqual(Buffer.from((await kv.get("small"))!), small);
        await kv.set("big", small);
        await eventually("overwritten value's payload deleted", async () => (await count(payloads)) === 0);
        assert.deepEqual(Buffer.from((await kv.get("big"))!), small);
        await kv.set("big2", big);
        assert.equal(await kv.delete("big2"), true);
        await eventually("deleted key's payload deleted", async () => (await count(payloads)) === 0);
      } else if (combo.fronts === "queue") {
        const q = client.queue(name);
        await q.enqueue("jobs", big, { attributes: { a: "1" } });
        await q.enqueue("jobs", small);
        assert.equal(await count(payloads), 1);
        const got = await q.dequeue("jobs", { max: 2, wait: 2 });
        assert.equal(got.length, 2);
        const b = got.find((m) => m.payload.length > 100)!;
        assert.equal(sha(b.payload), sha(big));
        assert.deepEqual(b.attributes, { a: "1" }, "the claim attribute is not shown");
        await q.ack("jobs", b.receipt);
        await eventually("acked message's payload deleted", async () => (await count(payloads)) === 0);
      } else if (combo.fronts === "stream") {
        const s = client.stream(name);
        const off = await s.append("events", big, { a: "1" });
        await s.append("events", small);
        const { records } = await s.read("events", { from: off });
        assert.equal(records.length, 2);
        assert.equal(sha(records[0]!.payload), sha(big));
        assert.deepEqual(records[0]!.attributes, { a: "1" });
        assert.deepEqual(Buffer.from(records[1]!.payload), small);
        const batch = await s.readGroup("events", "g", "c1", { count: 10 });
        assert.equal(sha(batch[0]!.payload), sha(big), "ReadGroup resolves too");
      } else {
        const ps = client.pubsub(name);
        const sub = ps.subscribe("t.*");
        await sub.ready;
        await ps.publish("t.big", big);
        await ps.publish("t.small", small);
        const seen: Uint8Array[] = [];
        for await (const m of sub) {
          seen.push(m.payload);
          if (seen.length === 2) break;
        }
        assert.equal(sha(seen[0]!), sha(big), "in order, resolved");
        assert.deepEqual(Buffer.from(seen[1]!), small);
      }
    });

    it("callers may not set the claim attribute", async () => {
      if (combo.fronts === "keyvalue") return;
      const { name } = await ns();
      const attempt =
        combo.fronts === "queue"
          ? client.queue(name).enqueue("jobs", "x", { attributes: { "prism-claim": "{}" } })
          : combo.fronts === "stream"
            ? client.stream(name).append("events", "x", { "prism-claim": "{}" })
            : client.pubsub(name).publish("t.x", "x", { "prism-claim": "{}" });
      await assert.rejects(attempt, (e: unknown) => e instanceof PrismError && e.code === 3 && /prism-claim/.test(e.message));
    });

    it("streamed upload over HTTP and gRPC, digest-checked downloads, ranges, Head and Delete", async () => {
      const { name, payloads } = await ns();
      const target = combo.fronts === "keyvalue" ? "key=doc" : combo.fronts === "queue" ? "queue=jobs" : combo.fronts === "stream" ? "stream=events" : "topic=t.up";
      const size = 3 * 1024 * 1024 + 5;
      const up = generated(size);
      const put = await httpPut(srv.httpPort, `/v1/ns/${name}/payloads?${target}`, up.chunks());
      assert.equal(put.status, 200, JSON.stringify(put.json));
      assert.equal(put.json.claim.sha256, up.sha256());
      assert.equal(put.json.claim.size, size);
      const id = put.json.claim.id as string;
      const whole = await httpGet(srv.httpPort, `/v1/ns/${name}/payloads/${id}`);
      assert.equal(whole.status, 200);
      assert.equal(whole.sha256, up.sha256());
      assert.equal(whole.headers["x-prism-sha256"], up.sha256());
      const part = await httpGet(srv.httpPort, `/v1/ns/${name}/payloads/${id}`, { range: "bytes=1048576-1048585" });
      assert.equal(part.status, 206);
      assert.equal(part.size, 10);
      assert.equal(part.headers["content-range"], `bytes 1048576-1048585/${size}`);
      const gc = claimCheckClient(srv.grpcPort);
      try {
        const up2 = generated(2 * 1024 * 1024);
        const header: Record<string, unknown> = { namespace: name };
        // A key of its own: writing "doc" again would replace (and delete) the HTTP upload's payload.
        header[target.split("=")[0]!] = combo.fronts === "keyvalue" ? "doc-grpc" : target.split("=")[1];
        const res = await grpcPut(gc, header, up2.chunks());
        assert.equal(res.claim.sha256, up2.sha256());
        const g = await grpcGet(gc, { namespace: name, claimId: res.claim.id });
        assert.equal(g.sha256, up2.sha256());
        assert.equal(g.claim.sha256, up2.sha256());
        const r = await grpcGet(gc, { namespace: name, claimId: res.claim.id, offset: 5, length: 3 });
        assert.equal(r.size, 3);
        const headRes = await new Promise<any>((ok, ko) => gc.Head({ namespace: name, claimId: res.claim.id }, (e: Error | null, v: unknown) => (e ? ko(e) : ok(v))));
        assert.equal(Number(headRes.size), 2 * 1024 * 1024);
        const del = await new Promise<any>((ok, ko) => gc.Delete({ namespace: name, claimId: res.claim.id }, (e: Error | null, v: unknown) => (e ? ko(e) : ok(v))));
        assert.equal(del.deleted, true);
        await assert.rejects(grpcGet(gc, { namespace: name, claimId: res.claim.id }), (e: any) => e.code === 5);
      } finally {
        gc.close();
      }
      if (combo.fronts === "keyvalue") {
        // Below inline_max_bytes: KeyValue.Get gives the bytes; GET ?key= streams the claim the key holds.
        assert.equal(sha((await client.kv(name).get("doc"))!), up.sha256());
        const byKey = await httpGet(srv.httpPort, `/v1/ns/${name}/payloads?key=doc`);
        assert.equal(byKey.sha256, up.sha256());
      } else if (combo.fronts === "queue") {
        const [m] = await client.queue(name).dequeue("jobs", { wait: 2 });
        assert.equal(sha(m!.payload), up.sha256(), "the uploaded payload arrives inline with its message");
      }
      assert.ok((await count(payloads)) >= 1);
    });

    it("above inline_max_bytes the claim travels instead: FAILED_PRECONDITION for Get, the claim attribute for messages", async () => {
      const { name } = await ns({ inline_max_bytes: 64 * 1024 });
      const up = generated(200 * 1024);
      const target = combo.fronts === "keyvalue" ? "key=huge" : combo.fronts === "queue" ? "queue=jobs" : combo.fronts === "stream" ? "stream=events" : "";
      if (!target) return; // pubsub: covered by queue and stream (same path)
      const put = await httpPut(srv.httpPort, `/v1/ns/${name}/payloads?${target}`, up.chunks());
      assert.equal(put.status, 200);
      if (combo.fronts === "keyvalue") {
        await assert.rejects(client.kv(name).get("huge"), (e: unknown) => e instanceof PrismError && e.code === 9 && e.message.includes(put.json.claim.id));
      } else {
        const attrs =
          combo.fronts === "queue" ? (await client.queue(name).dequeue("jobs", { wait: 2 }))[0]!.attributes : (await client.stream(name).read("events", {})).records[0]!.attributes;
        const claim = JSON.parse(attrs["prism-claim"]!);
        assert.equal(claim.id, put.json.claim.id);
        assert.equal(claim.sha256, up.sha256());
        assert.equal((await httpGet(srv.httpPort, `/v1/ns/${name}/payloads/${claim.id}`)).sha256, up.sha256());
      }
    });

    it("a wrong announced digest is refused and leaves no payload; a failed claim write deletes its upload", async () => {
      const { name, payloads } = await ns();
      const target = combo.fronts === "keyvalue" ? "key=k" : combo.fronts === "queue" ? "queue=jobs" : combo.fronts === "stream" ? "stream=events" : "topic=t.x";
      const bad = await httpPut(srv.httpPort, `/v1/ns/${name}/payloads?${target}&sha256=${"0".repeat(64)}`, generated(100_000).chunks());
      assert.equal(bad.status, 400);
      assert.match(bad.json.error.message, /SHA-256/);
      assert.equal(await count(payloads), 0);
      if (combo.fronts === "keyvalue") {
        await client.kv(name).set("k", "taken");
        const refused = await httpPut(srv.httpPort, `/v1/ns/${name}/payloads?key=k&if_absent=1`, generated(100_000).chunks());
        assert.equal(refused.status, 412, JSON.stringify(refused.json));
        await eventually("the refused upload's payload deleted", async () => (await count(payloads)) === 0);
        assert.equal(Buffer.from((await client.kv(name).get("k"))!).toString(), "taken");
      }
    });

    if (combo.fronts === "queue" && combo.messages === "memstore") {
      it("an upload cut off mid-way (the client goes away) leaves no payload and no message", async () => {
        const { name, payloads } = await ns();
        await new Promise<void>((resolve) => {
          const req = request({ host: "127.0.0.1", port: srv.httpPort, method: "PUT", path: `/v1/ns/${name}/payloads?queue=jobs` });
          req.on("error", () => resolve());
          req.write(randomBytes(3 * 1024 * 1024), () => setTimeout(() => (req.destroy(), resolve()), 200));
        });
        await eventually("the partial upload removed", async () => (await count(payloads)) === 0);
        assert.deepEqual(await client.queue(name).dequeue("jobs"), [], "no claim was enqueued");
      });
    }

    if (combo.payloads === "filesystem" && combo.fronts === "keyvalue" && combo.messages === "redis") {
      it("the default threshold is 1 MiB: a value of 1 MiB stays inline, one byte more is claimed", async () => {
        const name = `cc-default-threshold-${randomBytes(2).toString("hex")}`;
        created.push(name);
        // No threshold_bytes: the default applies.
        await client.admin.applyNamespace({ name, pattern: "claim-check", slots: { payloads: PAYLOADS.filesystem!(), messages: MESSAGES.redis }, options: { fronts: "keyvalue" } });
        const payloads = await payloadView("filesystem", name);
        const kv = client.kv(name);
        const atLimit = randomBytes(1024 * 1024);
        await kv.set("at-limit", atLimit);
        assert.equal(await count(payloads), 0, "1 MiB: inline");
        const above = randomBytes(1024 * 1024 + 1);
        await kv.set("above", above);
        assert.equal(await count(payloads), 1, "1 MiB + 1 byte: stored as a payload");
        assert.equal(sha((await kv.get("at-limit"))!), sha(atLimit));
        assert.equal(sha((await kv.get("above"))!), sha(above));
      });
    }

    // Keys with a TTL: not on NATS KV here (no per-key TTL: the Set is refused with FAILED_PRECONDITION).
    if (combo.fronts === "keyvalue" && combo.messages !== "nats") {
      it("the sweeper deletes the payloads of expired keys: none left", async () => {
        const { name, payloads } = await ns();
        const expiring: string[] = [];
        for (let i = 0; i < 3; i++) {
          const put = await httpPut(srv.httpPort, `/v1/ns/${name}/payloads?key=exp-${i}&ttl=1`, generated(50_000).chunks());
          assert.equal(put.status, 200);
          expiring.push(put.json.claim.id as string);
        }
        await client.kv(name).set("kept", randomBytes(5000));
        // A key expires 1 s after its Set and its payload may be swept from then on (orphan_grace_seconds: 1):
        // on a loaded machine some are gone already. Besides theirs, one payload: the kept key's.
        const kept = (await ids(payloads)).filter((id) => !expiring.includes(id));
        assert.equal(kept.length, 1, "one payload besides the expiring keys'");
        await eventually("expired keys' payloads swept", async () => (await ids(payloads)).join() === kept.join(), 10_000);
        assert.equal((await client.kv(name).get("kept"))!.length, 5000, "a live key's payload is kept");
        await client.kv(name).delete("kept");
        await eventually("none left", async () => (await count(payloads)) === 0);
      });
    }

    if (combo.payloads === "filesystem" && combo.fronts === "queue" && combo.messages === "memstore") {
      it("a payload changed on disk fails its digest: DATA_LOSS, never wrong bytes", async () => {
        const { name } = await ns();
        await client.queue(name).enqueue("jobs", randomBytes(10_000));
        const dir = join(dataDir, "payloads", name);
        const bin = readdirSync(dir).find((f) => f.endsWith(".bin"))!;
        writeFileSync(join(dir, bin), randomBytes(10_000));
        await assert.rejects(client.queue(name).dequeue("jobs", { wait: 1 }), (e: unknown) => e instanceof PrismError && e.code === 15);
      });

      it("SDK putStream / getStream over ws:// (HTTP routes) and grpc:// (ClaimCheck service), whole and ranged", async () => {
        const { name } = await ns();
        for (const address of [`ws://127.0.0.1:${srv.httpPort}`, `grpc://127.0.0.1:${srv.grpcPort}`]) {
          const cc = claimCheck(address, name);
          try {
            const up = generated(5 * 1024 * 1024 + 3);
            const put = await cc.putStream(up.chunks(), { queue: "jobs" });
            assert.equal(put.claim.sha256, up.sha256(), address);
            assert.equal(put.claim.size, 5 * 1024 * 1024 + 3);
            assert.ok(put.messageId, "the claim was enqueued");
            const { claim, body } = await cc.getStream(put.claim.id);
            assert.equal(claim.id, put.claim.id);
            const h = createHash("sha256");
            for await (const c of body) h.update(c);
            assert.equal(h.digest("hex"), up.sha256(), `${address}: same bytes back`);
            const part = await cc.getStream(put.claim.id, { offset: 4, length: 4 });
            const bytes: Buffer[] = [];
            for await (const c of part.body) bytes.push(Buffer.from(c));
            // The generator's byte i of a block is (i * 31 + 7) & 0xff past the block number in bytes 0-3.
            assert.deepEqual(Buffer.concat(bytes), Buffer.from([4, 5, 6, 7].map((i) => (i * 31 + 7) & 0xff)), "bytes 4-7");
            await assert.rejects(cc.getStream("0".repeat(32)), (e: unknown) => e instanceof PrismError && e.code === 5, `${address}: absent payload → NOT_FOUND`);
          } finally {
            cc.close();
          }
        }
      });

      it("the WebSocket transport refuses streamed calls by name; the HTTP JSON route points at the payload routes", async () => {
        const { name } = await ns();
        // A raw WebSocket request frame (kind 1 REQUEST, id 7, method CLAIM_PUT): answered by an ERROR frame, UNIMPLEMENTED.
        const ws = new WebSocket(`ws://127.0.0.1:${srv.httpPort}/v1/ws`);
        await new Promise((ok, ko) => (ws.once("open", ok), ws.once("error", ko)));
        const h = Buffer.alloc(8);
        h[0] = 1;
        h.writeUInt32LE(7, 2);
        h.writeUInt16LE(prism.v1.Method.CLAIM_PUT, 6);
        const reply = new Promise<Buffer>((ok) => ws.once("message", (d: Buffer) => ok(d)));
        ws.send(Buffer.concat([h, prism.v1.PutPayloadRequest.encode({ namespace: name, queue: "q" }).finish()]));
        const f = await reply;
        ws.close();
        const status = prism.v1.Status.decode(f.subarray(6));
        assert.equal(status.code, 12);
        assert.equal(status.reason, "PRISM_ERR_STREAMING_ONLY");
        const r = await fetch(`http://127.0.0.1:${srv.httpPort}/v1/ClaimCheck/Put`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ namespace: name }) });
        assert.equal(r.status, 404);
        assert.match(await r.text(), /payloads/);
      });
    }
  });
}

describe("claim-check on the grpc-js server (server.grpc_server: grpc-js)", () => {
  let js: RunningServer;
  before(async () => {
    const config = await validateConfig({ server: { data_dir: dataDir, workers: 1, grpc_server: "grpc-js" }, namespaces: [] }, "acceptance");
    js = await startServer({ config, grpcPort: 0, httpPort: 0, log: () => {} });
  });
  after(async () => js?.close());

  it("client-streaming Put and server-streaming Get, digests match; errors keep their codes", async () => {
    const name = `cc-grpcjs-${randomBytes(3).toString("hex")}`;
    const c = await connect(`ws://127.0.0.1:${js.httpPort}`);
    try {
      await c.admin.applyNamespace({ name, pattern: "claim-check", slots: { payloads: PAYLOADS.filesystem!(), messages: MESSAGES.memstore }, options: { fronts: "stream" } });
    } finally {
      await c.close();
    }
    const gc = claimCheckClient(js.grpcPort);
    try {
      const up = generated(9 * 1024 * 1024 + 1);
      const res = await grpcPut(gc, { namespace: name, stream: "s" }, up.chunks());
      assert.equal(res.claim.sha256, up.sha256());
      assert.ok(Number(res.offset) >= 1);
      const g = await grpcGet(gc, { namespace: name, claimId: res.claim.id });
      assert.equal(g.sha256, up.sha256());
      await assert.rejects(grpcPut(gc, { namespace: name, stream: "s", sha256: "f".repeat(64) }, generated(1000).chunks()), (e: any) => e.code === 3);
      await assert.rejects(grpcGet(gc, { namespace: name, claimId: "nope" }), (e: any) => e.code === 5);
    } finally {
      gc.close();
    }
  });
});
