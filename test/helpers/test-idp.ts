/**
 * A test identity provider: key pairs generated here (jose), their public
 * halves served as a JWKS by a node:http server on 127.0.0.1, and a signer
 * for tokens with any claims. Keys can be added (published or not) while it
 * runs, to test rotation and unknown kids. Used by test/e2e/auth.test.ts and
 * the ws-kv-get-tls-jwt bench.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { SignJWT, exportJWK, generateKeyPair, type JWK, type CryptoKey } from "jose";

export const ISSUER = "https://idp.prism.test";
export const AUDIENCE = "prism";

export type Alg = "RS256" | "ES256" | "EdDSA";

interface Key {
  alg: Alg;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  jwk: JWK;
}

export interface TokenOptions {
  sub?: string;
  iss?: string;
  aud?: string | string[];
  /** Seconds from now (negative: in the past); null: no exp claim. */
  expIn?: number | null;
  /** Seconds from now. */
  nbfIn?: number;
  claims?: Record<string, unknown>;
}

export class TestIdp {
  readonly keys = new Map<string, Key>();
  private readonly published = new Set<string>();
  /** JWKS requests served. */
  fetches = 0;

  private constructor(
    private readonly server: Server,
    readonly jwksUrl: string,
  ) {}

  static async start(): Promise<TestIdp> {
    let idp: TestIdp | undefined;
    const server = createServer((req, res) => {
      idp!.fetches++;
      const body = JSON.stringify({ keys: [...idp!.published].map((kid) => idp!.keys.get(kid)!.jwk) });
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
      res.end(body);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    idp = new TestIdp(server, `http://127.0.0.1:${port}/.well-known/jwks.json`);
    return idp;
  }

  /** A new key pair under `kid`; published in the JWKS unless `publish` is false. */
  async addKey(kid: string, alg: Alg, publish = true): Promise<Key> {
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
    const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
    const k = { alg, privateKey, publicKey, jwk };
    this.keys.set(kid, k);
    if (publish) this.published.add(kid);
    return k;
  }

  publish(kid: string): void {
    this.published.add(kid);
  }

  /** Takes a key out of the served JWKS (a retired key); its private half can still sign. */
  unpublish(kid: string): void {
    this.published.delete(kid);
  }

  /** A signed token; by default sub alice, this issuer and audience, valid for 5 minutes. */
  async sign(kid: string, o: TokenOptions = {}, signWith?: CryptoKey): Promise<string> {
    const k = this.keys.get(kid);
    if (!k) throw new Error(`no key ${kid}`);
    const now = Math.floor(Date.now() / 1000);
    const jwt = new SignJWT({ ...(o.claims ?? {}) })
      .setProtectedHeader({ alg: k.alg, kid, typ: "JWT" })
      .setSubject(o.sub ?? "alice")
      .setIssuer(o.iss ?? ISSUER)
      .setAudience(o.aud ?? AUDIENCE)
      .setIssuedAt(now);
    if (o.expIn !== null) jwt.setExpirationTime(now + (o.expIn ?? 300));
    if (o.nbfIn !== undefined) jwt.setNotBefore(now + o.nbfIn);
    return jwt.sign(signWith ?? k.privateKey);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.closeAllConnections();
      this.server.close(() => resolve());
    });
  }
}

export function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString("base64url");
}
