/**
 * `prism serve --workers 2`: whatever worker a client lands on, it sees one
 * gateway. Values, pub/sub messages, queue messages and namespace changes
 * cross workers (the namespace owner is reached over the worker mesh).
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { connect, type Prism } from "@prism/client";
import { freePort, startPrism, type PrismProcess } from "./serve-process.js";
import { ownerOf } from "../../src/workers/placement.js";
import { SERVER_NODE_FLAGS } from "../../src/workers/node-flags.js";

const tag = randomUUID().slice(0, 8);
const MEM = `wk-mem-${tag}`;
const MEM2 = `wk-mem2-${tag}`;
const SQL = `wk-sql-${tag}`;
const dir = mkdtempSync(join(tmpdir(), "prism-workers-"));

let srv: PrismProcess;
/** Clients by the worker that serves their connection: [worker][0] is WebSocket, [worker][1] gRPC when found. */
const byWorker: Prism[][] = [[], []];
const all: Prism[] = [];

async function workerOf(c: Prism): Promise<number> {
  const h = await c.call("Admin", "Health", {});
  assert.equal(h.workers, 2);
  return Number(h.workerIndex ?? 0);
}

before(async () => {
  const cfg = join(dir, "prism.yaml");
  writeFileSync(
    cfg,
    [
      "server:",
      `  data_dir: ${JSON.stringify(dir)}`,
      "namespaces:",
      `  - name: ${MEM}`,
      "    backend: { type: memstore }",
      `  - name: ${MEM2}`,
      "    backend: { type: memstore }",
      `  - name: ${SQL}`,
      "    backend: { type: sqlite, path: state.db }",
    ].join("\n"),
  );
  const [grpcPort, httpPort] = [await freePort(), await freePort()];
  srv = await startPrism(["--workers", "2", "--config", cfg, "--grpc-port", String(grpcPort), "--http-port", String(httpPort)]);
  // The primary hands connections out round-robin: a few connections reach both workers with both transports.
  const want = (w: number, kind: "ws" | "grpc") => byWorker[w]!.filter((c) => (c as any).__kind === kind).length === 0;
  for (let i = 0; i < 16 && [0, 1].some((w) => want(w, "ws") || want(w, "grpc")); i++) {
    const kind = i % 2 === 0 ? "ws" : "grpc";
    const c = await connect(kind === "ws" ? `ws://127.0.0.1:${srv.httpPort}` : `grpc://127.0.0.1:${srv.grpcPort}`);
    all.push(c);
    const w = await workerOf(c);
    if (want(w, kind)) {
      (c as any).__kind = kind;
      byWorker[w]!.push(c);
    }
  }
  assert.ok(byWorker[0]!.length > 0 && byWorker[1]!.length > 0, "clients reached both workers");
});

after(async () => {
  await Promise.all(all.map((c) => c.close().catch(() => {})));
  if (srv) {
    const code = await srv.stop("SIGTERM");
    assert.equal(code, 0, `exit after SIGTERM\n${srv.stderr()}`);
  }
  rmSync(dir, { recursive: true, force: true });
});

const A = () => byWorker[0]![0]!;
const B = () => byWorker[1]![0]!;

test("a value set through one worker is read through the other (memstore and sqlite)", async () => {
  for (const ns of [MEM, MEM2, SQL]) {
    await A().kv(ns).set("from-a", `a:${ns}`);
    await B().kv(ns).set("from-b", `b:${ns}`);
    for (const c of [...byWorker[0]!, ...byWorker[1]!]) {
      assert.equal(Buffer.from((await c.kv(ns).get("from-a"))!).toString(), `a:${ns}`);
      assert.equal(Buffer.from((await c.kv(ns).get("from-b"))!).toString(), `b:${ns}`);
    }
    assert.equal(await B().kv(ns).delete("from-a"), true);
    assert.equal(await A().kv(ns).get("from-a"), null);
  }
  // Large values cross the mesh in many socket chunks; many small ones are pipelined on one connection.
  const big = Buffer.alloc(2 * 1024 * 1024 + 7, 7);
  big.write("head", 0);
  big.write("tail", big.length - 4);
  await A().kv(MEM).set("big", big);
  assert.ok(Buffer.from((await B().kv(MEM).get("big"))!).equals(big));
  await B().kv(MEM2).set("big", big);
  assert.ok(Buffer.from((await A().kv(MEM2).get("big"))!).equals(big));
  const keys = Array.from({ length: 300 }, (_, i) => `p${i}`);
  await Promise.all(keys.map((k) => A().kv(MEM).set(k, k)));
  await Promise.all(keys.map((k) => B().kv(MEM2).set(k, k)));
  const [fromB, fromA] = await Promise.all([Promise.all(keys.map((k) => B().kv(MEM).get(k))), Promise.all(keys.map((k) => A().kv(MEM2).get(k)))]);
  assert.deepEqual(fromB.map((v) => Buffer.from(v!).toString()), keys);
  assert.deepEqual(fromA.map((v) => Buffer.from(v!).toString()), keys);
});

test("errors from the owner worker keep their code across the mesh", async () => {
  for (const c of [A(), B()]) {
    await assert.rejects(c.kv(MEM).set("", "x"), (e: any) => e.code === 3);
    await assert.rejects(c.queue(MEM).ack("q", "not-a-receipt"), (e: any) => e.code === 9 || e.code === 3);
  }
});

test("a subscriber on one worker receives what is published on the other", async () => {
  for (const [sub, pub] of [
    [A(), B()],
    [B(), A()],
  ] as const) {
    for (const ns of [MEM, MEM2]) {
      const s = sub.pubsub(ns).subscribe("orders.*");
      await s.ready;
      const payloads = ["one", "two", "three"];
      for (const p of payloads) await pub.pubsub(ns).publish("orders.new", p);
      const got: string[] = [];
      for await (const m of s) {
        assert.equal(m.topic, "orders.new");
        got.push(Buffer.from(m.payload).toString());
        if (got.length === payloads.length) break;
      }
      assert.deepEqual(got, payloads);
    }
  }
});

test("200 queue messages: consumers on both workers, each message delivered exactly once", async () => {
  for (const ns of [MEM, SQL]) {
    const queue = `jobs-${randomUUID().slice(0, 6)}`;
    const sent = new Set<string>();
    await Promise.all(
      Array.from({ length: 4 }, async (_, p) => {
        const c = p % 2 === 0 ? A() : B();
        for (let i = p; i < 200; i += 4) {
          await c.queue(ns).enqueue(queue, `m${i}`);
          sent.add(`m${i}`);
        }
      }),
    );
    assert.equal(sent.size, 200);
    const consumers = [...byWorker[0]!, ...byWorker[1]!].map((c, i) => ({ c, worker: byWorker[0]!.includes(c) ? 0 : 1, i }));
    const seen = new Map<string, number>();
    const perWorker = [0, 0];
    let duplicates = 0;
    await Promise.all(
      consumers.map(async ({ c, worker, i }) => {
        for (let round = 0; round < 400 && seen.size < 200; round++) {
          const msgs = await c.queue(ns).dequeue(queue, { max: 5, visibilityTimeout: 60, wait: 1 });
          for (const m of msgs) {
            const body = Buffer.from(m.payload).toString();
            if (seen.has(body)) duplicates++;
            seen.set(body, i);
            assert.equal(m.deliveryCount, 1, `${body} was delivered before`);
            perWorker[worker]!++;
            await c.queue(ns).ack(queue, m.receipt);
          }
        }
      }),
    );
    assert.equal(duplicates, 0, "no message went to two consumers");
    assert.deepEqual([...seen.keys()].sort(), [...sent].sort(), "every message delivered");
    assert.ok(perWorker[0]! > 0 && perWorker[1]! > 0, `consumers on both workers got messages (${perWorker})`);
    assert.deepEqual(await B().queue(ns).dequeue(queue, { max: 10 }), [], "nothing left");
  }
});

test("ApplyNamespace through one worker is visible through the other", async () => {
  const name = `wk-applied-${tag}`;
  const r = await A().admin.applyNamespace({ name, backend: { type: "memstore" }, primitives: ["keyvalue"] });
  assert.equal(r.created, true);
  for (const c of [...byWorker[0]!, ...byWorker[1]!]) {
    const names = (await c.admin.listNamespaces()).map((n) => n.name);
    assert.ok(names.includes(name), `${name} listed`);
  }
  await B().kv(name).set("k", "v");
  assert.equal(Buffer.from((await A().kv(name).get("k"))!).toString(), "v");
  assert.equal(await B().admin.deleteNamespace(name), true);
  for (const c of [A(), B()]) {
    await assert.rejects(c.kv(name).get("k"), (e: any) => e.code === 5);
  }
});

/** The pid of worker `index` (a child of the primary with PRISM_WORKER_INDEX=index). Linux /proc. */
function workerPid(primary: number, index: number): number {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid !== primary) continue;
      const env = readFileSync(`/proc/${entry}/environ`, "utf8").split("\0");
      if (env.includes(`PRISM_WORKER_INDEX=${index}`)) return Number(entry);
    } catch {
      // the process went away while we looked
    }
  }
  throw new Error(`no worker ${index} under pid ${primary}`);
}

test("workers start with the server's node flags (one V8 background thread)", () => {
  for (const index of [0, 1]) {
    const argv = readFileSync(`/proc/${workerPid(srv.child.pid!, index)}/cmdline`, "utf8").split("\0");
    for (const flag of SERVER_NODE_FLAGS) assert.ok(argv.includes(flag), `worker ${index}: ${argv.join(" ")}`);
  }
});

// Last: it kills a worker (its clients are gone afterwards).
test("when the owner worker dies, forwarded calls fail with UNAVAILABLE, then it is re-forked with empty memstore state", async () => {
  const owner = ownerOf(MEM, 2);
  const c = byWorker[1 - owner]![0]!;
  await c.kv(MEM).set("before-crash", "x");
  const sub = c.pubsub(MEM).subscribe("crash.*");
  await sub.ready;

  process.kill(workerPid(srv.child.pid!, owner), "SIGKILL");

  // The forwarded subscription ends with UNAVAILABLE instead of going silent.
  await assert.rejects(
    (async () => {
      for await (const _ of sub) assert.fail("no message was published");
    })(),
    (e: any) => e.code === 14,
  );
  // Calls fail fast with UNAVAILABLE until the primary has re-forked the owner; then the namespace serves again, empty.
  let value: Uint8Array | null | undefined;
  let unavailable = 0;
  for (let i = 0; i < 300 && value === undefined; i++) {
    try {
      value = await c.kv(MEM).get("before-crash");
    } catch (e: any) {
      assert.equal(e.code, 14, String(e));
      unavailable++;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  assert.equal(value, null, `the re-forked owner serves ${MEM} again, from empty memstore state (${unavailable} UNAVAILABLE before)`);
  await c.kv(MEM).set("after-crash", "y");
  assert.equal(Buffer.from((await c.kv(MEM).get("after-crash"))!).toString(), "y");
});
