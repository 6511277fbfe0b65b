/**
 * ws-kv-get-tls-jwt (issue 15): KeyValue Get over the binary WebSocket against
 * two `prism serve` processes in the same alternating rounds — one plain (no
 * TLS, no auth), one with server.tls (a certificate made here with openssl)
 * and an auth block (JWT from a JWKS file, RBAC on the namespace), the client
 * sending `Authorization: Bearer <jwt>` on the upgrade request of every
 * connection. ratio = secured ops/s ÷ plain ops/s (target ≥ 0.8).
 *
 * The note also gives the authorization cost per call: the AuthGate's check()
 * (cached token → principal, RBAC decision) timed in this process over many calls.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import { prism as pb } from "../../src/gen/prism.js";
import { AuthGate } from "../../src/auth/gate.js";
import { authSchema } from "../../src/auth/config.js";
import { RequestContext } from "../../src/core/context.js";
import { methodByName } from "../../src/core/methods.js";
import { AUDIENCE, ISSUER, TestIdp } from "../../test/helpers/test-idp.js";
import { benchKey, benchValue, frame, kvMix, setBody } from "./frames.js";
import { startPrism, type ServerProcess } from "./spawn.js";
import { runWsLoad, type Measurement } from "./ws-load.js";
import { round3 } from "./hist.js";
import { rssBytes } from "./proc.js";
import type { Row } from "./report.js";
import type { BenchOptions } from "./scenarios.js";

const ID = "ws-kv-get-tls-jwt";
const NS = "bench";
const KEYS = 100;
const CONNS = 8;
const DEPTH = 64;
const M = pb.v1.Method;

interface Side {
  name: string;
  proc: ServerProcess;
  url: string;
  wsOptions?: { headers?: Record<string, string>; ca?: string };
}

/** A self-signed P-256 certificate for 127.0.0.1 / localhost. */
function makeCert(dir: string): { cert: string; key: string } {
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"), "-days", "1",
    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
  ], { stdio: "ignore" });
  return { cert: join(dir, "cert.pem"), key: join(dir, "key.pem") };
}

/** Writes the bench keys with Set frames over one connection (works for ws:// and wss:// alike). */
async function seed(url: string, wsOptions: Side["wsOptions"]): Promise<void> {
  const ws = new WebSocket(url, { perMessageDeflate: false, ...wsOptions });
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });
  const value = benchValue();
  const answered = new Promise<void>((resolve, reject) => {
    let n = 0;
    ws.on("message", (d: Buffer) => {
      if (d[0] !== 1) return reject(new Error(`${ID}: seed Set failed: ${pb.v1.Status.decode(d.subarray(6)).message}`));
      if (++n === KEYS) resolve();
    });
  });
  for (let i = 0; i < KEYS; i++) {
    const f = Buffer.from(frame(M.KV_SET, setBody(NS, benchKey(i), value)));
    f.writeUInt32LE(i + 1, 2);
    ws.send(f);
  }
  await answered;
  ws.close();
}

/** µs per AuthGate.check() with a verified (cached) JWT and a cached RBAC decision. */
async function authorizeCost(jwksFile: string, token: string): Promise<{ us: number; n: number }> {
  const gate = new AuthGate(authSchema.parse(authBlock(jwksFile)));
  const m = methodByName("KeyValue", "Get")!;
  const req = { namespace: NS, key: benchKey(1) };
  const first = new RequestContext(m, "ws", "bench");
  first.credentials = { bearer: token };
  await gate.check(first, req);
  const creds = { bearer: token };
  const ctxs = Array.from({ length: 1000 }, () => {
    const c = new RequestContext(m, "ws", "bench");
    c.credentials = creds;
    return c;
  });
  const run = (n: number) => {
    for (let i = 0; i < n; i++) if (gate.check(ctxs[i % 1000]!, req) !== undefined) throw new Error("auth check was not synchronous");
  };
  run(200_000); // warm-up (JIT)
  const n = 1_000_000;
  const t0 = process.hrtime.bigint();
  run(n);
  const ns = Number(process.hrtime.bigint() - t0);
  return { us: ns / n / 1000, n };
}

function authBlock(jwksFile: string) {
  return {
    jwt: { issuer: ISSUER, audience: AUDIENCE, jwks_file: jwksFile },
    roles: { "bench-rw": [{ namespaces: [NS], permissions: ["read", "write"] }] },
    grants: [{ role: "bench-rw", scopes: ["prism.bench"] }],
  };
}

export async function wsGetTlsJwt(o: BenchOptions): Promise<Row> {
  const dir = mkdtempSync(join(tmpdir(), "prism-bench-tls-"));
  const idp = await TestIdp.start();
  const sides: Side[] = [];
  try {
    const { cert, key } = makeCert(dir);
    const k = await idp.addKey("bench-es256", "ES256");
    const jwksFile = join(dir, "jwks.json");
    writeFileSync(jwksFile, JSON.stringify({ keys: [k.jwk] }));
    const token = await idp.sign("bench-es256", { sub: "bench-client", expIn: 3600, claims: { scope: "prism.bench" } });
    const nsYaml = `namespaces:\n  - name: ${NS}\n    backend: { type: memstore }\n`;
    const plainYaml = `server:\n  data_dir: ${JSON.stringify(join(dir, "plain"))}\n${nsYaml}`;
    const securedYaml =
      `server:\n  data_dir: ${JSON.stringify(dir)}\n  tls: { cert: cert.pem, key: key.pem }\n${nsYaml}` +
      `auth: ${JSON.stringify(authBlock(jwksFile))}\n`;
    const plain = await startPrism(plainYaml);
    sides.push({ name: "prism (no TLS, no auth)", proc: plain, url: `ws://127.0.0.1:${plain.ports.http}/v1/ws` });
    const secured = await startPrism(securedYaml);
    sides.push({ name: "prism (TLS 1.3 + JWT)", proc: secured, url: `wss://127.0.0.1:${secured.ports.http}/v1/ws`, wsOptions: { ca: readFileSync(cert, "utf8"), headers: { authorization: `Bearer ${token}` } } });
    for (const s of sides) await seed(s.url, s.wsOptions);

    const templates = kvMix(NS, KEYS, 100);
    const best: (Measurement | undefined)[] = [undefined, undefined];
    for (let r = 0; r < o.rounds; r++) {
      for (let i = 0; i < sides.length; i++) {
        const s = sides[i]!;
        o.log(`${ID}: round ${r + 1}/${o.rounds} ${s.name}`);
        const m = await runWsLoad({ url: s.url, wsOptions: s.wsOptions, conns: CONNS, depth: DEPTH, threads: o.threads, templates, seconds: o.seconds, warmupSeconds: o.warmupSeconds, serverPids: [s.proc.pid] });
        if (m.errors > 0 || m.ops === 0) throw new Error(`${ID} ${s.name}: ${m.errors} errors, ${m.ops} ok`);
        if (!best[i] || m.opsPerSec > best[i]!.opsPerSec) best[i] = m;
      }
    }
    const rss = sides.map((s) => Math.round((rssBytes(s.proc.pid) / (1024 * 1024)) * 10) / 10);
    const cost = await authorizeCost(jwksFile, token);
    const [base, sec] = [best[0]!, best[1]!];
    const ratio = round3(sec.opsPerSec / base.opsPerSec);
    return {
      id: ID,
      title: "KeyValue Get, binary WebSocket, memstore: TLS 1.3 + JWT (Authorization on the upgrade) + RBAC vs plain ws:// without auth",
      kind: "throughput",
      prism: sec,
      prismRssMb: rss[1]!,
      baselineName: "prism without TLS/auth",
      baseline: base,
      ratio,
      addedP50Ms: round3(sec.latency.p50 - base.latency.p50),
      addedP99Ms: round3(sec.latency.p99 - base.latency.p99),
      target: "ratio >= 0.8",
      met: ratio >= 0.8,
      command: `npm run bench -- --only ${ID}`,
      note:
        `authorization (AuthGate.check: cached JWT + RBAC) ${round3(cost.us)} µs/call over ${cost.n} calls in-process; ` +
        `server CPU ${sec.cpuUsPerOp} vs ${base.cpuUsPerOp} µs/op (+${round3(sec.cpuUsPerOp - base.cpuUsPerOp)}); RSS ${rss[1]} vs ${rss[0]} MB; ` +
        `${CONNS} conns x ${DEPTH} in flight, best of ${o.rounds} alternating rounds`,
    };
  } finally {
    for (const s of sides.reverse()) await s.proc.stop();
    await idp.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
