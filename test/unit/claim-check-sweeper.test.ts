/**
 * The Claim Check sweeper against payloads still on their way: an upload
 * whose bytes are still arriving, and a stored payload whose claim (the key's
 * Set) is not written yet. Neither is swept, however old it looks; once its
 * claim is written the sweeper judges it as before. Real stores (filesystem
 * payloads in a temporary directory, memstore KeyValue), a ManualClock for
 * age, and a gate to hold a write where the race happens.
 */
import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadDriver } from "../../src/backends/registry.js";
import type { BackendInstance, KeyValueStore, PayloadStore } from "../../src/backends/driver.js";
import { MemKeyValue } from "../../src/backends/memstore/keyvalue.js";
import { ManualClock } from "../../src/core/clock.js";
import { CLAIM_CHECK_DEFAULTS, ClaimCheckService, ClaimKeyValueStore } from "../../src/patterns/claim-check.js";

const root = mkdtempSync(join(tmpdir(), "prism-unit-cc-sweep-"));
const instances: BackendInstance[] = [];
after(async () => {
  for (const i of instances) await i.close();
  rmSync(root, { recursive: true, force: true });
});

/** A gate: `entered` resolves when the held step is reached, `open()` lets it go on. */
function gate() {
  let enter!: () => void;
  let open!: () => void;
  const entered = new Promise<void>((r) => (enter = r));
  const opened = new Promise<void>((r) => (open = r));
  return { entered, open, pass: async () => (enter(), await opened) };
}

let n = 0;
async function setup(clock: ManualClock, kv: KeyValueStore) {
  const inst = (await loadDriver("filesystem")).create({ root, fsync: false }, { clock, log: () => {} });
  instances.push(inst);
  const payloads = inst.namespace(`ns-${++n}`, {} as never).payload! as PayloadStore;
  const front = new ClaimKeyValueStore(kv);
  const svc = new ClaimCheckService(
    `ns-${n}`,
    payloads,
    { keyvalue: front },
    { keyvalue: kv },
    { ...CLAIM_CHECK_DEFAULTS, fronts: "keyvalue", thresholdBytes: 1024, sweepIntervalMs: 0, orphanGraceSeconds: 1 },
    clock,
    () => {},
  );
  front.service = svc;
  return { svc, front, payloads };
}

async function ids(p: PayloadStore): Promise<string[]> {
  return (await p.list("", 100)).items.map((i) => i.id);
}

describe("claim-check sweeper: payloads on their way are not swept", () => {
  it("a stored payload whose key's Set is still running is kept past the grace period; the key reads it back", async () => {
    const clock = new ManualClock(Date.now());
    const mem = new MemKeyValue(clock);
    const held = gate();
    // The messages backend's Set, held until the sweeper has run (a slow or loaded KeyValue backend).
    const slow: KeyValueStore = {
      get: (k) => mem.get(k),
      set: async (k, v, o) => (await held.pass(), mem.set(k, v, o)),
      delete: (k) => mem.delete(k),
      exists: (k) => mem.exists(k),
    };
    const { svc, front, payloads } = await setup(clock, slow);
    const value = randomBytes(5000);
    const setting = front.set("k", value, {});
    await held.entered; // the payload is stored, the claim not written yet
    assert.equal((await ids(payloads)).length, 1);
    clock.advance(10 * 60_000); // far past orphan_grace_seconds and the 60 s of incomplete uploads
    await svc.sweep();
    assert.equal(svc.counters.swept, 0, "the sweeper left the payload whose claim is being written");
    held.open();
    await setting;
    assert.ok(Buffer.from((await front.get("k"))!.value).equals(value), "the key's claim resolves");
    clock.advance(10 * 60_000);
    await svc.sweep();
    assert.equal(svc.counters.swept, 0, "held by its key: kept");
    assert.equal(await front.delete("k"), true);
    // The key's payload goes with it (deleted at once, or by the next sweep).
    await svc.sweep();
    for (let i = 0; i < 100 && (await ids(payloads)).length; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(await ids(payloads), []);
  });

  it("an upload whose bytes stop arriving for longer than the incomplete-upload age is not swept under it", async () => {
    const clock = new ManualClock(Date.now());
    const { svc, payloads } = await setup(clock, new MemKeyValue(clock));
    const held = gate();
    const first = randomBytes(64 * 1024);
    const rest = randomBytes(64 * 1024);
    async function* body(): AsyncGenerator<Uint8Array> {
      yield first;
      await held.pass(); // the client pauses mid-upload
      yield rest;
    }
    const uploading = svc.upload({ ttlSeconds: 0, attributes: {}, contentType: "", sha256: "", ifAbsent: false }, body());
    await held.entered;
    for (let i = 0; i < 100 && !(await payloads.list("", 10)).items.length; i++) await new Promise((r) => setTimeout(r, 10));
    const listed = (await payloads.list("", 10)).items;
    assert.equal(listed.length, 1);
    assert.equal(listed[0]!.complete, false, "listed as an upload in progress");
    clock.advance(10 * 60_000);
    await svc.sweep();
    assert.equal(svc.counters.swept, 0, "the sweeper left the upload in progress");
    held.open();
    const r = await uploading;
    assert.equal(r.claim.size, first.length + rest.length);
    const got = await svc.open(r.claim.id, 0, 0);
    let size = 0;
    for await (const c of got.body) size += c.length;
    assert.equal(size, r.claim.size, "the whole payload reads back, digest checked");
  });
});

describe("claim-check sweeper: orphans are deleted, none left", () => {
  it("a crashed write's payload, an expired key's and an expired message's payloads are swept; a held key's stays", async () => {
    const clock = new ManualClock(Date.now());
    const { svc, front, payloads } = await setup(clock, new MemKeyValue(clock));
    const bytes = randomBytes(4096);
    const meta = (labels: Record<string, string>, expiresAtMs = 0) => () => ({
      size: bytes.length,
      sha256: createHash("sha256").update(bytes).digest("hex"),
      contentType: "",
      createdAtMs: clock.now(),
      expiresAtMs,
      labels,
    });
    async function* whole(): AsyncGenerator<Uint8Array> {
      yield bytes;
    }
    // 1. What a write that failed after the upload leaves when nothing deleted it (Prism died between the
    //    upload and the claim write): a complete payload labelled with a key that never got its claim.
    await payloads.put("crashed-write", whole(), meta({ key: "never-written" }));
    // 2. A key that expires (its claim goes with it; the payload stays behind in the payload store).
    await front.set("expiring", randomBytes(5000), { ttlMs: 1000 });
    // 3. A message's payload past its expiry (payload_ttl_seconds, or the Put's ttl_seconds).
    await payloads.put("old-message", whole(), meta({}, clock.now() + 1000));
    // A key that still holds its claim.
    await front.set("kept", randomBytes(5000), {});
    const all = await payloads.list("", 100);
    assert.equal(all.items.length, 4, JSON.stringify(all.items.map((i) => [i.id, i.complete])));
    await svc.sweep();
    assert.equal(svc.counters.swept, 0, "within the grace period nothing is swept");
    clock.advance(2_000); // past orphan_grace_seconds (1) and both expiries
    assert.equal(await front.get("expiring"), null, "the key expired");
    await svc.sweep();
    assert.equal(svc.counters.swept, 3, "the three orphans");
    const left = await payloads.list("", 100);
    assert.equal(left.items.length, 1, `none left but the kept key's: ${JSON.stringify(left.items.map((i) => i.id))}`);
    assert.equal(left.items[0]!.complete && left.items[0]!.labels.key, "kept");
    assert.equal((await front.get("kept"))!.value.length, 5000, "the kept key still reads back");
  });
});
