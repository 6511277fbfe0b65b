/**
 * TLS and mTLS on every ingress (server.tls, src/ingress/tls.ts): gRPC on
 * both servers (node:http2 and grpc-js), HTTP and WebSocket (wss). Certificates
 * come from test/helpers/certs.ts (openssl). Checked: TLS 1.3 negotiated and a
 * TLS 1.2-only client refused; without a client certificate, with one from
 * another CA or an expired one the connection is refused; the right one
 * reaches the gateway with ctx.credentials.cert (CN, SAN, fingerprint);
 * certificate rotation without a restart (grpc-js included); a bad file at
 * start or on reload; and the safe-default bind rule (--insecure-no-auth).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID, X509Certificate } from "node:crypto";
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { connect as tlsConnect, type ConnectionOptions } from "node:tls";
import { setTimeout as sleep } from "node:timers/promises";
import { Client, credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { WebSocket } from "ws";
import { prism } from "../../src/gen/prism.js";
import { startServer, type RunningServer } from "../../src/server.js";
import { defaultConfig, validateConfig } from "../../src/config/load.js";
import { methodByName, type MethodDef } from "../../src/core/methods.js";
import { encoder } from "../../src/ingress/grpc-codec.js";
import { principalFromCert } from "../../src/auth/mtls.js";
import { isLoopbackHost } from "../../src/ingress/bind-safety.js";
import type { PeerCertificate } from "../../src/auth/types.js";
import { standardCerts, type KeyPair } from "../helpers/certs.js";
import { freshDataDir, PRISM_BIN, ROOT, startPrism } from "./serve-process.js";

const uid = randomUUID().slice(0, 8);
const certs = standardCerts("prism-tls-test-");
const pem = (p: string) => readFileSync(p);
const CA = pem(certs.ca.cert);

function method(service: string, name: string): MethodDef {
  const m = methodByName(service, name);
  assert.ok(m);
  return m;
}
const SET = method("KeyValue", "Set");
const GET = method("KeyValue", "Get");

interface Started {
  server: RunningServer;
  /** ctx.credentials.cert of every call the gateway saw, by ingress. */
  seen: { ingress: string; cert: PeerCertificate | undefined }[];
  logs: string[];
  /** The server certificate files this server reads (rotation replaces them). */
  certFile: string;
  keyFile: string;
}

/** A server with server.tls on copies of the server cert/key (so rotation can replace them). */
async function start(grpcServer: "http2" | "grpc-js", tls: Record<string, unknown> = {}, name: string = grpcServer): Promise<Started> {
  const certFile = certs.dir.path(`live-${name}.crt`);
  const keyFile = certs.dir.path(`live-${name}.key`);
  writeFileSync(certFile, pem(certs.server.cert));
  writeFileSync(keyFile, pem(certs.server.key));
  const config = await validateConfig(
    {
      server: {
        data_dir: freshDataDir(),
        allowed_paths: [certs.dir.dir],
        grpc_server: grpcServer,
        tls: { cert: certFile, key: keyFile, client_ca: certs.ca.cert, reload_interval_ms: 50, ...tls },
      },
      namespaces: [{ name: "default", backend: { type: "memstore" } }],
    },
    "test",
  );
  const logs: string[] = [];
  const server = await startServer({ config, host: "127.0.0.1", grpcPort: 0, httpPort: 0, log: (l, m) => void logs.push(`${l} ${m}`) });
  const seen: Started["seen"] = [];
  server.gateway.use((ctx) => void seen.push({ ingress: ctx.ingress, cert: ctx.credentials?.cert }));
  return { server, seen, logs, certFile, keyFile };
}

/** Client credentials: a key pair (or none) and whom to trust. */
interface Who {
  pair?: KeyPair;
  ca?: Buffer;
}

function grpcClient(port: number, who: Who): Client {
  const creds = who.pair ? credentials.createSsl(who.ca ?? CA, pem(who.pair.key), pem(who.pair.cert)) : credentials.createSsl(who.ca ?? CA);
  return new Client(`127.0.0.1:${port}`, creds);
}

function grpcUnary(client: Client, m: MethodDef, req: object): Promise<{ err: ServiceError | null; res: any }> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(m.path, encoder(m.requestType), (b: Buffer) => m.responseType.decode(b), req, new Metadata(), { deadline: Date.now() + 5000 }, (err, res) =>
      resolve({ err, res }),
    );
  });
}

/** Set then Get over gRPC; the Get's value, or the error. */
async function grpcRoundTrip(port: number, who: Who): Promise<{ ok: true; value: string } | { ok: false; err: ServiceError }> {
  const c = grpcClient(port, who);
  try {
    const key = `g-${uid}-${randomUUID().slice(0, 6)}`;
    const set = await grpcUnary(c, SET, { namespace: "default", key, value: Buffer.from("grpc") });
    if (set.err) return { ok: false, err: set.err };
    const got = await grpcUnary(c, GET, { namespace: "default", key });
    if (got.err) return { ok: false, err: got.err };
    return { ok: true, value: Buffer.from(got.res.value).toString() };
  } finally {
    c.close();
  }
}

function tlsOptions(who: Who): ConnectionOptions {
  return { ca: who.ca ?? CA, ...(who.pair ? { cert: pem(who.pair.cert), key: pem(who.pair.key) } : {}) };
}

/** PUT then GET over HTTPS; the GET's status and body, or the connection error. */
async function httpsRoundTrip(port: number, who: Who): Promise<{ ok: true; status: number; body: string } | { ok: false; error: string }> {
  const call = (method: string, path: string, body?: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpsRequest({ host: "127.0.0.1", port, method, path, agent: false, ...tlsOptions(who) }, (res) => {
        let b = "";
        res.on("data", (d: Buffer) => (b += d.toString()));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: b }));
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end(body);
    });
  const key = `h-${uid}-${randomUUID().slice(0, 6)}`;
  try {
    const put = await call("PUT", `/v1/ns/default/kv/${key}`, "https");
    if (put.status !== 200) return { ok: true, ...put };
    return { ok: true, ...(await call("GET", `/v1/ns/default/kv/${key}`)) };
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
}

/** One KeyValue.Get over wss://; "ok" with the response frame kind, or the error. */
function wssGet(port: number, who: Who): Promise<{ ok: true; kind: number } | { ok: false; error: string }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`wss://127.0.0.1:${port}/v1/ws`, { ...tlsOptions(who) });
    let settled = false;
    const done = (r: { ok: true; kind: number } | { ok: false; error: string }) => {
      if (settled) return;
      settled = true;
      ws.terminate();
      resolve(r);
    };
    ws.on("error", (e) => done({ ok: false, error: e.message }));
    ws.on("close", (code) => done({ ok: false, error: `closed ${code}` }));
    ws.on("open", () => {
      const body = prism.v1.GetRequest.encode({ namespace: "default", key: `w-${uid}` }).finish();
      const h = Buffer.alloc(8);
      h[0] = 1;
      h.writeUInt32LE(1, 2);
      h.writeUInt16LE(prism.v1.Method.KV_GET, 6);
      ws.send(Buffer.concat([h, body]));
    });
    ws.on("message", (data: Buffer) => done({ ok: true, kind: data[0]! }));
  });
}

/** A bare TLS handshake: negotiated version and the server certificate's serial, or the error. */
function handshake(port: number, who: Who, extra: ConnectionOptions = {}): Promise<{ ok: true; protocol: string; serial: string; fingerprint: string } | { ok: false; error: string }> {
  return new Promise((resolve) => {
    const s = tlsConnect({ host: "127.0.0.1", port, servername: "localhost", ...tlsOptions(who), ...extra });
    s.once("secureConnect", () => {
      const c = s.getPeerCertificate();
      const r = { ok: true as const, protocol: s.getProtocol() ?? "", serial: c.serialNumber, fingerprint: c.fingerprint256 };
      s.end();
      resolve(r);
    });
    s.once("error", (e) => resolve({ ok: false, error: e.message }));
  });
}

after(() => certs.dir.remove());

describe("mTLS on every ingress", () => {
  const servers: Record<string, Started> = {};

  before(async () => {
    servers.h2 = await start("http2");
    servers.js = await start("grpc-js");
  });
  after(async () => {
    for (const s of Object.values(servers)) await s.server.close();
  });

  const grpcPorts = () => [
    { name: "gRPC (node:http2)", port: servers.h2!.server.grpcPort, alpn: ["h2"] },
    { name: "gRPC (grpc-js)", port: servers.js!.server.grpcPort, alpn: ["h2"] },
  ];
  const allPorts = () => [...grpcPorts(), { name: "HTTP/WebSocket", port: servers.h2!.server.httpPort, alpn: ["http/1.1"] }];

  test("TLS 1.3 is negotiated; a client limited to TLS 1.2 is refused (min_version TLSv1.3)", async () => {
    for (const p of allPorts()) {
      const ok = await handshake(p.port, { pair: certs.client }, { ALPNProtocols: p.alpn });
      assert.ok(ok.ok, `${p.name}: ${JSON.stringify(ok)}`);
      assert.equal(ok.protocol, "TLSv1.3", p.name);
      const old = await handshake(p.port, { pair: certs.client }, { ALPNProtocols: p.alpn, maxVersion: "TLSv1.2" });
      assert.equal(old.ok, false, `${p.name}: a TLS 1.2 client got in`);
      assert.match((old as { error: string }).error, /protocol version|unsupported protocol|wrong version/i, p.name);
    }
  });

  test("the right client certificate: calls succeed and ctx.credentials.cert carries CN, SAN and fingerprint", async () => {
    const fp = new X509Certificate(pem(certs.client.cert)).fingerprint256;
    for (const [key, p] of [["h2", grpcPorts()[0]!], ["js", grpcPorts()[1]!]] as const) {
      const s = servers[key]!;
      s.seen.length = 0;
      const r = await grpcRoundTrip(p.port, { pair: certs.client });
      assert.deepEqual(r, { ok: true, value: "grpc" }, p.name);
      assert.equal(s.seen.length, 2, p.name);
      for (const c of s.seen) {
        assert.equal(c.ingress, "grpc");
        assert.equal(c.cert?.subjectCN, "orders.svc", p.name);
        assert.deepEqual(c.cert?.san, ["URI:spiffe://test/orders"], p.name);
        assert.equal(c.cert?.fingerprint256, fp, p.name);
      }
    }
    const s = servers.h2!;
    s.seen.length = 0;
    assert.deepEqual(await httpsRoundTrip(s.server.httpPort, { pair: certs.client }), { ok: true, status: 200, body: "https" });
    assert.deepEqual(await wssGet(s.server.httpPort, { pair: certs.client }), { ok: true, kind: 1 });
    assert.deepEqual(
      s.seen.map((c) => [c.ingress, c.cert?.subjectCN, c.cert?.fingerprint256]),
      [["http", "orders.svc", fp], ["http", "orders.svc", fp], ["ws", "orders.svc", fp]],
    );
    // What src/auth makes of it: the principal per server.tls.principal_from.
    const cert = s.seen[0]!.cert!;
    assert.deepEqual(principalFromCert(cert, "cn"), { id: "orders.svc", kind: "mtls", groups: [], roles: [], scopes: [] });
    assert.equal(principalFromCert(cert, "san").id, "spiffe://test/orders");
    assert.throws(() => principalFromCert({ san: [], fingerprint256: "x" }, "san"), /no subjectAltName/);
  });

  for (const [what, who] of [
    ["no client certificate", {}],
    ["a certificate from another CA", { pair: certs.foreign }],
    ["an expired certificate", { pair: certs.expired }],
  ] as [string, Who][]) {
    test(`${what}: refused on gRPC (both servers), HTTP and WebSocket, and no call reaches the gateway`, async () => {
      for (const s of Object.values(servers)) s.seen.length = 0;
      for (const p of grpcPorts()) {
        const r = await grpcRoundTrip(p.port, who);
        assert.equal(r.ok, false, `${p.name} accepted ${what}`);
        const code = (r as { err: ServiceError }).err.code;
        assert.ok(code === 14 || code === 16, `${p.name}: UNAVAILABLE (handshake refused) or UNAUTHENTICATED, got ${code}`);
      }
      const port = servers.h2!.server.httpPort;
      const h = await httpsRoundTrip(port, who);
      assert.equal(h.ok, false, `HTTPS accepted ${what}: ${JSON.stringify(h)}`);
      const w = await wssGet(port, who);
      assert.equal(w.ok, false, `wss accepted ${what}: ${JSON.stringify(w)}`);
      assert.deepEqual([...servers.h2!.seen, ...servers.js!.seen], []);
    });
  }

  test("a client that does not trust Prism's CA does not connect (the server really presents the test certificate)", async () => {
    const r = await handshake(servers.h2!.server.httpPort, { pair: certs.client, ca: pem(certs.otherCa.cert) });
    assert.equal(r.ok, false);
    assert.match((r as { error: string }).error, /self[- ]signed|unable to (get|verify)/i);
  });
});

describe("mTLS without an auth block: the certificate names the caller", () => {
  test("the principal (CN, or the SAN with principal_from: san) shows in the audit record of each call", async () => {
    for (const from of ["cn", "san"] as const) {
      const dataDir = freshDataDir();
      const config = await validateConfig(
        {
          server: { data_dir: dataDir, allowed_paths: [certs.dir.dir], tls: { cert: certs.server.cert, key: certs.server.key, client_ca: certs.ca.cert, principal_from: from } },
          audit: { file: "audit.jsonl" },
          namespaces: [{ name: "default", backend: { type: "memstore" } }],
        },
        "test",
      );
      const server = await startServer({ config, host: "127.0.0.1", grpcPort: 0, httpPort: 0, log: () => {} });
      try {
        const g = await grpcRoundTrip(server.grpcPort, { pair: certs.client });
        assert.ok(g.ok, "gRPC call with the client certificate");
        const h = await httpsRoundTrip(server.httpPort, { pair: certs.client });
        assert.ok(h.ok && h.status === 200, "HTTPS call with the client certificate");
      } finally {
        await server.close();
      }
      const records = readFileSync(`${dataDir}/audit.jsonl`, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { principal: string; principal_kind: string; method: string });
      const data = records.filter((r) => r.method.startsWith("KeyValue/"));
      assert.equal(data.length, 4, "Set + Get over gRPC and over HTTPS");
      for (const r of data) assert.deepEqual([r.principal, r.principal_kind], [from === "cn" ? "orders.svc" : "spiffe://test/orders", "mtls"]);
    }
  });
});

describe("certificate rotation without a restart", () => {
  test("replaced cert/key files: new connections get the new certificate on both gRPC servers and HTTP; a bad file keeps the old one", async () => {
    const h2 = await start("http2", {}, "rot-h2");
    const js = await start("grpc-js", {}, "rot-js");
    try {
      const ports = [
        { s: h2, port: h2.server.grpcPort, alpn: ["h2"] },
        { s: h2, port: h2.server.httpPort, alpn: ["http/1.1"] },
        { s: js, port: js.server.grpcPort, alpn: ["h2"] },
      ];
      const before = await handshake(ports[0]!.port, { pair: certs.client }, { ALPNProtocols: ["h2"] });
      assert.ok(before.ok);
      const oldSerial = before.serial;
      // A new certificate for the same names, another serial; written next to the live files and renamed over them.
      const next = certs.dir.issue(certs.ca, `rotated-${uid}`, { cn: "prism-test-server", usage: "server" });
      assert.notEqual(next.serial.toUpperCase(), oldSerial.toUpperCase());
      for (const s of [h2, js]) {
        writeFileSync(`${s.certFile}.new`, pem(next.cert));
        writeFileSync(`${s.keyFile}.new`, pem(next.key));
        renameSync(`${s.keyFile}.new`, s.keyFile);
        renameSync(`${s.certFile}.new`, s.certFile);
      }
      for (const p of ports) {
        const deadline = Date.now() + 10_000;
        let serial = "";
        for (;;) {
          const r = await handshake(p.port, { pair: certs.client }, { ALPNProtocols: p.alpn });
          assert.ok(r.ok, JSON.stringify(r));
          serial = r.serial;
          if (serial.toUpperCase() === next.serial.toUpperCase() || Date.now() > deadline) break;
          await sleep(50);
        }
        assert.equal(serial.toUpperCase(), next.serial.toUpperCase(), `port ${p.port} serves the new certificate`);
      }
      // Calls work on the new certificate (grpc-js included).
      assert.deepEqual(await grpcRoundTrip(js.server.grpcPort, { pair: certs.client }), { ok: true, value: "grpc" });
      assert.deepEqual(await grpcRoundTrip(h2.server.grpcPort, { pair: certs.client }), { ok: true, value: "grpc" });
      assert.ok(h2.logs.some((l) => l.includes(`tls: reloaded`)), h2.logs.join("\n"));

      // A broken certificate file: a warning, and the server keeps the one it has.
      writeFileSync(h2.certFile, "not a certificate\n");
      const deadline = Date.now() + 10_000;
      while (!h2.logs.some((l) => l.startsWith("warn tls: keeping the previous certificate"))) {
        assert.ok(Date.now() < deadline, `no warning: ${h2.logs.join("\n")}`);
        await sleep(50);
      }
      assert.match(h2.logs.find((l) => l.startsWith("warn tls: keeping"))!, /server\.tls\.cert: .* is not a PEM certificate/);
      const still = await handshake(h2.server.grpcPort, { pair: certs.client }, { ALPNProtocols: ["h2"] });
      assert.ok(still.ok && still.serial.toUpperCase() === next.serial.toUpperCase(), JSON.stringify(still));
    } finally {
      await h2.server.close();
      await js.server.close();
    }
  });
});

describe("client CA rotation", () => {
  test("replacing client_ca: the other CA's clients get in on new connections, the old CA's no longer", async () => {
    const caFile = certs.dir.path(`live-client-ca-${uid}.pem`);
    writeFileSync(caFile, pem(certs.ca.cert));
    const s = await start("http2", { client_ca: caFile }, "ca-rot");
    try {
      assert.equal((await httpsRoundTrip(s.server.httpPort, { pair: certs.foreign })).ok, false);
      assert.equal((await httpsRoundTrip(s.server.httpPort, { pair: certs.client })).ok, true);
      writeFileSync(`${caFile}.new`, pem(certs.otherCa.cert));
      renameSync(`${caFile}.new`, caFile);
      const deadline = Date.now() + 10_000;
      while (!(await httpsRoundTrip(s.server.httpPort, { pair: certs.foreign })).ok) {
        assert.ok(Date.now() < deadline, `the new client CA was not taken: ${s.logs.join("\n")}`);
        await sleep(50);
      }
      assert.equal((await httpsRoundTrip(s.server.httpPort, { pair: certs.client })).ok, false, "the replaced CA's client is refused");
      const r = await grpcRoundTrip(s.server.grpcPort, { pair: certs.foreign });
      assert.ok(r.ok, JSON.stringify(r));
      assert.equal(s.seen.at(-1)?.cert?.subjectCN, "intruder.svc");
    } finally {
      await s.server.close();
    }
  });
});

describe("server.tls configuration", () => {
  test("client_auth request: a call without a certificate has no credentials.cert; with one, it has", async () => {
    const s = await start("http2", { client_auth: "request" }, "request");
    try {
      assert.deepEqual(await httpsRoundTrip(s.server.httpPort, {}), { ok: true, status: 200, body: "https" });
      assert.deepEqual(s.seen.map((c) => c.cert), [undefined, undefined]);
      s.seen.length = 0;
      // A certificate that does not verify is not believed either.
      assert.deepEqual(await httpsRoundTrip(s.server.httpPort, { pair: certs.foreign }), { ok: true, status: 200, body: "https" });
      assert.deepEqual(s.seen.map((c) => c.cert), [undefined, undefined]);
      s.seen.length = 0;
      // The expired certificate is signed by the right CA (only its dates are wrong): not believed.
      const expired = new X509Certificate(pem(certs.expired.cert));
      assert.ok(expired.verify(new X509Certificate(CA).publicKey) && Date.parse(expired.validTo) < Date.now());
      assert.deepEqual(await httpsRoundTrip(s.server.httpPort, { pair: certs.expired }), { ok: true, status: 200, body: "https" });
      assert.deepEqual(s.seen.map((c) => c.cert), [undefined, undefined]);
      s.seen.length = 0;
      assert.deepEqual(await grpcRoundTrip(s.server.grpcPort, { pair: certs.client }), { ok: true, value: "grpc" });
      assert.deepEqual(s.seen.map((c) => c.cert?.subjectCN), ["orders.svc", "orders.svc"]);
    } finally {
      await s.server.close();
    }
  });

  test("min_version TLSv1.2 lets a TLS 1.2 client in", async () => {
    const s = await start("http2", { min_version: "TLSv1.2" }, "tls12");
    try {
      const r = await handshake(s.server.httpPort, { pair: certs.client }, { maxVersion: "TLSv1.2" });
      assert.ok(r.ok && r.protocol === "TLSv1.2", JSON.stringify(r));
    } finally {
      await s.server.close();
    }
  });

  test("unreadable or bad files fail the start naming the file; client_auth without client_ca is a config error", async () => {
    const bad = certs.dir.path("garbage.pem");
    writeFileSync(bad, "hello\n");
    const cfg = async (tls: object) =>
      validateConfig({ server: { data_dir: freshDataDir(), allowed_paths: [certs.dir.dir], tls }, namespaces: [{ name: "default", backend: { type: "memstore" } }] }, "test");
    const run = async (tls: object) => startServer({ config: await cfg(tls), host: "127.0.0.1", grpcPort: 0, httpPort: 0, log: () => {} });
    await assert.rejects(run({ cert: bad, key: certs.server.key }), new RegExp(`server\\.tls\\.cert: ${bad.replace(/[.]/g, "\\.")} is not a PEM certificate`));
    await assert.rejects(run({ cert: certs.server.cert, key: certs.dir.path("missing.key") }), /server\.tls\.key: cannot read .*missing\.key: ENOENT/);
    await assert.rejects(run({ cert: certs.server.cert, key: certs.client.key }), /server\.tls\.key: .* does not belong to the certificate/);
    await assert.rejects(run({ cert: certs.server.cert, key: certs.server.key, client_ca: bad }), /server\.tls\.client_ca: .* is not a PEM CA bundle/);
    await assert.rejects(cfg({ cert: certs.server.cert, key: certs.server.key, client_auth: "require" }), /server\.tls\.client_ca: client_auth "require" needs client_ca/);
    await assert.rejects(cfg({ cert: "/etc/prism/tls.crt", key: certs.server.key }), /server\.tls\.cert: "\/etc\/prism\/tls\.crt" is an absolute path/);
  });
});

describe("prism serve with server.tls", () => {
  test("prism.yaml with tls and mTLS required: two workers on 0.0.0.0 serve TLS, verify client certificates", async () => {
    const yaml = certs.dir.path(`prism-${uid}.yaml`);
    writeFileSync(
      yaml,
      [
        "server:",
        "  host: 0.0.0.0",
        `  allowed_paths: [${JSON.stringify(certs.dir.dir)}]`,
        "  tls:",
        `    cert: ${JSON.stringify(certs.server.cert)}`,
        `    key: ${JSON.stringify(certs.server.key)}`,
        `    client_ca: ${JSON.stringify(certs.ca.cert)}`,
        "namespaces:",
        "  - { name: default, backend: { type: memstore } }",
        "",
      ].join("\n"),
    );
    const p = await startPrism(["--config", yaml, "--grpc-port", "0", "--http-port", "0", "--workers", "2"]);
    try {
      assert.match(p.stdout(), /^tls TLSv1\.3\+ with .*server\.crt; client certificates: require \(client_ca .*ca\.crt\)$/m);
      assert.deepEqual(await grpcRoundTrip(p.grpcPort, { pair: certs.client }), { ok: true, value: "grpc" });
      const https = await httpsRoundTrip(p.httpPort, { pair: certs.client });
      assert.ok(https.ok && https.status === 200, JSON.stringify(https));
      assert.equal((await httpsRoundTrip(p.httpPort, {})).ok, false, "no client certificate: refused");
    } finally {
      await p.stop();
    }
  });
});

describe("safe defaults: no non-loopback listener without authentication", () => {
  test("loopback addresses", () => {
    for (const h of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1"]) assert.equal(isLoopbackHost(h), true, h);
    for (const h of ["0.0.0.0", "::", "[::]", "", "10.0.0.1", "192.168.1.2", "example.com", "::2"]) assert.equal(isLoopbackHost(h), false, h);
  });

  test("in-process: 0.0.0.0 without auth refuses to start; insecure_no_auth or mTLS (client_auth require) allows it", async () => {
    await assert.rejects(
      startServer({ config: defaultConfig(), host: "0.0.0.0", grpcPort: 0, httpPort: 0, log: () => {} }),
      /refusing to listen on 0\.0\.0\.0 without authentication.*auth: block.*client_auth: require.*--insecure-no-auth/,
    );
    const insecure = defaultConfig();
    insecure.server.insecure_no_auth = true;
    const a = await startServer({ config: insecure, host: "0.0.0.0", grpcPort: 0, httpPort: 0, log: () => {} });
    await a.close();
    const withMtls = await validateConfig(
      { server: { data_dir: freshDataDir(), allowed_paths: [certs.dir.dir], tls: { cert: certs.server.cert, key: certs.server.key, client_ca: certs.ca.cert } } },
      "test",
    );
    const b = await startServer({ config: withMtls, host: "0.0.0.0", grpcPort: 0, httpPort: 0, log: () => {} });
    await b.close();
  });

  test("prism serve --host 0.0.0.0 exits with how to configure auth; with --insecure-no-auth it serves", async () => {
    const child = spawn(process.execPath, [PRISM_BIN, "serve", "--host", "0.0.0.0", "--grpc-port", "0", "--http-port", "0", "--workers", "1"], {
      cwd: ROOT,
      env: (({ PRISM_CONFIG: _, ...env }) => ({ ...env, PRISM_QUIET: "1", PRISM_DATA_DIR: freshDataDir() }))(process.env),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let err = "";
    child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
    assert.equal(code, 1, err);
    assert.match(err, /prism serve: cannot start: refusing to listen on 0\.0\.0\.0 without authentication/);
    assert.match(err, /--insecure-no-auth/);
    const p = await startPrism(["--host", "0.0.0.0", "--grpc-port", "0", "--http-port", "0", "--workers", "1", "--insecure-no-auth"]);
    try {
      assert.ok(p.grpcPort > 0 && p.httpPort > 0);
      assert.match(p.stderr(), /no authentication \(--insecure-no-auth\)/);
    } finally {
      await p.stop();
    }
  });
});
