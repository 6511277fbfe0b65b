/**
 * Bearer JWT verification (jose): signature against the issuer's JWKS (a URL,
 * cached and refetched on an unknown `kid` at most once per jwks_cooldown_ms,
 * or a file re-read the same way), only the configured asymmetric algorithms
 * (HS* and `none` can never verify: no secret key is ever configured and the
 * algorithm list excludes them), `exp` required, `nbf`, `iss` and `aud`
 * enforced with clock_skew_s of tolerance.
 *
 * Verified tokens are remembered until their `exp` in a bounded LRU keyed by
 * the token string, so every later call with the same token is one
 * synchronous lookup; concurrent first calls share one verification.
 */
import { readFileSync } from "node:fs";
import { createLocalJWKSet, createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey, type JSONWebKeySet } from "jose";
import type { JwtConfig } from "./config.js";
import type { Principal } from "./types.js";
import { ExpiringLru } from "./lru.js";
import { authErrors } from "./errors.js";
import type { PrismError } from "../core/errors.js";

/** Tokens longer than this are refused before any parsing. */
const MAX_TOKEN_CHARS = 16 * 1024;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/; // an empty signature (alg none) is left to jose, which names the algorithm

export class JwtVerifier {
  private readonly cache: ExpiringLru<Principal>;
  private readonly pending = new Map<string, Promise<Principal>>();
  private readonly keys: JWTVerifyGetKey;
  private readonly skewMs: number;

  constructor(
    private readonly cfg: JwtConfig,
    /** Builds the principal (roles from grants) from verified claims. */
    private readonly toPrincipal: (claims: JWTPayload & { sub: string }) => Principal,
  ) {
    this.cache = new ExpiringLru(cfg.cache_size);
    this.skewMs = cfg.clock_skew_s * 1000;
    this.keys = cfg.jwks_url !== undefined
      ? createRemoteJWKSet(new URL(cfg.jwks_url), {
          cooldownDuration: cfg.jwks_cooldown_ms,
          cacheMaxAge: cfg.jwks_max_age_ms,
          timeoutDuration: cfg.jwks_timeout_ms,
        })
      : fileKeySet(cfg.jwks_file!, cfg.jwks_cooldown_ms);
  }

  /** A token verified before and not expired: its principal, synchronously. */
  cached(token: string, now: number): Principal | undefined {
    return this.cache.get(token, now);
  }

  verify(token: string): Promise<Principal> {
    let p = this.pending.get(token);
    if (p === undefined) {
      p = this.verifyOnce(token).finally(() => this.pending.delete(token));
      this.pending.set(token, p);
    }
    return p;
  }

  private async verifyOnce(token: string): Promise<Principal> {
    if (token.length > MAX_TOKEN_CHARS) throw authErrors.unauthenticated(`bearer token refused: longer than ${MAX_TOKEN_CHARS} characters`);
    // RFC 7515 compact form only: three base64url segments without padding. A decoder that tolerates
    // "=" padding or stray characters would accept other spellings of a signed token.
    if (!COMPACT_JWS.test(token)) throw authErrors.unauthenticated("bearer token refused: not a compact JWS (three unpadded base64url segments)");
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.keys, {
        issuer: this.cfg.issuer,
        audience: this.cfg.audience,
        algorithms: this.cfg.algorithms,
        clockTolerance: this.cfg.clock_skew_s,
        requiredClaims: ["exp", "sub"],
      }));
    } catch (e) {
      throw refusal(e);
    }
    if (typeof payload.sub !== "string" || payload.sub === "") throw authErrors.unauthenticated("bearer token refused: no sub claim");
    const principal = this.toPrincipal(payload as JWTPayload & { sub: string });
    this.cache.set(token, principal, payload.exp! * 1000 + this.skewMs);
    return principal;
  }
}

/** A JWKS file, re-read on an unknown kid (at most once per cooldown) so keys rotate without restart. */
function fileKeySet(path: string, cooldownMs: number): JWTVerifyGetKey {
  const load = () => createLocalJWKSet(JSON.parse(readFileSync(path, "utf8")) as JSONWebKeySet);
  let current = load();
  let loadedAt = Date.now();
  return async (header, token) => {
    try {
      return await current(header, token);
    } catch (e) {
      if (!(e instanceof joseErrors.JWKSNoMatchingKey) || Date.now() - loadedAt < cooldownMs) throw e;
      try {
        current = load();
      } catch {
        throw e;
      } finally {
        loadedAt = Date.now();
      }
      return current(header, token);
    }
  };
}

/** jose's failure → UNAUTHENTICATED naming what failed (never the token), or UNAVAILABLE when keys cannot be fetched. */
function refusal(e: unknown): PrismError {
  if (e instanceof joseErrors.JWTExpired) return authErrors.unauthenticated("bearer token refused: expired (exp)");
  if (e instanceof joseErrors.JWTClaimValidationFailed) {
    const why =
      e.claim === "nbf" ? "not valid yet (nbf)"
      : e.claim === "iss" ? "issuer (iss) not accepted"
      : e.claim === "aud" ? "audience (aud) not accepted"
      : `claim ${e.claim} ${e.reason === "missing" ? "missing" : "invalid"}`;
    return authErrors.unauthenticated(`bearer token refused: ${why}`);
  }
  if (e instanceof joseErrors.JOSEAlgNotAllowed) return authErrors.unauthenticated("bearer token refused: signature algorithm not accepted");
  if (e instanceof joseErrors.JWSSignatureVerificationFailed) return authErrors.unauthenticated("bearer token refused: signature does not verify");
  if (e instanceof joseErrors.JWKSNoMatchingKey) return authErrors.unauthenticated("bearer token refused: no key of the issuer matches its kid");
  if (e instanceof joseErrors.JWKSTimeout) return authErrors.unavailable("the identity provider's keys (jwks_url) did not answer in time");
  if (e instanceof joseErrors.JWKSInvalid) return authErrors.unavailable("the identity provider's key set (JWKS) is invalid");
  if (e instanceof joseErrors.JOSEError) return authErrors.unauthenticated("bearer token refused: malformed or unsupported token");
  // fetch() failures (connection refused…): the keys are unavailable, not the caller's fault.
  return authErrors.unavailable(`the identity provider's keys could not be fetched: ${(e as Error)?.message ?? String(e)}`);
}
