/**
 * RBAC grants through JWT claims, end to end: Prism in-process with a JWKS
 * from the test identity provider (test/helpers/test-idp.ts), called over
 * HTTP/JSON and gRPC with signed tokens. For each kind of grant — the token's
 * own `roles` claim, a `groups` grant, a `scopes` grant (OAuth's
 * space-separated `scope` string), a `claims` grant (exact value, a value
 * inside an array claim, a dotted path into a nested claim, several claims
 * that must all match), and a grant listing groups and scopes together — a
 * token carrying the claim is allowed and the same token without it (same
 * sub, issuer, audience, key) is refused PERMISSION_DENIED naming namespace
 * and permission; wildcard namespace patterns apply through claims; the
 * claim names are configurable (roles_claim, groups_claim, scope_claim,
 * including dotted paths and null to ignore a claim).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Client, credentials as grpcCredentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { startServer, type RunningServer } from "../../src/server.js";
import { configSchema, type PrismConfig } from "../../src/config/schema.js";
import { methodByName } from "../../src/core/methods.js";
import { encoder } from "../../src/ingress/grpc-codec.js";
import { AUDIENCE, ISSUER, TestIdp } from "../helpers/test-idp.js";

const OK = 0, PERMISSION_DENIED = 7, UNAUTHENTICATED = 16;
const GET = methodByName("KeyValue", "Get")!;

const NAMESPACES = ["roles.ns", "groups.ns", "scope.a", "scope.b.c", "scope", "pay.orders", "pay.refunds.eu", "payx.orders", "realm.ns", "tier.ns", "combo.ns", "other"];

const ROLES = {
  "kv-reader": [{ namespaces: ["roles.ns"], permissions: ["read"] }],
  "grp-writer": [{ namespaces: ["groups.ns"], permissions: ["read", "write"] }],
  "scope-reader": [{ namespaces: ["scope.*"], permissions: ["read"] }],
  "pay-rw": [{ namespaces: ["pay.*"], permissions: ["read", "write"] }],
  "realm-reader": [{ namespaces: ["realm.ns"], permissions: ["read"] }],
  "tier-reader": [{ namespaces: ["tier.ns"], permissions: ["read"] }],
  "combo-reader": [{ namespaces: ["combo.ns"], permissions: ["read"] }],
  // Granted by nothing: naming it in a token's roles claim is the only way to hold it.
  "roles-only": [{ namespaces: ["other"], permissions: ["read"] }],
};

const GRANTS = [
  { role: "grp-writer", groups: ["writers"] },
  { role: "scope-reader", scopes: ["prism:read"] },
  { role: "pay-rw", claims: { department: "payments" } },
  { role: "realm-reader", claims: { "realm_access.roles": "ops" } },
  { role: "tier-reader", claims: { tier: "gold", verified: true } },
  { role: "combo-reader", groups: ["g2"], scopes: ["s2"] },
];

function configWith(jwtExtra: Record<string, unknown> = {}): PrismConfig {
  return configSchema.parse({
    namespaces: NAMESPACES.map((name) => ({ name, backend: { type: "memstore" } })),
    auth: { jwt: { issuer: ISSUER, audience: AUDIENCE, jwks_url: "http://127.0.0.1:1/unset", ...jwtExtra }, roles: ROLES, grants: GRANTS },
  }) as unknown as PrismConfig;
}

interface Result {
  code: number;
  message: string;
  status: number;
}

async function http(port: number, token: string, method: "Get" | "Set", namespace: string): Promise<Result> {
  const body = method === "Get" ? { namespace, key: "k" } : { namespace, key: "k", value: Buffer.from("v").toString("base64") };
  const r = await fetch(`http://127.0.0.1:${port}/v1/KeyValue/${method}`, { method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${token}` }, body: JSON.stringify(body) });
  const j = (await r.json()) as { error?: { code: number; message: string } };
  return r.ok ? { code: OK, message: "", status: r.status } : { code: j.error!.code, message: j.error!.message, status: r.status };
}

function grpcGet(client: Client, token: string, namespace: string): Promise<{ code: number; message: string }> {
  const md = new Metadata();
  md.set("authorization", `Bearer ${token}`);
  return new Promise((resolve) => {
    client.makeUnaryRequest(GET.path, encoder(GET.requestType) as (v: any) => Buffer, (b: Buffer) => GET.responseType.decode(b), { namespace, key: "k" }, md, {}, (err: ServiceError | null) =>
      resolve(err ? { code: err.code, message: err.details } : { code: OK, message: "" }),
    );
  });
}

describe("RBAC through JWT claims (roles, groups, scope, claims)", () => {
  let idp: TestIdp;
  let server: RunningServer;
  let grpc: Client;
  const tok = (claims: Record<string, unknown>, sub = "carol") => idp.sign("k1", { sub, claims });

  before(async () => {
    idp = await TestIdp.start();
    await idp.addKey("k1", "ES256");
    const cfg = configWith();
    cfg.auth!.jwt!.jwks_url = idp.jwksUrl;
    server = await startServer({ config: cfg, host: "127.0.0.1", grpcPort: 0, httpPort: 0, log: () => {} });
    grpc = new Client(`127.0.0.1:${server.grpcPort}`, grpcCredentials.createInsecure());
  });
  after(async () => {
    grpc?.close();
    await server?.close();
    await idp?.close();
  });

  /** The token is allowed `method` on `ns` over HTTP (and, for Get, over gRPC). */
  async function allowed(token: string, method: "Get" | "Set", ns: string) {
    const r = await http(server.httpPort, token, method, ns);
    assert.equal(r.code, OK, `${method} ${ns}: ${r.message}`);
    if (method === "Get") assert.equal((await grpcGet(grpc, token, ns)).code, OK, `gRPC Get ${ns}`);
  }
  /** The token is authenticated but refused, naming namespace and permission. */
  async function denied(token: string, method: "Get" | "Set", ns: string, sub = "carol") {
    const r = await http(server.httpPort, token, method, ns);
    assert.equal(r.code, PERMISSION_DENIED, `${method} ${ns}: ${r.code} ${r.message}`);
    assert.equal(r.status, 403);
    assert.equal(r.message, `jwt:${sub} lacks permission "${method === "Get" ? "read" : "write"}" on namespace "${ns}"`);
    if (method === "Get") assert.equal((await grpcGet(grpc, token, ns)).code, PERMISSION_DENIED, `gRPC Get ${ns}`);
  }

  test("the token's own roles claim: a defined role it names is held; without it, refused", async () => {
    await allowed(await tok({ roles: ["kv-reader"] }), "Get", "roles.ns");
    await denied(await tok({}), "Get", "roles.ns");
    await denied(await tok({ roles: ["kv-reader"] }), "Set", "roles.ns"); // the role reads only
    // A role no grant gives: only the claim confers it. An undefined role in the claim confers nothing.
    await allowed(await tok({ roles: ["roles-only", "no-such-role"] }), "Get", "other");
    await denied(await tok({ roles: ["no-such-role"] }), "Get", "other");
    // A space-separated string works as a list too.
    await allowed(await tok({ roles: "kv-reader roles-only" }), "Get", "other");
  });

  test("a groups grant: a token in the group reads and writes; out of it (or no groups claim), refused", async () => {
    const writer = await tok({ groups: ["readers", "writers"] });
    await allowed(writer, "Get", "groups.ns");
    await allowed(writer, "Set", "groups.ns");
    for (const t of [await tok({ groups: ["readers"] }), await tok({}), await tok({ groups: "writersx" })]) {
      await denied(t, "Get", "groups.ns");
      await denied(t, "Set", "groups.ns");
    }
    await denied(writer, "Get", "roles.ns"); // the group gives nothing elsewhere
  });

  test("a scopes grant from the space-separated scope claim, with a wildcard namespace (scope.*)", async () => {
    const t = await tok({ scope: "openid prism:read profile" });
    await allowed(t, "Get", "scope.a");
    await allowed(t, "Get", "scope.b.c");
    await denied(t, "Get", "scope"); // scope.* needs something after the dot
    await denied(t, "Set", "scope.a"); // read only
    for (const without of [await tok({ scope: "openid profile" }), await tok({ scope: "prism:readx prism:" }), await tok({})]) await denied(without, "Get", "scope.a");
    // The scope is a claim of the token, not a group or role of the same name.
    await denied(await tok({ groups: ["prism:read"], roles: ["prism:read"] }), "Get", "scope.a");
  });

  test("a claims grant (department: payments) through a wildcard namespace (pay.*)", async () => {
    const t = await tok({ department: "payments" });
    for (const ns of ["pay.orders", "pay.refunds.eu"]) {
      await allowed(t, "Get", ns);
      await allowed(t, "Set", ns);
    }
    await denied(t, "Get", "payx.orders");
    await denied(t, "Set", "other");
    // An array claim matches when it contains the value; another value, another type or no claim does not.
    await allowed(await tok({ department: ["hr", "payments"] }), "Set", "pay.orders");
    for (const without of [await tok({ department: "payments-eu" }), await tok({ department: ["hr"] }), await tok({ department: { payments: true } }), await tok({})]) {
      await denied(without, "Get", "pay.orders");
      await denied(without, "Set", "pay.refunds.eu");
    }
  });

  test("a claims grant on a dotted path (realm_access.roles, Keycloak's nesting); every listed claim must match", async () => {
    await allowed(await tok({ realm_access: { roles: ["user", "ops"] } }), "Get", "realm.ns");
    await denied(await tok({ realm_access: { roles: ["user"] } }), "Get", "realm.ns");
    await denied(await tok({ realm_access: "ops" }), "Get", "realm.ns");
    // tier: gold AND verified: true (a boolean, not the string "true").
    await allowed(await tok({ tier: "gold", verified: true }), "Get", "tier.ns");
    await denied(await tok({ tier: "gold" }), "Get", "tier.ns");
    await denied(await tok({ tier: "gold", verified: "true" }), "Get", "tier.ns");
    await denied(await tok({ tier: "silver", verified: true }), "Get", "tier.ns");
  });

  test("a grant listing groups and scopes needs both", async () => {
    await allowed(await tok({ groups: ["g2"], scope: "s2" }), "Get", "combo.ns");
    await denied(await tok({ groups: ["g2"] }), "Get", "combo.ns");
    await denied(await tok({ scope: "s2" }), "Get", "combo.ns");
  });

  test("edited claims do not verify: adding a claim to a signed token is UNAUTHENTICATED, not a grant", async () => {
    const t = await tok({});
    const [h, p, s] = t.split(".") as [string, string, string];
    const payload = JSON.parse(Buffer.from(p, "base64url").toString());
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...payload, department: "payments" })).toString("base64url")}.${s}`;
    assert.equal((await http(server.httpPort, forged, "Get", "pay.orders")).code, UNAUTHENTICATED);
  });
});

describe("configurable claim names: roles_claim, groups_claim, scope_claim", () => {
  let idp: TestIdp;
  let server: RunningServer;

  before(async () => {
    idp = await TestIdp.start();
    await idp.addKey("k1", "EdDSA");
    const cfg = configWith({ roles_claim: "resource_access.prism.roles", groups_claim: null, scope_claim: "scp" });
    cfg.auth!.jwt!.jwks_url = idp.jwksUrl;
    server = await startServer({ config: cfg, host: "127.0.0.1", grpcPort: 0, httpPort: 0, log: () => {} });
  });
  after(async () => {
    await server?.close();
    await idp?.close();
  });

  const code = async (claims: Record<string, unknown>, ns: string) => (await http(server.httpPort, await idp.sign("k1", { sub: "dave", claims }), "Get", ns)).code;

  test("roles from a nested claim, scopes from an array claim named scp; the default names are not read", async () => {
    assert.equal(await code({ resource_access: { prism: { roles: ["kv-reader"] } } }, "roles.ns"), OK);
    assert.equal(await code({ roles: ["kv-reader"] }, "roles.ns"), PERMISSION_DENIED);
    assert.equal(await code({ scp: ["prism:read"] }, "scope.a"), OK);
    assert.equal(await code({ scope: "prism:read" }, "scope.a"), PERMISSION_DENIED);
  });

  test("groups_claim: null ignores the groups claim (a groups grant cannot match)", async () => {
    assert.equal(await code({ groups: ["writers"] }, "groups.ns"), PERMISSION_DENIED);
  });
});
