// src/pii: the envelope (self-describing, bound to its key, tamper-evident),
// data keys wrapped and re-wrapped by KEKs, and the store wrapper over a real
// memstore (the backend holds ciphertext; versions, TTL and CAS unchanged).
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Keyring, parseKeyMaterial } from "../../src/pii/keyring.js";
import { OVERHEAD } from "../../src/pii/envelope.js";
import { encryptStores } from "../../src/pii/stores.js";
import { loadDriver } from "../../src/backends/registry.js";
import { limitsOf } from "../../src/config/defaults.js";
import { systemClock } from "../../src/core/clock.js";

const kr = (id: string, kek: Buffer, previous: [string, Buffer][] = []) => new Keyring(id, new Map([[id, kek], ...previous]));

test("envelope: round trip, key binding, tampering, unknown key → DATA_LOSS", () => {
  const ring = kr("k1", randomBytes(32));
  const dk = ring.newDataKey("ns");
  const c = ring.cipher("ns", [dk]);
  const plain = Buffer.from("4111-1111-1111-1111");
  const ct = c.encrypt(plain, "kv\0card");
  assert.equal(ct.length, plain.length + OVERHEAD);
  assert.equal(ct[0], 1);
  assert.equal(ct.includes(plain), false);
  assert.deepEqual(c.decrypt(ct, "kv\0card"), plain);
  assert.notDeepEqual(c.encrypt(plain, "kv\0card"), ct, "a fresh nonce per value");
  const dataLoss = (e: any) => e.code === 15 && e.reason === "PRISM_ERR_PII_DECRYPT";
  assert.throws(() => c.decrypt(ct, "kv\0other"), dataLoss, "moved to another key");
  const flipped = Buffer.from(ct);
  flipped[flipped.length - 20]! ^= 1;
  assert.throws(() => c.decrypt(flipped, "kv\0card"), dataLoss, "altered");
  assert.throws(() => c.decrypt(plain, "kv\0card"), dataLoss, "plaintext");
  const other = ring.cipher("ns", [ring.newDataKey("ns")]);
  assert.throws(() => other.decrypt(ct, "kv\0card"), (e: any) => dataLoss(e) && /not one of this namespace's/.test(e.message));
});

test("data keys: several per namespace all decrypt (the oldest encrypts); re-wrap keeps the key; a wrapped key is bound to its namespace", () => {
  const k1 = randomBytes(32);
  const k2 = randomBytes(32);
  const old = kr("k1", k1);
  const a = { ...old.newDataKey("ns"), revision: 5 };
  const b = { ...old.newDataKey("ns"), revision: 6 };
  const ctB = old.cipher("ns", [b]).encrypt(Buffer.from("x"), "msg");
  const both = old.cipher("ns", [b, a]);
  assert.deepEqual(both.decrypt(ctB, "msg"), Buffer.from("x"));
  const ctBoth = both.encrypt(Buffer.from("y"), "msg");
  assert.deepEqual(old.cipher("ns", [a]).decrypt(ctBoth, "msg"), Buffer.from("y"), "the oldest revision encrypts");

  const rotating = kr("k2", k2, [["k1", k1]]);
  const a2 = rotating.rewrap(a)!;
  assert.equal(a2.kek, "k2");
  assert.equal(a2.id, a.id);
  assert.equal(rotating.rewrap(a2), undefined, "already on the current KEK");
  const onlyNew = kr("k2", k2);
  assert.deepEqual(onlyNew.cipher("ns", [{ ...a2, revision: 5 }]).decrypt(ctBoth, "msg"), Buffer.from("y"), "same data key after re-wrap");
  assert.throws(() => onlyNew.unwrap(a), /wrapped by KEK "k1"/);
  assert.throws(() => old.unwrap({ ...a, namespace: "other" }), /does not unwrap/);
});

test("KEK material: 64 hex digits or base64 of 32 bytes, anything else refused naming the field", () => {
  const raw = randomBytes(32);
  assert.deepEqual(parseKeyMaterial(raw.toString("hex") + "\n", "f"), raw);
  assert.deepEqual(parseKeyMaterial(raw.toString("base64"), "f"), raw);
  assert.deepEqual(parseKeyMaterial(raw.toString("base64url"), "f"), raw);
  assert.throws(() => parseKeyMaterial("short", "security.kek.env (X)"), /security\.kek\.env \(X\): a KEK is 32 bytes/);
});

test("store wrapper over memstore: the backend holds ciphertext; Get, BatchGet, Scan, queue and stream answer plaintext; versions and CAS unchanged", async () => {
  const ring = kr("k1", randomBytes(32));
  const c = ring.cipher("ns", [ring.newDataKey("ns")]);
  const driver = await loadDriver("memstore");
  const inst = driver.create({}, { clock: systemClock, log: () => {} });
  const raw = inst.namespace("ns", limitsOf({ limits: {} } as never));
  const s = encryptStores(raw, c, () => {});
  const kv = s.keyvalue!;
  const v1 = await kv.set("a", Buffer.from("alpha"), {});
  assert.equal(await kv.set("a", Buffer.from("alpha2"), { expectedVersion: v1 }), v1 + 1);
  await assert.rejects(kv.set("a", Buffer.from("x"), { expectedVersion: v1 }), (e: any) => e.code === 9 || e.code === 10);
  assert.deepEqual((await kv.get("a"))!.value, Buffer.from("alpha2"));
  const stored = (await raw.keyvalue!.get("a"))!.value;
  assert.equal(Buffer.from(stored).includes(Buffer.from("alpha2")), false);
  assert.equal(stored[0], 1);
  await kv.batchSet!([{ key: "b", value: Buffer.from("beta") }], undefined);
  assert.deepEqual((await kv.batchGet!(["a", "b", "zz"])).map((r) => r && Buffer.from(r.value).toString()), ["alpha2", "beta", null]);
  assert.deepEqual((await kv.scan!("", "", 10, false)).items.map((i) => Buffer.from(i.value!).toString()), ["alpha2", "beta"]);
  await s.queue!.enqueue("q", Buffer.from("job"), {}, 0);
  const [m] = await s.queue!.dequeue("q", { maxMessages: 1, visibilityTimeoutMs: 1000, waitMs: 0 });
  assert.equal(Buffer.from(m!.payload).toString(), "job");
  await s.stream!.append("st", Buffer.from("rec"), {});
  assert.equal(Buffer.from((await s.stream!.read("st", 0, 10))[0]!.payload).toString(), "rec");
  // A value written past the wrapper (plaintext in the backend) is refused, not returned.
  await raw.keyvalue!.set("plain", Buffer.from("p"), {});
  await assert.rejects(kv.get("plain"), (e: any) => e.code === 15);
  await inst.close();
});
