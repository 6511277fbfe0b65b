/**
 * The payload interfaces (payload_basic, payload_ttl) on both payload
 * drivers: filesystem (a temporary directory) and s3 (against s3rver, an
 * S3-compatible server from npm started here on an ephemeral port). The
 * drivers are called directly, on a ManualClock for expiry.
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadDriver } from "../../src/backends/registry.js";
import type { BackendInstance, PayloadMeta, PayloadStore } from "../../src/backends/driver.js";
import { ManualClock } from "../../src/core/clock.js";
import { PrismError } from "../../src/core/errors.js";
import { startS3rver, type S3rverHandle } from "../helpers/s3rver.js";

const tag = `${process.pid}-${randomBytes(3).toString("hex")}`;
let s3: S3rverHandle;
const root = mkdtempSync(join(tmpdir(), "prism-acc-payload-"));

before(async () => {
  s3 = await startS3rver();
});
after(async () => {
  await s3?.close();
  rmSync(root, { recursive: true, force: true });
});

async function* chunks(b: Buffer, size = 64 * 1024): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

async function readAll(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of body) parts.push(Buffer.from(p));
  return Buffer.concat(parts);
}

function metaOf(b: Buffer, clock: ManualClock, expiresAtMs = 0): () => PayloadMeta {
  return () => ({ size: b.length, sha256: createHash("sha256").update(b).digest("hex"), contentType: "application/x-test", createdAtMs: clock.now(), expiresAtMs, labels: { k: "v" } });
}

const DRIVERS: Record<string, () => Record<string, unknown>> = {
  filesystem: () => ({ root, fsync: true }),
  s3: () => s3.options(`acc-${tag}/`),
};

for (const [type, options] of Object.entries(DRIVERS)) {
  describe(`payload drivers: ${type}`, () => {
    const clock = new ManualClock(Date.now());
    let inst: BackendInstance;
    let n = 0;
    const store = () => inst.namespace(`ns-${++n}`, {} as never).payload! as PayloadStore;
    before(async () => {
      const d = await loadDriver(type);
      assert.deepEqual([...d.interfaces].sort(), ["payload_basic", "payload_ttl"]);
      inst = d.create(options(), { clock, log: () => {} });
    });
    after(async () => inst?.close());

    it("health answers ok", async () => {
      assert.equal((await inst.health()).ok, true);
    });

    it("put streams in, get streams out whole; head; the meta is what put wrote", async () => {
      const s = store();
      const b = randomBytes(3 * 1024 * 1024 + 17); // several s3 parts' worth is not needed: one part plus a remainder
      await s.put("p1", chunks(b), metaOf(b, clock));
      const r = await s.get("p1", 0, 0);
      assert.ok(r);
      assert.equal(r.meta.size, b.length);
      assert.equal(r.meta.sha256, createHash("sha256").update(b).digest("hex"));
      assert.deepEqual(r.meta.labels, { k: "v" });
      assert.ok((await readAll(r.body)).equals(b));
      assert.equal((await s.head("p1"))?.size, b.length);
    });

    it("ranges: offset and length, to the end, past the end", async () => {
      const s = store();
      const b = randomBytes(100_000);
      await s.put("r", chunks(b, 7_000), metaOf(b, clock));
      assert.ok((await readAll((await s.get("r", 10, 100))!.body)).equals(b.subarray(10, 110)));
      assert.ok((await readAll((await s.get("r", 99_990, 0))!.body)).equals(b.subarray(99_990)));
      assert.ok((await readAll((await s.get("r", 99_990, 1000))!.body)).equals(b.subarray(99_990)));
      assert.equal((await readAll((await s.get("r", 200_000, 0))!.body)).length, 0);
    });

    it("absent: get and head null, delete false; delete removes; namespaces are isolated", async () => {
      const s = store();
      const other = store();
      assert.equal(await s.get("nope", 0, 0), null);
      assert.equal(await s.head("nope"), null);
      assert.equal(await s.delete("nope"), false);
      const b = Buffer.from("hello");
      await s.put("d", chunks(b), metaOf(b, clock));
      assert.equal(await other.head("d"), null, "another namespace does not see it");
      assert.equal(await s.delete("d"), true);
      assert.equal(await s.head("d"), null);
      assert.equal(await s.delete("d"), false);
    });

    it("a body that fails leaves nothing readable and nothing listed as complete", async () => {
      const s = store();
      async function* broken(): AsyncGenerator<Uint8Array> {
        yield randomBytes(6 * 1024 * 1024);
        throw new PrismError(3, "PRISM_ERR_TEST", "client gone");
      }
      await assert.rejects(s.put("bad", broken(), metaOf(Buffer.alloc(0), clock)), (e: unknown) => e instanceof PrismError && e.reason === "PRISM_ERR_TEST");
      assert.equal(await s.head("bad"), null);
      const l = await s.list("", 100);
      assert.equal(l.items.filter((i) => i.complete).length, 0, JSON.stringify(l.items));
    });

    it("payload_ttl: an expired payload is absent for get and head, and still listed (for the sweeper)", async () => {
      const s = store();
      const b = Buffer.from("short-lived");
      await s.put("e", chunks(b), metaOf(b, clock, clock.now() + 10_000));
      assert.ok(await s.head("e"));
      clock.advance(10_001);
      assert.equal(await s.head("e"), null);
      assert.equal(await s.get("e", 0, 0), null);
      const l = await s.list("", 10);
      assert.deepEqual(l.items.map((i) => i.id), ["e"]);
      assert.equal(await s.delete("e"), true);
    });

    it("payloads completing while they are listed: listed complete or as young uploads, never as uploads of unknown age", async () => {
      // The sweeper deletes an incomplete upload by its age: one listed with age 0 (the epoch) while its
      // files were being renamed (.part → .bin → .json) was deleted mid-upload, its claim left dangling.
      const s = store();
      const t0 = Date.now() - 2000; // object stores may keep times to the second
      async function* slow(b: Buffer): AsyncGenerator<Uint8Array> {
        for (let i = 0; i < b.length; i += 4096) {
          await new Promise((r) => setImmediate(r));
          yield b.subarray(i, i + 4096);
        }
      }
      const n = 40;
      let done = false;
      const puts = Promise.all(
        Array.from({ length: n }, (_, i) => {
          const b = randomBytes((i + 1) * 8 * 1024); // sizes apart: the uploads commit one after another
          return s.put(`race-${String(i).padStart(2, "0")}`, slow(b), metaOf(b, clock));
        }),
      ).finally(() => (done = true));
      const old: unknown[] = [];
      let listings = 0;
      while (!done) {
        for (const item of (await s.list("", 500)).items) if (!item.complete && item.createdAtMs < t0) old.push(item);
        listings++;
      }
      await puts;
      assert.deepEqual(old, [], `incomplete uploads listed older than the test, over ${listings} listings`);
      assert.equal((await s.list("", 500)).items.filter((i) => i.complete).length, n);
    });

    it("list pages in id order with a cursor", async () => {
      const s = store();
      for (const id of ["c", "a", "b", "d"]) await s.put(id, chunks(Buffer.from(id)), metaOf(Buffer.from(id), clock));
      const seen: string[] = [];
      let cursor = "";
      do {
        const page = await s.list(cursor, 3);
        assert.ok(page.items.length <= 3);
        seen.push(...page.items.map((i) => i.id));
        cursor = page.nextCursor;
      } while (cursor !== "");
      assert.deepEqual(seen, ["a", "b", "c", "d"]);
    });

    it("ids are checked (no path or key tricks)", async () => {
      const s = store();
      await assert.rejects(s.head("../etc/passwd"), (e: unknown) => e instanceof PrismError && e.code === 3);
    });
  });
}
