/**
 * The SDK's Claim Check streaming (putStream / getStream) over every
 * transport: ws:// (HTTP PUT / GET on the WebSocket's origin), http:// and
 * grpc:// (ClaimCheck client-/server-streaming), through `prism.claimCheck(ns)`
 * on a connected client and the standalone `claimCheck(address, ns)`: uploads
 * from async iterables, generators and Readable streams, downloads checked
 * by SHA-256, ranges, the connection's credentials (apiKey, token function),
 * AbortSignal, and errors mapped to PrismError the same on every transport
 * (unknown namespace, absent payload, digest mismatch on upload and on disk,
 * a failing body). A Prism with authentication (api keys) serves them.
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync, createReadStream, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { get as httpGet } from "node:http";
import { claimCheck, connect, Code, PrismError, type Prism, type ClaimCheck } from "@prism/client";
import { startServer, type RunningServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { sha256KeyHash } from "../../src/auth/apikeys.js";
import { generated } from "../helpers/payload-stream.js";

const KEY = `prism-cc-sdk-${randomUUID()}`;
const NS = "cc-sdk";
/** Fronts keyvalue: claims written to keys. */
const KV = "cc-sdk-kv";
const TRANSPORTS = ["ws", "http", "grpc"] as const;
const dataDir = mkdtempSync(join(tmpdir(), "prism-acc-cc-sdk-"));
let srv: RunningServer;

before(async () => {
  const config = await validateConfig(
    {
      // The server shares this process's event loop with the test, which makes and hashes MiB of
      // payload: its event-loop delay would shed calls on a loaded machine. Shedding is not tested here.
      server: { data_dir: dataDir, workers: 1, shedding: { max_event_loop_delay_ms: 0 } },
      namespaces: [{ name: NS, pattern: "claim-check", slots: { payloads: { type: "filesystem", root: "payloads" }, messages: { type: "memstore" } }, options: { fronts: "queue", threshold_bytes: 1024 } },
        { name: KV, pattern: "claim-check", slots: { payloads: { type: "filesystem", root: "payloads" }, messages: { type: "memstore" } }, options: { fronts: "keyvalue", threshold_bytes: 1024 } },
      ],
      auth: {
        api_keys: [{ name: "sdk", hash: sha256KeyHash(KEY), roles: ["rw"] }],
        roles: { rw: [{ namespaces: ["*"], permissions: ["read", "write"] }] },
      },
    },
    "acceptance",
  );
  srv = await startServer({ config, host: "127.0.0.1", grpcPort: 0, httpPort: 0, log: () => {} });
});

after(async () => {
  await srv?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

const address = (t: (typeof TRANSPORTS)[number]) => (t === "grpc" ? `grpc://127.0.0.1:${srv.grpcPort}` : `${t}://127.0.0.1:${srv.httpPort}`);
const isCode = (code: number, reason?: string) => (e: unknown) => e instanceof PrismError && e.code === code && (reason === undefined || e.reason === reason);
const MIB = 1024 * 1024;

async function digestOf(body: AsyncIterable<Uint8Array>): Promise<{ sha256: string; size: number }> {
  const h = createHash("sha256");
  let size = 0;
  for await (const c of body) {
    h.update(c);
    size += c.length;
  }
  return { sha256: h.digest("hex"), size };
}

async function collect(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of body) out.push(Buffer.from(c));
  return Buffer.concat(out);
}

/** The generator's byte i of a 1 MiB block: (i * 31 + 7) & 0xff, past the block number in bytes 0-3. */
const patternByte = (i: number) => (i * 31 + 7) & 0xff;

for (const transport of TRANSPORTS) {
  describe(`SDK claim-check streaming over ${transport}://`, { timeout: 60_000 }, () => {
    let prism: Prism;
    let cc: ClaimCheck;
    let kv: ClaimCheck;
    before(async () => {
      prism = await connect(address(transport), { apiKey: KEY, reconnect: false });
      cc = prism.claimCheck(NS);
      kv = prism.claimCheck(KV);
    });
    after(async () => prism?.close());

    it("putStream from an async iterable (above the threshold, several MiB), getStream back: same SHA-256; ranges", async () => {
      const size = 5 * MIB + 3;
      const up = generated(size);
      async function* chunks(): AsyncGenerator<Uint8Array> {
        for (const c of up.chunks()) {
          await new Promise((r) => setImmediate(r));
          yield new Uint8Array(c.buffer, c.byteOffset, c.byteLength);
        }
      }
      const queue = `big-${transport}-${randomBytes(3).toString("hex")}`; // its own queue: the other tests leave messages in "jobs"
      const put = await cc.putStream(chunks(), { queue, contentType: "application/x-test" });
      assert.equal(put.claim.sha256, up.sha256());
      assert.equal(put.claim.size, size);
      assert.ok(put.messageId, "the claim was enqueued");
      const { claim, body } = await cc.getStream(put.claim.id);
      assert.equal(claim.id, put.claim.id);
      assert.equal(claim.size, size);
      assert.equal(claim.sha256, up.sha256());
      assert.equal(claim.contentType, "application/x-test");
      assert.deepEqual(await digestOf(body), { sha256: up.sha256(), size }, "same bytes back");
      // offset + length
      const part = await cc.getStream(put.claim.id, { offset: 4, length: 4 });
      assert.deepEqual(await collect(part.body), Buffer.from([4, 5, 6, 7].map(patternByte)), "bytes 4-7");
      // offset to the end (the last 3 bytes: block 5, too short to carry its number)
      const tail = await cc.getStream(put.claim.id, { offset: size - 3 });
      assert.deepEqual(await collect(tail.body), Buffer.from([0, 1, 2].map(patternByte)), "the last 3 bytes");
      // the claim was enqueued: the queue hands back the bytes themselves (≤ inline_max_bytes)
      const [job] = await prism.queue(NS).dequeue(queue, { wait: 1 });
      assert.ok(job, "a message");
      assert.equal(createHash("sha256").update(job.payload).digest("hex"), up.sha256());
      await prism.queue(NS).ack(queue, job.receipt);
    });

    it("putStream from a Readable file stream to a key, getStream({ key }); the standalone claimCheck() with the same credentials", async () => {
      const file = join(dataDir, `upload-${transport}.bin`);
      const bytes = randomBytes(3 * MIB + 17);
      writeFileSync(file, bytes);
      const key = `file-${transport}-${randomBytes(3).toString("hex")}`;
      const put = await kv.putStream(createReadStream(file, { highWaterMark: 64 * 1024 }), { key });
      assert.equal(put.claim.size, statSync(file).size);
      assert.equal(put.claim.sha256, createHash("sha256").update(bytes).digest("hex"));
      assert.ok(put.version !== undefined && put.version > 0, "the key's version");
      const got = await kv.getStream({ key });
      assert.equal(got.claim.id, put.claim.id);
      assert.ok((await collect(got.body)).equals(bytes), "same bytes by key");
      const alone = claimCheck(address(transport), KV, { apiKey: KEY });
      try {
        const g = await alone.getStream(put.claim.id, { offset: 100, length: 1000 });
        assert.ok((await collect(g.body)).equals(bytes.subarray(100, 1100)), "a range through the standalone client");
        const p2 = await alone.putStream(Readable.from([Buffer.from("hello "), Buffer.from("world")]), { key: `${key}-2`, ifAbsent: true });
        assert.equal(p2.claim.size, 11);
        assert.equal(Buffer.from((await prism.kv(KV).get(`${key}-2`))!).toString(), "hello world", "the key reads back the bytes");
      } finally {
        alone.close();
      }
    });

    it("errors: unknown namespace, absent payload, digest mismatch: PrismError with Prism's code and reason", async () => {
      const nope = prism.claimCheck(`no-such-ns-${transport}`);
      // A refusal while the client is still sending several MiB: answered, not hung.
      await assert.rejects(nope.putStream(generated(8 * MIB).chunks(), { queue: "jobs" }), isCode(Code.NOT_FOUND, "PRISM_ERR_UNKNOWN_NAMESPACE"), "put to an unknown namespace");
      await assert.rejects(nope.getStream("0".repeat(32)), isCode(Code.NOT_FOUND, "PRISM_ERR_UNKNOWN_NAMESPACE"), "get from an unknown namespace");
      await assert.rejects(cc.getStream("0".repeat(32)), isCode(Code.NOT_FOUND), "an absent payload");
      await assert.rejects(kv.getStream({ key: `absent-${randomUUID()}` }), isCode(Code.NOT_FOUND), "a key holding no claim");
      await assert.rejects(cc.putStream(generated(2 * MIB).chunks(), { queue: "jobs", sha256: "f".repeat(64) }), isCode(Code.INVALID_ARGUMENT), "the expected digest differs");
      await assert.rejects(cc.getStream("x"), (e: unknown) => e instanceof PrismError && (e.code === Code.NOT_FOUND || e.code === Code.INVALID_ARGUMENT), "a malformed claim id");
    });

    it("a payload changed on disk: the download fails with a PrismError, never ends as if complete", async () => {
      const bytes = randomBytes(2 * MIB);
      const put = await cc.putStream([bytes], { queue: "corrupt" });
      writeFileSync(join(dataDir, "payloads", NS, `${put.claim.id}.bin`), randomBytes(bytes.length));
      await assert.rejects(
        (async () => {
          const { body } = await cc.getStream(put.claim.id);
          await digestOf(body);
        })(),
        // gRPC carries the status after the bytes: DATA_LOSS. Over HTTP the server holds back the last chunk
        // and cuts the body short (the 200 is already out), so the SDK sees a body cut off: UNAVAILABLE.
        transport === "grpc" ? isCode(Code.DATA_LOSS, "PRISM_ERR_PAYLOAD_CORRUPT") : (e: unknown) => isCode(Code.UNAVAILABLE)(e) && /cut off after \d+ of \d+ bytes/.test((e as Error).message),
      );
      if (transport !== "http") return;
      // A plain HTTP client (no SDK digest check): the status line is already 200, so Prism cuts the body
      // short before its last chunk; the client never receives every byte as if the payload were whole.
      const got = await new Promise<{ status: number; bytes: number; complete: boolean }>((resolve) => {
        const req = httpGet(`http://127.0.0.1:${srv.httpPort}/v1/ns/${NS}/payloads/${put.claim.id}`, { headers: { "x-api-key": KEY } }, (res) => {
          let bytes = 0;
          res.on("data", (c: Buffer) => (bytes += c.length));
          const done = () => resolve({ status: res.statusCode ?? 0, bytes, complete: res.complete });
          res.on("end", done);
          res.on("error", done);
          res.on("aborted", done);
          res.on("close", done);
        });
        req.on("error", () => resolve({ status: 0, bytes: 0, complete: false }));
      });
      assert.equal(got.status, 200);
      assert.equal(got.complete, false, "the response must not end as if complete");
      assert.ok(got.bytes < bytes.length, `${got.bytes} of ${bytes.length} bytes arrived`);
    });

    it("a body that fails rejects with its own error; the upload is cancelled", async () => {
      const boom = new Error("disk read failed");
      async function* failing(): AsyncGenerator<Uint8Array> {
        yield randomBytes(MIB);
        throw boom;
      }
      await assert.rejects(cc.putStream(failing(), { queue: "jobs" }), (e: unknown) => e === boom);
      await assert.rejects(cc.putStream("not chunks" as never), isCode(Code.INVALID_ARGUMENT));
      // A string chunk (a Readable read with an encoding) fails the body, on every transport alike.
      await assert.rejects(cc.putStream(Readable.from(["text"], { objectMode: true }), { queue: "jobs" }), isCode(Code.INVALID_ARGUMENT));
      // One Uint8Array is one chunk.
      const one = await cc.putStream(Buffer.from("hello world"), { queue: "jobs" });
      assert.equal(one.claim.size, 11);
      assert.equal((await collect((await cc.getStream(one.claim.id)).body)).toString(), "hello world");
    });

    it("AbortSignal: before the call, during an upload, during a download → CANCELLED", async () => {
      const pre = new AbortController();
      pre.abort();
      await assert.rejects(cc.putStream([Buffer.from("x")], { queue: "jobs" }, { signal: pre.signal }), isCode(Code.CANCELLED), "pre-aborted put");
      await assert.rejects(cc.getStream("0".repeat(32), { signal: pre.signal }), isCode(Code.CANCELLED), "pre-aborted get");
      // Upload: an endless body, aborted after 4 MiB were taken.
      const ac = new AbortController();
      let taken = 0;
      async function* endless(): AsyncGenerator<Uint8Array> {
        for (;;) {
          if ((taken += MIB) > 4 * MIB) ac.abort();
          yield Buffer.alloc(MIB, 1);
        }
      }
      await assert.rejects(cc.putStream(endless(), { queue: "jobs" }, { signal: ac.signal }), isCode(Code.CANCELLED), "aborted upload");
      assert.ok(taken < 64 * MIB, `the body stopped being read (${taken >> 20} MiB taken)`);
      // Download: abort after the first chunk.
      const put = await cc.putStream(generated(4 * MIB).chunks(), { queue: "abort" });
      const dc = new AbortController();
      const { body } = await cc.getStream(put.claim.id, { signal: dc.signal });
      await assert.rejects(
        (async () => {
          for await (const _ of body) dc.abort();
        })(),
        isCode(Code.CANCELLED),
        "aborted download",
      );
    });

    it("credentials: without the api key UNAUTHENTICATED; a failing token function UNAUTHENTICATED before anything is sent", async () => {
      const anon = claimCheck(address(transport), NS);
      const bad = claimCheck(address(transport), NS, {
        token: () => {
          throw new Error("vault is down");
        },
      });
      try {
        await assert.rejects(anon.putStream(generated(2 * MIB).chunks(), { queue: "jobs" }), isCode(Code.UNAUTHENTICATED), "anonymous put");
        await assert.rejects(anon.getStream("0".repeat(32)), isCode(Code.UNAUTHENTICATED), "anonymous get");
        await assert.rejects(bad.putStream([Buffer.from("x")], { queue: "jobs" }), isCode(Code.UNAUTHENTICATED), "token function fails");
        await assert.rejects(bad.getStream("0".repeat(32)), isCode(Code.UNAUTHENTICATED), "token function fails (get)");
        // The connected client's credentials: a client connected without them is refused too.
        const c = await connect(address(transport), { reconnect: false }).catch(() => undefined);
        if (c) {
          try {
            await assert.rejects(c.claimCheck(NS).getStream("0".repeat(32)), isCode(Code.UNAUTHENTICATED), "a client connected without credentials");
          } finally {
            await c.close();
          }
        }
      } finally {
        anon.close();
        bad.close();
      }
    });
  });
}
