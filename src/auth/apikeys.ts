/**
 * Static API keys (service accounts). prism.yaml holds only hashes:
 * `sha256:<hex>` (a key from a random generator needs no slow hash) or
 * `scrypt:<salt hex>:<hex>` (N=16384, r=8, p=1; for keys people choose).
 * A presented key is hashed and compared with every configured hash in
 * constant time (timingSafeEqual, no early exit). A key that verified is
 * remembered (bounded map, only verified keys) so later calls skip hashing
 * (SHA-256 costs several µs here; scrypt tens of ms); an unknown key always
 * takes the constant-time path. Keys are never logged or echoed; refusals say
 * only that the key is unknown.
 */
import { createHash, scrypt, timingSafeEqual } from "node:crypto";
import type { ApiKeyConfig } from "./config.js";
import type { Principal } from "./types.js";
import { authErrors } from "./errors.js";

const SCRYPT = { N: 16384, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };
const MAX_KEY_CHARS = 1024;

interface Entry {
  principal: Principal;
  kind: "sha256" | "scrypt";
  salt?: Buffer;
  digest: Buffer;
}

export class ApiKeys {
  private readonly sha: Entry[] = [];
  private readonly slow: Entry[] = [];
  /** Presented keys that verified → principal. */
  private readonly verified = new Map<string, Principal>();

  constructor(keys: readonly ApiKeyConfig[], toPrincipal: (k: ApiKeyConfig) => Principal) {
    for (const k of keys) {
      const [kind, a, b] = k.hash.split(":") as [string, string, string | undefined];
      const principal = toPrincipal(k);
      if (kind === "sha256") this.sha.push({ principal, kind, digest: Buffer.from(a, "hex") });
      else this.slow.push({ principal, kind: "scrypt", salt: Buffer.from(a, "hex"), digest: Buffer.from(b!, "hex") });
    }
  }

  get size(): number {
    return this.sha.length + this.slow.length;
  }

  /** The key's principal, synchronously when possible; a Promise when scrypt must run; throws UNAUTHENTICATED. */
  lookup(key: string): Principal | Promise<Principal> {
    const known = this.verified.get(key);
    if (known !== undefined) return known;
    if (key.length === 0 || key.length > MAX_KEY_CHARS) throw authErrors.unauthenticated("API key refused: unknown key");
    const digest = createHash("sha256").update(key).digest();
    let found: Principal | undefined;
    for (const e of this.sha) if (timingSafeEqual(digest, e.digest) && found === undefined) found = e.principal;
    if (found !== undefined) return this.remember(key, found);
    if (this.slow.length === 0) throw authErrors.unauthenticated("API key refused: unknown key");
    return this.scryptLookup(key);
  }

  /**
   * The key's principal when it is known without slow work: a key that verified before, or one matching a
   * sha256 hash (the same constant-time comparison lookup() makes); undefined otherwise (an unknown key, or
   * one only scrypt could verify). Never throws, never starts scrypt.
   */
  known(key: string): Principal | undefined {
    const known = this.verified.get(key);
    if (known !== undefined) return known;
    if (key.length === 0 || key.length > MAX_KEY_CHARS || this.sha.length === 0) return undefined;
    const digest = createHash("sha256").update(key).digest();
    let found: Principal | undefined;
    for (const e of this.sha) if (timingSafeEqual(digest, e.digest) && found === undefined) found = e.principal;
    return found === undefined ? undefined : this.remember(key, found);
  }

  private remember(key: string, p: Principal): Principal {
    if (this.verified.size >= 10_000) this.verified.clear();
    this.verified.set(key, p);
    return p;
  }

  private async scryptLookup(key: string): Promise<Principal> {
    let found: Principal | undefined;
    for (const e of this.slow) {
      const d = await scryptAsync(key, e.salt!, e.digest.length);
      if (timingSafeEqual(d, e.digest) && found === undefined) found = e.principal;
    }
    if (found === undefined) throw authErrors.unauthenticated("API key refused: unknown key");
    return this.remember(key, found);
  }
}

function scryptAsync(key: string, salt: Buffer, len: number): Promise<Buffer> {
  return new Promise((resolve, reject) => scrypt(key, salt, len, SCRYPT, (err, d) => (err ? reject(err) : resolve(d))));
}

/** The config form of a key (docs, tests): `sha256:<hex>`. */
export function sha256KeyHash(key: string): string {
  return `sha256:${createHash("sha256").update(key).digest("hex")}`;
}
