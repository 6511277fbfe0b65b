// Unfinished request bytes per principal (server.per_principal.max_buffered_bytes): which key the ingresses
// charge a body to before it is decoded (AuthGate.bufferKey: verified principals only, never the one a
// forged credential claims), the accounting (PrincipalBytes), and the defaults. The ingresses' use of it
// is covered in test/e2e/principal-buffered-bytes.test.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes, scryptSync } from "node:crypto";
import { createAuth } from "../../src/auth/gate.js";
import { authSchema } from "../../src/auth/config.js";
import { sha256KeyHash } from "../../src/auth/apikeys.js";
import { mtlsIdentityGate } from "../../src/auth/mtls.js";
import { UNVERIFIED_PRINCIPAL } from "../../src/auth/types.js";
import { defaultPerPrincipal, PrincipalBytes, principalBytesOf } from "../../src/ingress/limits.js";
import { perPrincipalSchema } from "../../src/config/schema.js";

const salt = randomBytes(16);
const scryptHash = `scrypt:${salt.toString("hex")}:${scryptSync("slow-key-1234", salt, 64, { N: 16384, r: 8, p: 1, maxmem: 64 * 1024 * 1024 }).toString("hex")}`;

function gate(anonymous?: string) {
  return createAuth(
    authSchema.parse({
      api_keys: [
        { name: "victim", hash: sha256KeyHash("victim-key-123"), roles: ["rw"] },
        { name: "slow", hash: scryptHash, roles: ["rw"] },
      ],
      roles: { rw: [{ namespaces: ["*"], permissions: ["read"] }] },
      ...(anonymous !== undefined ? { anonymous } : {}),
    }),
  );
}

test("bufferKey: verified credentials name their principal; anything unverified shares one bucket", async () => {
  const g = gate();
  assert.equal(g.bufferKey({ apiKey: "victim-key-123" }), "apikey:victim");
  // Forged or unknown: never the principal it might claim, never a bucket of its own.
  assert.equal(g.bufferKey({ apiKey: "victim-key-124" }), UNVERIFIED_PRINCIPAL);
  assert.equal(g.bufferKey({ apiKey: "" }), UNVERIFIED_PRINCIPAL);
  assert.equal(g.bufferKey({ bearer: "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ2aWN0aW0ifQ." }), UNVERIFIED_PRINCIPAL);
  assert.equal(g.bufferKey(undefined), UNVERIFIED_PRINCIPAL);
  // A key only scrypt verifies: unverified (no scrypt before the body) until a call has verified it.
  assert.equal(g.bufferKey({ apiKey: "slow-key-1234" }), UNVERIFIED_PRINCIPAL);
  const p = await g.authenticate({ apiKey: "slow-key-1234" });
  assert.equal(p.id, "slow");
  assert.equal(g.bufferKey({ apiKey: "slow-key-1234" }), "apikey:slow");
  // The anonymous role, for calls without credentials.
  assert.equal(gate("rw").bufferKey(undefined), "anonymous");
  // mTLS only: the verified certificate names the caller.
  const m = mtlsIdentityGate("cn");
  assert.equal(m.bufferKey({ cert: { subjectCN: "svc-a", san: [], fingerprint256: "AA" } }), "mtls:svc-a");
  assert.equal(m.bufferKey({ cert: { san: [], fingerprint256: "AA" } }), UNVERIFIED_PRINCIPAL);
  assert.equal(m.bufferKey(undefined), UNVERIFIED_PRINCIPAL);
});

test("PrincipalBytes: per-key limits with overrides, released to zero", () => {
  const cfg = perPrincipalSchema.parse({ max_buffered_bytes: 100, principals: { "apikey:big": { max_buffered_bytes: 300 }, "apikey:free": { max_buffered_bytes: 0 } } });
  const pb = principalBytesOf(cfg, gate())!;
  assert.ok(pb instanceof PrincipalBytes);
  assert.equal(pb.keyOf({ apiKey: "victim-key-123" }), "apikey:victim");
  assert.ok(pb.reserve("apikey:a", 60));
  assert.equal(pb.reserve("apikey:a", 41), false);
  assert.ok(pb.reserve("apikey:b", 100), "another principal has its own budget");
  assert.ok(pb.reserve("apikey:big", 300));
  assert.ok(pb.reserve("apikey:free", 10_000), "0: no limit");
  assert.equal(pb.refused, 1);
  pb.release("apikey:a", 60);
  assert.equal(pb.usedBy("apikey:a"), 0);
  assert.ok(pb.reserve("apikey:a", 100));
  assert.match(pb.refusal("apikey:a").message, /^apikey:a has more than 100 bytes of unfinished requests buffered on this server, its limit \(server\.per_principal\.max_buffered_bytes\); retry later$/);
  // Nothing to count: no limit, or no gate that names principals.
  assert.equal(principalBytesOf(perPrincipalSchema.parse({ max_in_flight: 3 }), gate()), undefined);
  assert.equal(principalBytesOf(cfg, undefined), undefined);
});

test("defaults: with identities, half the worker's budget of unfinished request bytes per principal", () => {
  assert.equal(defaultPerPrincipal(true, 800, 300, 128 * 1024 * 1024)?.max_buffered_bytes, 64 * 1024 * 1024);
  assert.equal(defaultPerPrincipal(false, 800, 300, 128 * 1024 * 1024), undefined);
  assert.equal(perPrincipalSchema.parse({}).max_buffered_bytes, 0);
});
