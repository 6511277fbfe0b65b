/**
 * Keyed writes retried by the SDK after a dropped connection have exactly one
 * effect (issue 16). A TCP proxy between the client and an in-process Prism
 * (Redis namespace, unique key prefix: Redis stores the idempotency records)
 * makes the failure deterministic: responses from Prism are held back, the
 * write is applied on the server (seen through a direct client), then the
 * proxy cuts every connection. The client reconnects through the proxy and
 * sends the keyed write again; Prism answers it with the first call's result.
 * Per transport: an append with `idempotencyKey` resolves to the offset of the
 * one record; an enqueue under `autoIdempotency` leaves one message; the same
 * append without a key fails with UNAVAILABLE (it was applied once, not retried).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, connect as tcpConnect, type Server, type Socket } from "node:net";
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { connect, Code, PrismError, type Prism } from "@prism/client";
import { startServer, type RunningServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { deleteRedisPrefix } from "../helpers/redis-cleanup.js";

const REDIS = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const prefix = `prism-sdk-idem-${process.pid}-${randomUUID().slice(0, 6)}`;
const NS = "idem";
const uid = () => randomUUID().slice(0, 8);
const TRANSPORTS = ["ws", "grpc", "http"] as const;

/** A TCP proxy that can hold back what the server sends and cut every connection. */
class Proxy {
  hold = false;
  private readonly pairs = new Set<[Socket, Socket]>();
  private server: Server | undefined;
  port = 0;
  constructor(private readonly target: number) {}

  async start(): Promise<void> {
    this.server = createServer((client) => {
      const upstream = tcpConnect(this.target, "127.0.0.1");
      const pair: [Socket, Socket] = [client, upstream];
      this.pairs.add(pair);
      client.on("data", (d) => upstream.write(d));
      upstream.on("data", (d) => {
        if (!this.hold) client.write(d); // held responses are dropped: their connection is about to be cut
      });
      const end = () => {
        this.pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on("close", end).on("error", end);
      upstream.on("close", end).on("error", end);
    });
    await new Promise<void>((r) => this.server!.listen(0, "127.0.0.1", r));
    this.port = (this.server.address() as { port: number }).port;
  }

  /** Destroys every proxied connection (both sides) and lets traffic through again. */
  cut(): void {
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
    this.pairs.clear();
    this.hold = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((r) => this.server?.close(() => r()) ?? r());
  }
}

let server: RunningServer;
let direct: Prism;
let supported = true;

before(async () => {
  const config = await validateConfig(
    { namespaces: [{ name: NS, primitives: ["keyvalue", "queue", "stream"], backend: { type: "redis", url: REDIS, key_prefix: prefix } }] },
    "sdk-idempotent-retry",
  );
  server = await startServer({ config, host: "127.0.0.1", grpcPort: 0, httpPort: 0, log: () => {} });
  direct = await connect(`ws://127.0.0.1:${server.httpPort}`);
  const ifaces = (await direct.admin.getNamespace(NS)).interfaces;
  supported = ifaces.includes("stream_idempotent") && ifaces.includes("queue_idempotent");
});
after(async () => {
  await direct?.close();
  await server?.close();
  const r = new Redis(REDIS);
  await deleteRedisPrefix(r, prefix);
  r.disconnect();
});

/** Polls (bounded) until `probe` is true: the server has applied the held write. */
async function until(probe: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`${what} never happened`);
}

for (const transport of TRANSPORTS) {
  describe(`keyed writes retried after a drop, over ${transport}`, { timeout: 60_000 }, () => {
    let proxy: Proxy;
    let client: Prism;
    before(async (t) => {
      proxy = new Proxy(transport === "grpc" ? server.grpcPort : server.httpPort);
      await proxy.start();
      const addr = transport === "grpc" ? `grpc://127.0.0.1:${proxy.port}` : `${transport}://127.0.0.1:${proxy.port}`;
      client = await connect(addr, { timeoutMs: 20_000, autoIdempotency: false, reconnect: { initialDelayMs: 20, maxDelayMs: 100 } });
      void t;
    });
    after(async () => {
      await client?.close();
      await proxy?.close();
    });

    /** Runs `write` with responses held, waits until `applied`, cuts the connections; resolves the write's outcome. */
    async function dropAfterApply<T>(write: () => Promise<T>, applied: () => Promise<boolean>): Promise<{ ok: T } | { err: unknown }> {
      await client.kv(NS).exists("warm-up"); // connected, and the path is warm
      proxy.hold = true;
      const outcome = write().then(
        (ok) => ({ ok }),
        (err: unknown) => ({ err }),
      );
      await until(applied, "the held write reaching the backend");
      proxy.cut();
      return outcome;
    }

    test("an append with idempotencyKey: retried after the reconnect, one record, the first call's offset", async (t) => {
      if (!supported) return t.skip("the redis backend does not claim stream_idempotent in this tree");
      const stream = `idem-${transport}-${uid()}`;
      const r = await dropAfterApply(
        () => client.stream(NS).append(stream, "once", undefined, { idempotencyKey: `k-${uid()}` }),
        async () => (await direct.stream(NS).read(stream)).records.length > 0,
      );
      assert.ok("ok" in r, `the keyed append was retried and resolved: ${"err" in r ? String(r.err) : ""}`);
      const { records } = await direct.stream(NS).read(stream);
      assert.equal(records.length, 1, "exactly one effect");
      assert.equal(r.ok, records[0]!.offset, "the retry answers with the first call's offset");
    });

    test("autoIdempotency: an enqueue without a key is retried and enqueued once", async (t) => {
      if (!supported) return t.skip("the redis backend does not claim queue_idempotent in this tree");
      const auto = await connect(transport === "grpc" ? `grpc://127.0.0.1:${proxy.port}` : `${transport}://127.0.0.1:${proxy.port}`, {
        timeoutMs: 20_000,
        autoIdempotency: true,
        reconnect: { initialDelayMs: 20, maxDelayMs: 100 },
      });
      try {
        const queue = `idem-${transport}-${uid()}`;
        await auto.kv(NS).exists("warm-up");
        proxy.hold = true;
        const outcome = auto.queue(NS).enqueue(queue, "once").then(
          (ok) => ({ ok }),
          (err: unknown) => ({ err }),
        );
        // Applied: a direct dequeue sees it (and leases it: counted, then nacked back).
        let seen: string | undefined;
        await until(async () => {
          const [m] = await direct.queue(NS).dequeue(queue);
          if (m) {
            seen = m.messageId;
            await direct.queue(NS).nack(queue, m.receipt);
          }
          return m !== undefined;
        }, "the held enqueue reaching the backend");
        proxy.cut();
        const r = await outcome;
        assert.ok("ok" in r, `the auto-keyed enqueue was retried and resolved: ${"err" in r ? String(r.err) : ""}`);
        assert.equal(r.ok, seen, "the retry answers with the first call's message id");
        const all = await direct.queue(NS).dequeue(queue, { max: 10 });
        assert.deepEqual(all.map((m) => m.messageId), [seen], "exactly one message");
        for (const m of all) await direct.queue(NS).ack(queue, m.receipt);
      } finally {
        await auto.close();
      }
    });

    test("the same append without a key is not retried: UNAVAILABLE, applied once", async () => {
      const stream = `nokey-${transport}-${uid()}`;
      const r = await dropAfterApply(
        () => client.stream(NS).append(stream, "maybe"),
        async () => (await direct.stream(NS).read(stream)).records.length > 0,
      );
      assert.ok("err" in r && r.err instanceof PrismError && r.err.code === Code.UNAVAILABLE, `UNAVAILABLE, got ${"err" in r ? String(r.err) : "a result"}`);
      assert.equal((await direct.stream(NS).read(stream)).records.length, 1);
      // The client healed: the next call works.
      assert.equal(await client.kv(NS).exists(`after-${uid()}`), false);
    });
  });
}
