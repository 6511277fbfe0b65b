/**
 * JWKS caching and refresh (src/auth/jwt.ts, auth.jwt.jwks_url): Prism
 * in-process against a JWKS served by the test (test/helpers/test-idp.ts,
 * node:http, counting the requests it answers), called over HTTP with
 * distinct tokens (so the verified-token cache does not hide verifications).
 *
 * - Many verifications, sequential and concurrent, fetch the key set once.
 * - The test rotates the JWKS (a new key in, the old one out): a token
 *   signed by the new key — a kid not in the cached set — makes Prism fetch
 *   the set again and accept it; later new-key tokens are verified from the
 *   refreshed cache; a new token of the retired key is refused.
 * - jwks_cooldown_ms bounds refetching: within the cooldown (10 minutes here,
 *   far longer than the test) neither a key published after the first fetch
 *   nor a flood of tokens with unknown kids makes Prism fetch again.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startServer, type RunningServer } from "../../src/server.js";
import { configSchema, type PrismConfig } from "../../src/config/schema.js";
import { AUDIENCE, ISSUER, TestIdp } from "../helpers/test-idp.js";

const OK = 0, UNAUTHENTICATED = 16;
const NS = "team-a.jwks";

function configWith(jwksUrl: string, cooldownMs: number): PrismConfig {
  return configSchema.parse({
    namespaces: [{ name: NS, backend: { type: "memstore" } }],
    auth: {
      jwt: { issuer: ISSUER, audience: AUDIENCE, jwks_url: jwksUrl, jwks_cooldown_ms: cooldownMs },
      roles: { rw: [{ namespaces: ["team-a.*"], permissions: ["read", "write"] }] },
      grants: [{ role: "rw", groups: ["team-a"] }],
    },
  }) as unknown as PrismConfig;
}

async function get(port: number, token: string): Promise<{ code: number; message: string }> {
  const r = await fetch(`http://127.0.0.1:${port}/v1/KeyValue/Get`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${token}` }, body: JSON.stringify({ namespace: NS, key: "k" }) });
  const j = (await r.json()) as { error?: { code: number; message: string } };
  return r.ok ? { code: OK, message: "" } : { code: j.error!.code, message: j.error!.message };
}

let serial = 0;
/** A token no earlier call used (its own sub), so Prism has to verify its signature. */
const fresh = (idp: TestIdp, kid: string) => idp.sign(kid, { sub: `user-${++serial}`, claims: { groups: ["team-a"] } });

describe("JWKS: fetched once, refetched on an unknown kid after rotation", () => {
  let idp: TestIdp;
  let server: RunningServer;

  before(async () => {
    idp = await TestIdp.start();
    await idp.addKey("old", "ES256");
    await idp.addKey("new", "EdDSA", false); // rotated in by the test
    // Cooldown 0: an unknown kid refetches at once, so the test needs no waiting.
    server = await startServer({ config: configWith(idp.jwksUrl, 0), host: "127.0.0.1", grpcPort: 0, httpPort: 0, log: () => {} });
  });
  after(async () => {
    await server?.close();
    await idp?.close();
  });

  test("60 distinct tokens (20 one after another, 40 at once) → one JWKS fetch", async () => {
    const start = idp.fetches;
    for (let i = 0; i < 20; i++) {
      const r = await get(server.httpPort, await fresh(idp, "old"));
      assert.equal(r.code, OK, r.message);
    }
    const burst = await Promise.all(Array.from({ length: 40 }, () => fresh(idp, "old")));
    const rs = await Promise.all(burst.map((t) => get(server.httpPort, t)));
    assert.deepEqual(rs.filter((r) => r.code !== OK), []);
    assert.equal(idp.fetches - start, 1, "the key set is fetched once and cached");
  });

  test("rotation: a token of the new key (kid not cached) refetches the set and is accepted; then the cache serves it", async () => {
    idp.publish("new");
    idp.unpublish("old");
    const before = idp.fetches;
    const r = await get(server.httpPort, await fresh(idp, "new"));
    assert.equal(r.code, OK, r.message);
    assert.equal(idp.fetches - before, 1, "exactly one refetch for the unknown kid");
    for (let i = 0; i < 15; i++) assert.equal((await get(server.httpPort, await fresh(idp, "new"))).code, OK);
    assert.equal(idp.fetches - before, 1, "later tokens of the new key are verified from the refreshed set");
    // The old key left the set: a token it signs now names a kid Prism no longer holds → refused.
    const retired = await get(server.httpPort, await fresh(idp, "old"));
    assert.equal(retired.code, UNAUTHENTICATED);
    assert.match(retired.message, /no key of the issuer matches its kid/);
  });
});

describe("JWKS: jwks_cooldown_ms bounds refetching on unknown kids", () => {
  let idp: TestIdp;
  let server: RunningServer;

  before(async () => {
    idp = await TestIdp.start();
    await idp.addKey("k1", "RS256");
    await idp.addKey("k2", "ES256", false);
    server = await startServer({ config: configWith(idp.jwksUrl, 600_000), host: "127.0.0.1", grpcPort: 0, httpPort: 0, log: () => {} });
  });
  after(async () => {
    await server?.close();
    await idp?.close();
  });

  test("within the cooldown, unknown kids (a key published since, or 30 made-up kids) do not fetch again", async () => {
    assert.equal((await get(server.httpPort, await fresh(idp, "k1"))).code, OK);
    const afterFirst = idp.fetches;
    assert.equal(afterFirst, 1);
    idp.publish("k2");
    const r = await get(server.httpPort, await fresh(idp, "k2"));
    assert.equal(r.code, UNAUTHENTICATED, "not refetched inside the cooldown, so k2 is still unknown");
    const unknown = await Promise.all(
      Array.from({ length: 30 }, async (_, i) => {
        await idp.addKey(`made-up-${i}`, "ES256", false);
        return get(server.httpPort, await fresh(idp, `made-up-${i}`));
      }),
    );
    assert.deepEqual([...new Set(unknown.map((u) => u.code))], [UNAUTHENTICATED]);
    assert.equal(idp.fetches, afterFirst, "no fetch for any unknown kid inside the cooldown");
    assert.equal((await get(server.httpPort, await fresh(idp, "k1"))).code, OK, "the cached keys still verify");
  });
});
