/**
 * Authentication and authorization end to end (src/auth): Prism in-process
 * with an `auth:` block whose JWKS comes from a test identity provider
 * (test/helpers/test-idp.ts: RS256, ES256 and EdDSA keys generated here),
 * called with raw clients over all three ingresses: grpc-js (against both gRPC
 * servers), fetch (HTTP/JSON) and `ws` (upgrade headers and AUTH frames).
 * Valid tokens pass; expired, early, foreign-issuer, foreign-audience,
 * badly signed, alg none and unknown-kid tokens are UNAUTHENTICATED / 401;
 * a key rotated into the JWKS after start is accepted; a caller without the
 * permission gets the same PERMISSION_DENIED / 403 for an existing namespace
 * and an unknown one; 200+ forged and mutated tokens are all refused; API
 * keys; an OPA policy server the test runs is followed, and failing closed.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Client, credentials as grpcCredentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { WebSocket } from "ws";
import { SignJWT, exportSPKI, generateKeyPair } from "jose";
import { startServer, type RunningServer } from "../../src/server.js";
import { configSchema, type PrismConfig } from "../../src/config/schema.js";
import { methodByName } from "../../src/core/methods.js";
import { encoder } from "../../src/ingress/grpc-codec.js";
import { prism } from "../../src/gen/prism.js";
import { sha256KeyHash } from "../../src/auth/apikeys.js";
import { AuthGate } from "../../src/auth/gate.js";
import { authSchema } from "../../src/auth/config.js";
import { RequestContext } from "../../src/core/context.js";
import { PrismError } from "../../src/core/errors.js";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes, scryptSync } from "node:crypto";
import { AUDIENCE, ISSUER, TestIdp, b64url } from "../helpers/test-idp.js";

const v1 = prism.v1;
const OK = 0, PERMISSION_DENIED = 7, UNAVAILABLE = 14, UNAUTHENTICATED = 16;
const API_KEY = "prism-test-key-5b1f0c2e9a";
const GET = methodByName("KeyValue", "Get")!;

type Cred = { bearer?: string; apiKey?: string; authorization?: string } | undefined;
interface Result {
  code: number;
  message: string;
  /** HTTP only. */
  status?: number;
  wwwAuthenticate?: string | null;
}
type Ingress = "grpc" | "http" | "ws";

function configWith(auth: unknown, grpcServer: "http2" | "grpc-js" = "http2"): PrismConfig {
  const cfg = configSchema.parse({
    server: { grpc_server: grpcServer },
    namespaces: [
      { name: "team-a.orders", backend: { type: "memstore" } },
      { name: "team-a.opa-denied", backend: { type: "memstore" } },
      { name: "orders", backend: { type: "memstore" } },
    ],
    auth,
  }) as unknown as PrismConfig;
  return cfg;
}

const authBlock = (jwksUrl: string, extra: Record<string, unknown> = {}) => ({
  jwt: { issuer: ISSUER, audience: AUDIENCE, jwks_url: jwksUrl, clock_skew_s: 5, jwks_cooldown_ms: 0 },
  api_keys: [{ name: "ci", hash: sha256KeyHash(API_KEY), roles: ["team-a-rw"] }],
  roles: { "team-a-rw": [{ namespaces: ["team-a.*"], permissions: ["read", "write"] }] },
  grants: [{ role: "team-a-rw", groups: ["team-a"] }],
  ...extra,
});

// ------------------------------------------------------------------ raw clients

function grpcMetadata(cred: Cred): Metadata {
  const md = new Metadata();
  if (cred?.authorization !== undefined) md.set("authorization", cred.authorization);
  if (cred?.bearer !== undefined) md.set("authorization", `Bearer ${cred.bearer}`);
  if (cred?.apiKey !== undefined) md.set("x-api-key", cred.apiKey);
  return md;
}

function grpcGet(client: Client, cred: Cred, namespace: string): Promise<Result> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(GET.path, encoder(GET.requestType) as (v: any) => Buffer, (b: Buffer) => GET.responseType.decode(b), { namespace, key: "k" }, grpcMetadata(cred), {}, (err: ServiceError | null) =>
      resolve(err ? { code: err.code, message: err.details } : { code: OK, message: "" }),
    );
  });
}

function httpHeaders(cred: Cred): Record<string, string> {
  const h: Record<string, string> = { "content-type": "application/json" };
  if (cred?.authorization !== undefined) h.authorization = cred.authorization;
  if (cred?.bearer !== undefined) h.authorization = `Bearer ${cred.bearer}`;
  if (cred?.apiKey !== undefined) h["x-api-key"] = cred.apiKey;
  return h;
}

async function httpGet(port: number, cred: Cred, namespace: string): Promise<Result> {
  const r = await fetch(`http://127.0.0.1:${port}/v1/KeyValue/Get`, { method: "POST", headers: httpHeaders(cred), body: JSON.stringify({ namespace, key: "k" }) });
  const body = (await r.json()) as { error?: { code: number; message: string } };
  if (r.ok) return { code: OK, message: "", status: r.status };
  return { code: body.error!.code, message: body.error!.message, status: r.status, wwwAuthenticate: r.headers.get("www-authenticate") };
}

const REQUEST = 1, AUTH = 3, RESPONSE = 1, ERROR = 2;

function frame(kind: number, id: number, method: number, body: Uint8Array): Buffer {
  const h = Buffer.alloc(8);
  h[0] = kind;
  h.writeUInt32LE(id, 2);
  h.writeUInt16LE(method, 6);
  return Buffer.concat([h, body]);
}

/** A WebSocket client that answers frames by request id. */
class Ws {
  private waiting = new Map<number, (f: { kind: number; body: Buffer }) => void>();
  private nextId = 1;
  private constructor(readonly ws: WebSocket) {
    ws.on("message", (d: Buffer) => {
      const id = d.readUInt32LE(2);
      this.waiting.get(id)?.({ kind: d[0]!, body: d.subarray(6) });
      this.waiting.delete(id);
    });
    ws.on("error", () => {});
  }
  static open(port: number, cred?: Cred): Promise<Ws> {
    const headers = cred === undefined ? {} : httpHeaders(cred);
    delete headers["content-type"];
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/ws`, { headers });
      ws.once("open", () => resolve(new Ws(ws)));
      ws.once("error", reject);
    });
  }
  private send(kind: number, method: number, body: Uint8Array): Promise<Result & { body: Buffer }> {
    const id = this.nextId++;
    const p = new Promise<{ kind: number; body: Buffer }>((resolve) => this.waiting.set(id, resolve));
    this.ws.send(frame(kind, id, method, body));
    return p.then((f) => {
      if (f.kind === RESPONSE) return { code: OK, message: "", body: f.body };
      assert.equal(f.kind, ERROR);
      const s = v1.Status.decode(f.body);
      return { code: s.code, message: s.message, body: f.body };
    });
  }
  get(namespace: string): Promise<Result> {
    return this.send(REQUEST, v1.Method.KV_GET, v1.GetRequest.encode({ namespace, key: "k" }).finish());
  }
  async auth(cred: { bearer?: string; apiKey?: string }): Promise<Result & { principal?: string }> {
    const r = await this.send(AUTH, 0, v1.AuthFrame.encode({ bearer: cred.bearer ?? "", apiKey: cred.apiKey ?? "" }).finish());
    return r.code === OK ? { ...r, principal: v1.AuthResult.decode(r.body).principal } : r;
  }
  close(): void {
    this.ws.close();
  }
}

async function wsGet(port: number, cred: Cred, namespace: string): Promise<Result> {
  const c = await Ws.open(port, cred);
  try {
    return await c.get(namespace);
  } finally {
    c.close();
  }
}

// ------------------------------------------------------------------ forgery

/** Deterministic pseudo-random numbers (xorshift), so a failure reproduces. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

function flipBit(segment: string, rand: () => number): string {
  const b = Buffer.from(segment, "base64url");
  if (b.length === 0) return "AA";
  const i = Math.floor(rand() * b.length);
  b[i]! ^= 1 << Math.floor(rand() * 8);
  return b64url(b);
}

/** Mutations of one valid token: bit flips in each segment, swapped and broken segments, edited claims, other algorithms. */
async function forgeries(token: string, seed: number, foreignKey: CryptoKey, foreignAlg: string, publicKeyPem: string): Promise<string[]> {
  const rand = rng(seed);
  const [h, p, s] = token.split(".") as [string, string, string];
  const header = JSON.parse(Buffer.from(h, "base64url").toString());
  const payload = JSON.parse(Buffer.from(p, "base64url").toString());
  const out: string[] = [];
  for (let i = 0; i < 18; i++) out.push(`${flipBit(h, rand)}.${p}.${s}`);
  for (let i = 0; i < 18; i++) out.push(`${h}.${flipBit(p, rand)}.${s}`);
  for (let i = 0; i < 18; i++) out.push(`${h}.${p}.${flipBit(s, rand)}`);
  out.push(`${p}.${h}.${s}`, `${h}.${s}.${p}`, `${s}.${p}.${h}`, `${h}.${p}`, `${h}.${p}.`, `${h}.${p}.${s}.${s}`, `.${p}.${s}`, `${h}..${s}`);
  out.push(`${h}.${p}.${s.slice(0, -4)}`, `${h}.${p}.${s}AAAA`, `${h}.${p}.${Buffer.from(s, "base64url").toString("base64")}`);
  // Other spellings of the same signed bytes (base64 padding): not the compact form, refused. (Whitespace
  // around a header value is not part of it, RFC 9110, so " token" is the token itself.)
  out.push(`${h}.${p}.${s}=`, `${h}.${p}.${s}==`, `${h}=.${p}.${s}`, `${h}.${p}==.${s}`);
  // Claims edited, signature kept.
  const edit = (changes: Record<string, unknown>) => `${h}.${b64url(JSON.stringify({ ...payload, ...changes }))}.${s}`;
  out.push(edit({ sub: "mallory" }), edit({ exp: payload.exp + 86400 }), edit({ groups: ["team-a", "admins"] }), edit({ aud: "other" }), edit({ iss: "https://evil" }), edit({ roles: ["team-a-rw"] }));
  // Header edited: alg none (with and without signature), another algorithm, HS256 with the public key as the secret.
  const hdr = (changes: Record<string, unknown>) => b64url(JSON.stringify({ ...header, ...changes }));
  out.push(`${hdr({ alg: "none" })}.${p}.`, `${hdr({ alg: "none" })}.${p}.${s}`, `${hdr({ alg: "NONE" })}.${p}.`, `${hdr({ alg: header.alg === "ES256" ? "RS256" : "ES256" })}.${p}.${s}`);
  out.push(`${hdr({ kid: "no-such-kid" })}.${p}.${s}`, `${hdr({ jku: "http://127.0.0.1:1/evil" })}.${p}.${s}`);
  out.push(await new SignJWT(payload).setProtectedHeader({ alg: "HS256", kid: header.kid }).sign(new TextEncoder().encode(publicKeyPem)));
  // Re-signed with a foreign key under the same kid.
  out.push(await new SignJWT(payload).setProtectedHeader({ alg: foreignAlg, kid: header.kid }).sign(foreignKey));
  out.push(await new SignJWT({ ...payload, sub: "mallory" }).setProtectedHeader({ alg: foreignAlg, kid: header.kid }).sign(foreignKey));
  return out.filter((t) => t !== token);
}

// ------------------------------------------------------------------ the tests

describe("auth over gRPC, HTTP and WebSocket", () => {
  let idp: TestIdp;
  let server: RunningServer;
  let grpc: Client;
  const tokens: Record<string, string> = {};
  let foreign: { privateKey: CryptoKey };

  before(async () => {
    idp = await TestIdp.start();
    await idp.addKey("rsa1", "RS256");
    await idp.addKey("ec1", "ES256");
    await idp.addKey("ed1", "EdDSA");
    await idp.addKey("rsa2", "RS256", false); // rotated in later
    foreign = await generateKeyPair("RS256");
    server = await startServer({ config: configWith(authBlock(idp.jwksUrl)), host: "127.0.0.1", grpcPort: 0, httpPort: 0, log: () => {} });
    grpc = new Client(`127.0.0.1:${server.grpcPort}`, grpcCredentials.createInsecure());
    const team = { claims: { groups: ["team-a"] } };
    tokens.rs256 = await idp.sign("rsa1", team);
    tokens.es256 = await idp.sign("ec1", team);
    tokens.eddsa = await idp.sign("ed1", team);
    tokens.expired = await idp.sign("rsa1", { ...team, expIn: -120 });
    tokens.expiredWithinSkew = await idp.sign("ec1", { ...team, expIn: -2 });
    tokens.notYetValid = await idp.sign("rsa1", { ...team, nbfIn: 120 });
    tokens.noExp = await idp.sign("rsa1", { ...team, expIn: null });
    tokens.wrongIssuer = await idp.sign("rsa1", { ...team, iss: "https://other-idp.test" });
    tokens.wrongAudience = await idp.sign("rsa1", { ...team, aud: "not-prism" });
    tokens.wrongSignature = await idp.sign("rsa1", team, foreign.privateKey);
    tokens.algNone = `${b64url(JSON.stringify({ alg: "none", typ: "JWT" }))}.${tokens.rs256.split(".")[1]}.`;
    tokens.unknownKid = await new SignJWT({ groups: ["team-a"] }).setProtectedHeader({ alg: "RS256", kid: "never-published" }).setSubject("alice").setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime("5m").sign(foreign.privateKey);
    tokens.otherTeam = await idp.sign("ed1", { sub: "bob", claims: { groups: ["team-b"] } });
  });

  after(async () => {
    grpc?.close();
    await server?.close();
    await idp?.close();
  });

  const call = (ingress: Ingress, cred: Cred, ns: string): Promise<Result> =>
    ingress === "grpc" ? grpcGet(grpc, cred, ns) : ingress === "http" ? httpGet(server.httpPort, cred, ns) : wsGet(server.httpPort, cred, ns);

  for (const ingress of ["grpc", "http", "ws"] as const) {
    describe(ingress, () => {
      test("valid RS256, ES256 and EdDSA tokens are accepted; exp within clock_skew_s too", async () => {
        for (const t of [tokens.rs256!, tokens.es256!, tokens.eddsa!, tokens.expiredWithinSkew!]) {
          const r = await call(ingress, { bearer: t }, "team-a.orders");
          assert.equal(r.code, OK, r.message);
        }
      });

      const refusals: [string, RegExp][] = [
        ["expired", /expired/],
        ["notYetValid", /not valid yet/],
        ["noExp", /exp missing/],
        ["wrongIssuer", /issuer/],
        ["wrongAudience", /audience/],
        ["wrongSignature", /signature does not verify/],
        ["algNone", /algorithm not accepted|malformed/],
        ["unknownKid", /no key of the issuer matches/],
      ];
      for (const [name, why] of refusals) {
        test(`${name} token → UNAUTHENTICATED`, async () => {
          const r = await call(ingress, { bearer: tokens[name]! }, "team-a.orders");
          assert.equal(r.code, UNAUTHENTICATED, `${name}: ${r.message}`);
          assert.match(r.message, why);
          if (ingress === "http") {
            assert.equal(r.status, 401);
            assert.match(r.wwwAuthenticate ?? "", /^Bearer/);
          }
        });
      }

      test("no credentials → UNAUTHENTICATED (HTTP 401 with WWW-Authenticate: Bearer)", async () => {
        const r = await call(ingress, undefined, "team-a.orders");
        assert.equal(r.code, UNAUTHENTICATED);
        if (ingress === "http") {
          assert.equal(r.status, 401);
          assert.equal(r.wwwAuthenticate, 'Bearer realm="prism"');
        }
      });

      test("a token for another namespace → PERMISSION_DENIED, the same for an unknown namespace", async () => {
        const existing = await call(ingress, { bearer: tokens.rs256! }, "orders");
        const unknown = await call(ingress, { bearer: tokens.rs256! }, "no-such-namespace");
        assert.equal(existing.code, PERMISSION_DENIED);
        assert.equal(unknown.code, PERMISSION_DENIED);
        assert.equal(existing.message, 'jwt:alice lacks permission "read" on namespace "orders"');
        assert.equal(unknown.message.replace("no-such-namespace", "orders"), existing.message);
        if (ingress === "http") assert.deepEqual([existing.status, unknown.status], [403, 403]);
        const bob = await call(ingress, { bearer: tokens.otherTeam! }, "team-a.orders");
        assert.equal(bob.code, PERMISSION_DENIED);
      });

      test("API keys: x-api-key and Authorization: ApiKey accepted, a wrong key refused", async () => {
        assert.equal((await call(ingress, { apiKey: API_KEY }, "team-a.orders")).code, OK);
        assert.equal((await call(ingress, { authorization: `ApiKey ${API_KEY}` }, "team-a.orders")).code, OK);
        assert.equal((await call(ingress, { apiKey: "prism-test-key-wrong" }, "team-a.orders")).code, UNAUTHENTICATED);
        const r = await call(ingress, { apiKey: API_KEY }, "orders");
        assert.equal(r.code, PERMISSION_DENIED);
        assert.equal(r.message, 'apikey:ci lacks permission "read" on namespace "orders"');
        assert.ok(!r.message.includes(API_KEY));
      });
    });
  }

  test("a key rotated into the JWKS after start is accepted once the key set is refetched", async () => {
    const rotated = await idp.sign("rsa2", { claims: { groups: ["team-a"] } });
    assert.equal((await httpGet(server.httpPort, { bearer: rotated }, "team-a.orders")).code, UNAUTHENTICATED);
    idp.publish("rsa2");
    const before = idp.fetches;
    assert.equal((await grpcGet(grpc, { bearer: rotated }, "team-a.orders")).code, OK);
    assert.ok(idp.fetches > before, "the unknown kid made Prism fetch the JWKS again");
    assert.equal((await wsGet(server.httpPort, { bearer: rotated }, "team-a.orders")).code, OK);
  });

  test("WebSocket AUTH frame: refused credentials refuse the calls after it; valid ones carry the principal", async () => {
    const c = await Ws.open(server.httpPort);
    try {
      assert.equal((await c.get("team-a.orders")).code, UNAUTHENTICATED);
      const bad = await c.auth({ bearer: tokens.expired! });
      assert.equal(bad.code, UNAUTHENTICATED);
      assert.equal((await c.get("team-a.orders")).code, UNAUTHENTICATED);
      const good = await c.auth({ bearer: tokens.eddsa! });
      assert.equal(good.code, OK, good.message);
      assert.equal(good.principal, "jwt:alice");
      assert.equal((await c.get("team-a.orders")).code, OK);
      assert.equal((await c.get("orders")).code, PERMISSION_DENIED);
      const key = await c.auth({ apiKey: API_KEY });
      assert.equal(key.principal, "apikey:ci");
      assert.equal((await c.get("team-a.orders")).code, OK);
    } finally {
      c.close();
    }
  });

  test("at least 200 forged or mutated tokens, none accepted (RS256 over HTTP, ES256 over gRPC, EdDSA over WebSocket)", async () => {
    const pem = async (kid: string) => exportSPKI(idp.keys.get(kid)!.publicKey);
    const ec = await generateKeyPair("ES256");
    const ed = await generateKeyPair("EdDSA");
    const sets = {
      http: await forgeries(tokens.rs256!, 1, foreign.privateKey, "RS256", await pem("rsa1")),
      grpc: await forgeries(tokens.es256!, 2, ec.privateKey, "ES256", await pem("ec1")),
      ws: await forgeries(tokens.eddsa!, 3, ed.privateKey, "EdDSA", await pem("ed1")),
    };
    const total = sets.http.length + sets.grpc.length + sets.ws.length;
    assert.ok(total >= 200, `${total} forgeries`);
    const accepted: string[] = [];
    const check = (where: string, t: string, r: Result) => {
      if (r.code === OK) accepted.push(`${where}: ${t}`);
      else assert.equal(r.code, UNAUTHENTICATED, `${where} ${t}: ${r.code} ${r.message}`);
    };
    await Promise.all(sets.http.map(async (t) => check("http", t, await httpGet(server.httpPort, { bearer: t }, "team-a.orders"))));
    await Promise.all(sets.grpc.map(async (t) => check("grpc", t, await grpcGet(grpc, { bearer: t }, "team-a.orders"))));
    const c = await Ws.open(server.httpPort);
    try {
      for (const t of sets.ws) {
        const a = await c.auth({ bearer: t });
        check("ws AUTH", t, a);
        check("ws call", t, await c.get("team-a.orders"));
      }
    } finally {
      c.close();
    }
    assert.deepEqual(accepted, []);
    // The originals still pass (the forgeries did not poison any cache).
    assert.equal((await httpGet(server.httpPort, { bearer: tokens.rs256! }, "team-a.orders")).code, OK);
  });
});

describe("auth with an OPA policy (grpc-js gRPC server)", () => {
  let idp: TestIdp;
  let server: RunningServer;
  let grpc: Client;
  let opa: Server;
  let token: string;
  let mode: "bool" | "object" | "error" | "slow" = "bool";
  const inputs: any[] = [];

  before(async () => {
    idp = await TestIdp.start();
    await idp.addKey("k1", "ES256");
    // Allows everything except the namespace team-a.opa-denied; answers in the shape the test picks.
    opa = createServer((req, res) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        const { input } = JSON.parse(body);
        inputs.push(input);
        const allow = input.namespace !== "team-a.opa-denied";
        if (mode === "error") return res.writeHead(500).end("policy failed");
        if (mode === "slow") return void setTimeout(() => res.writeHead(200).end('{"result":true}'), 2000).unref();
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ result: mode === "bool" ? allow : { allow } }));
      });
    });
    await new Promise<void>((resolve) => opa.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(opa.address() as AddressInfo).port}/v1/data/prism/allow`;
    server = await startServer({ config: configWith(authBlock(idp.jwksUrl, { opa: { url, timeout_ms: 300 } }), "grpc-js"), host: "127.0.0.1", grpcPort: 0, httpPort: 0, log: () => {} });
    grpc = new Client(`127.0.0.1:${server.grpcPort}`, grpcCredentials.createInsecure());
    token = await idp.sign("k1", { claims: { groups: ["team-a"], scope: "prism.read prism.write" } });
  });

  after(async () => {
    grpc?.close();
    await server?.close();
    await idp?.close();
    opa?.closeAllConnections();
    await new Promise((resolve) => opa?.close(resolve));
  });

  test("RBAC allows and the policy allows → OK; the policy saw principal, namespace, permission, method", async () => {
    inputs.length = 0;
    assert.equal((await grpcGet(grpc, { bearer: token }, "team-a.orders")).code, OK);
    assert.equal(inputs.length, 1);
    assert.deepEqual(
      { id: inputs[0].principal.id, kind: inputs[0].principal.kind, groups: inputs[0].principal.groups, scopes: inputs[0].principal.scopes, ns: inputs[0].namespace, perm: inputs[0].permission, method: inputs[0].method },
      { id: "alice", kind: "jwt", groups: ["team-a"], scopes: ["prism.read", "prism.write"], ns: "team-a.orders", perm: "read", method: "KeyValue/Get" },
    );
  });

  test("the policy denies → PERMISSION_DENIED / 403, in both answer shapes", async () => {
    for (const m of ["bool", "object"] as const) {
      mode = m;
      const g = await grpcGet(grpc, { bearer: token }, "team-a.opa-denied");
      assert.equal(g.code, PERMISSION_DENIED, m);
      const h = await httpGet(server.httpPort, { bearer: token }, "team-a.opa-denied");
      assert.equal(h.status, 403);
      assert.equal((await httpGet(server.httpPort, { bearer: token }, "team-a.orders")).code, OK, m);
    }
    mode = "bool";
  });

  test("RBAC denies first: the policy is not asked; no credentials over grpc-js → UNAUTHENTICATED", async () => {
    inputs.length = 0;
    assert.equal((await grpcGet(grpc, { bearer: token }, "orders")).code, PERMISSION_DENIED);
    assert.equal((await grpcGet(grpc, undefined, "team-a.orders")).code, UNAUTHENTICATED);
    assert.equal(inputs.length, 0);
  });

  test("the policy fails or does not answer in time → UNAVAILABLE (fail closed)", async () => {
    for (const m of ["error", "slow"] as const) {
      mode = m;
      const r = await grpcGet(grpc, { bearer: token }, "team-a.orders");
      assert.equal(r.code, UNAVAILABLE, `${m}: ${r.message}`);
      assert.match(r.message, /auth\.opa/);
    }
    mode = "bool";
  });
});

describe("auth in-process: a JWKS file, scrypt-hashed API keys, the synchronous hot path", () => {
  const roles = { roles: { rw: [{ namespaces: ["team-a.*"], permissions: ["read", "write"] }] }, grants: [{ role: "rw", groups: ["team-a"] }] };
  const ctxWith = (cred: { bearer?: string; apiKey?: string }) => {
    const c = new RequestContext(GET, "ws", "test");
    c.credentials = cred;
    return c;
  };
  const refused = (p: Promise<void> | undefined) =>
    assert.rejects(Promise.resolve().then(() => p), (e: PrismError) => e.code === UNAUTHENTICATED);

  test("jwks_file: verified from the file; a kid added to the file later is read on first use; cached tokens decide synchronously", async () => {
    const idp = await TestIdp.start();
    const dir = mkdtempSync(join(tmpdir(), "prism-jwks-"));
    try {
      const f1 = await idp.addKey("f1", "EdDSA");
      const f2 = await idp.addKey("f2", "ES256");
      const file = join(dir, "jwks.json");
      writeFileSync(file, JSON.stringify({ keys: [f1.jwk] }));
      const gate = new AuthGate(authSchema.parse({ jwt: { issuer: ISSUER, audience: AUDIENCE, jwks_file: file, jwks_cooldown_ms: 0 }, ...roles }));
      const t1 = await idp.sign("f1", { claims: { groups: ["team-a"] } });
      const t2 = await idp.sign("f2", { claims: { groups: ["team-a"] } });
      const first = ctxWith({ bearer: t1 });
      const wait = gate.check(first, { namespace: "team-a.x" });
      assert.ok(wait instanceof Promise, "the first call verifies the signature");
      await wait;
      assert.deepEqual([first.principal?.kind, first.principal?.id, first.principal?.roles], ["jwt", "alice", ["rw"]]);
      const again = ctxWith({ bearer: t1 });
      assert.equal(gate.check(again, { namespace: "team-a.x" }), undefined, "a cached token is decided without await");
      assert.equal(again.principal, first.principal);
      await refused(gate.check(ctxWith({ bearer: t2 }), { namespace: "team-a.x" }));
      writeFileSync(file, JSON.stringify({ keys: [f1.jwk, f2.jwk] }));
      await gate.check(ctxWith({ bearer: t2 }), { namespace: "team-a.x" });
    } finally {
      await idp.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("scrypt-hashed API key: accepted (then from memory, synchronously), a wrong key refused", async () => {
    const key = "a person chose this key";
    const salt = randomBytes(16);
    const hash = `scrypt:${salt.toString("hex")}:${scryptSync(key, salt, 64, { N: 16384, r: 8, p: 1 }).toString("hex")}`;
    const gate = new AuthGate(authSchema.parse({ api_keys: [{ name: "human", hash, groups: ["team-a"] }], ...roles }));
    const first = ctxWith({ apiKey: key });
    const wait = gate.check(first, { namespace: "team-a.x" });
    assert.ok(wait instanceof Promise);
    await wait;
    assert.equal(first.principal?.id, "human");
    assert.equal(gate.check(ctxWith({ apiKey: key }), { namespace: "team-a.x" }), undefined);
    await refused(gate.check(ctxWith({ apiKey: key + "!" }), { namespace: "team-a.x" }));
  });
});
