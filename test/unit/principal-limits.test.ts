// Per-principal limits (server.per_principal, src/core/gateway.ts): calls in
// progress and long polls waiting are counted per authenticated principal,
// across connections, after authentication; past the limit a call is refused
// with RESOURCE_EXHAUSTED / PRISM_ERR_PRINCIPAL_LIMIT naming the limit, other
// principals are unaffected, and the count is released when calls settle.
// Calls are held open by a handler the test controls (no timing).
import { test } from "node:test";
import assert from "node:assert/strict";
import { startServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { RequestContext } from "../../src/core/context.js";
import { METHOD_BY_PATH, type MethodDef } from "../../src/core/methods.js";
import { PrismError } from "../../src/core/errors.js";
import { sha256KeyHash } from "../../src/auth/apikeys.js";
import { principalLimitsOf } from "../../src/ingress/limits.js";
import { perPrincipalSchema } from "../../src/config/schema.js";

const GET = METHOD_BY_PATH.get("/prism.v1.KeyValue/Get")!;
const DEQUEUE = METHOD_BY_PATH.get("/prism.v1.Queue/Dequeue")!;
const KEYS = { flood: "flood-key-1", batch: "batch-key-2", good: "good-key-3" };

/** KeyValue/Get whose handler waits until release() (same id, so the same permission). */
function heldGet(): { m: MethodDef; release(): void; started: () => number } {
  let started = 0;
  const waiting: (() => void)[] = [];
  const m: MethodDef = { ...GET, handler: () => new Promise((resolve) => { started++; waiting.push(() => resolve({})); }) };
  return { m, started: () => started, release: () => waiting.splice(0).forEach((f) => f()) };
}

function ctxOf(m: MethodDef, key: string): RequestContext {
  const ctx = new RequestContext(m, "internal", "test");
  ctx.credentials = { apiKey: key };
  return ctx;
}

async function refusal(p: Promise<unknown>): Promise<PrismError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof PrismError, String(e));
    return e;
  }
  assert.fail("the call was not refused");
}

test("server.per_principal: calls in progress and long polls are limited per principal, with overrides", { timeout: 20_000 }, async () => {
  const config = await validateConfig(
    {
      server: { per_principal: { max_in_flight: 3, max_long_polls: 2, principals: { "apikey:batch": { max_in_flight: 5 } } } },
      namespaces: [{ name: "default", backend: { type: "memstore" } }],
      auth: {
        api_keys: Object.entries(KEYS).map(([name, key]) => ({ name, hash: sha256KeyHash(key), roles: ["rw"] })),
        roles: { rw: [{ namespaces: ["*"], permissions: ["read", "write"] }] },
      },
    },
    "principal-limits-unit",
  );
  const server = await startServer({ config, grpc: false, http: false, log: () => {}, accessLog: false });
  const gw = server.gateway;
  const limited: string[] = [];
  const obs = gw.observer;
  if (obs !== undefined) obs.principalLimited = (l) => limited.push(l);
  const held = heldGet();
  try {
    // flood: 3 in progress, the 4th refused naming the limit (and only its own principal).
    const floods = [0, 1, 2].map(() => gw.unary(ctxOf(held.m, KEYS.flood), { namespace: "default", key: "k" }));
    while (held.started() < 3) await new Promise((r) => setImmediate(r));
    assert.deepEqual(gw.principalUsageOf("apikey:flood"), { inFlight: 3, longPolls: 0 });
    const e = await refusal(gw.unary(ctxOf(held.m, KEYS.flood), { namespace: "default", key: "k" }));
    assert.equal(e.code, 8);
    assert.equal(e.reason, "PRISM_ERR_PRINCIPAL_LIMIT");
    assert.equal(e.message, "apikey:flood has 3 calls in progress on this server, its limit (server.per_principal.max_in_flight); retry later");
    assert.equal(e.httpStatus, 429);

    // Another principal is not affected; one with an override gets its own limit (5).
    const good = gw.unary(ctxOf(held.m, KEYS.good), { namespace: "default", key: "k" });
    const batch = [0, 1, 2, 3, 4].map(() => gw.unary(ctxOf(held.m, KEYS.batch), { namespace: "default", key: "k" }));
    while (held.started() < 9) await new Promise((r) => setImmediate(r));
    const eb = await refusal(gw.unary(ctxOf(held.m, KEYS.batch), { namespace: "default", key: "k" }));
    assert.match(eb.message, /^apikey:batch has 5 calls in progress/);
    assert.deepEqual(gw.principalUsageOf("apikey:good"), { inFlight: 1, longPolls: 0 });

    // Long polls have their own per-principal budget (2 here), apart from the calls in progress.
    const polls = [0, 1].map((i) => gw.unary(ctxOf(DEQUEUE, KEYS.flood), { namespace: "default", queue: `q${i}`, waitSeconds: 20 }));
    while (gw.longPollsWaiting < 2) await new Promise((r) => setTimeout(r, 5));
    const ep = await refusal(gw.unary(ctxOf(DEQUEUE, KEYS.flood), { namespace: "default", queue: "q9", waitSeconds: 20 }));
    assert.match(ep.message, /^apikey:flood has 2 long polls waiting on this server, its limit \(server\.per_principal\.max_long_polls\)/);
    assert.deepEqual(gw.principalUsageOf("apikey:flood"), { inFlight: 3, longPolls: 2 });
    assert.deepEqual(limited, ["max_in_flight", "max_in_flight", "max_long_polls"]);
    assert.equal(gw.principalRefused, 3);

    // Settling releases the counts; the principal may call again.
    held.release();
    await Promise.all([...floods, good, ...batch]);
    assert.deepEqual(gw.principalUsageOf("apikey:flood"), { inFlight: 0, longPolls: 2 });
    const again = gw.unary(ctxOf(held.m, KEYS.flood), { namespace: "default", key: "k" });
    while (held.started() < 10) await new Promise((r) => setImmediate(r));
    held.release();
    await again;
    await gw.drain(5000);
    await Promise.all(polls);
    for (const k of ["apikey:flood", "apikey:good", "apikey:batch"]) assert.deepEqual(gw.principalUsageOf(k), { inFlight: 0, longPolls: 0 });
  } finally {
    held.release();
    await server.close();
  }
});

test("server.per_principal: principal names are validated; all-zero limits count nothing", () => {
  const bad = perPrincipalSchema.safeParse({ principals: { batch: { max_in_flight: 1 } } });
  assert.equal(bad.success, false);
  assert.match(JSON.stringify(bad.error?.issues), /must be <kind>:<id>/);
  assert.equal(principalLimitsOf(perPrincipalSchema.parse({})), undefined);
  assert.equal(principalLimitsOf(undefined), undefined);
  const l = principalLimitsOf(perPrincipalSchema.parse({ max_long_polls: 4, principals: { anonymous: { max_in_flight: 2 } } }))!;
  assert.deepEqual({ ...l, overrides: [...l.overrides] }, { maxInFlight: 0, maxLongPolls: 4, overrides: [["anonymous", { maxInFlight: 2, maxLongPolls: 4 }]] });
});

test("without a per_principal block: half the worker's capacity per principal when callers have identities, nothing without", async () => {
  const auth = {
    api_keys: [{ name: "a", hash: sha256KeyHash("a-key-123"), roles: ["rw"] }],
    roles: { rw: [{ namespaces: ["*"], permissions: ["read", "write"] }] },
  };
  const withAuth = await validateConfig({ server: { shedding: { max_in_flight: 800 }, max_long_polls: 300 }, namespaces: [], auth }, "defaults-auth");
  const s1 = await startServer({ config: withAuth, grpc: false, http: false, log: () => {}, accessLog: false });
  try {
    assert.equal(s1.gateway.principalLimits?.maxInFlight, 400);
    assert.equal(s1.gateway.principalLimits?.maxLongPolls, 150);
  } finally {
    await s1.close();
  }
  const noAuth = await validateConfig({ server: { shedding: { max_in_flight: 800 } }, namespaces: [] }, "defaults-none");
  const s2 = await startServer({ config: noAuth, grpc: false, http: false, log: () => {}, accessLog: false });
  try {
    assert.equal(s2.gateway.principalLimits, undefined);
  } finally {
    await s2.close();
  }
});
