/**
 * The gateway's auth step (src/core/gateway.ts calls check() before the
 * router lookup, inside the region the observer and the audit log see):
 *
 *   credentials → principal   bearer JWT (cached after the first verification),
 *                             API key, verified client certificate, anonymous role,
 *                             else UNAUTHENTICATED
 *   principal × namespace × permission → RBAC (src/auth/rbac.ts), then OPA if configured
 *
 * check() returns undefined when it decided synchronously (the hot path: a
 * cached token and a cached RBAC decision, no await) and a Promise when it had
 * to verify a signature or ask OPA. Refusals throw PrismErrors.
 */
import type { RequestContext } from "../core/context.js";
import { errors } from "../core/errors.js";
import { METHODS, type MethodDef } from "../core/methods.js";
import { UNVERIFIED_PRINCIPAL, type Credentials, type PeerCertificate, type Principal } from "./types.js";
import type { AuthConfig, Permission } from "./config.js";
import { compileMethodPermissions, type MethodPermission } from "./permissions.js";
import { Rbac, claimAt, type Identity } from "./rbac.js";
import { JwtVerifier } from "./jwt.js";
import { ApiKeys } from "./apikeys.js";
import { OpaClient } from "./opa.js";
import { authErrors } from "./errors.js";
import { principalFromCert } from "./mtls.js";
import { turnNow } from "./lru.js";

const NONE: readonly string[] = Object.freeze([]);
const MAX_CERT_PRINCIPALS = 10_000;

export interface AuthOptions {
  /** server.tls.principal_from: which certificate field names an mTLS principal. */
  certPrincipalFrom?: "cn" | "san";
}

export class AuthGate {
  readonly rbac: Rbac;
  private readonly perms: (MethodPermission | undefined)[];
  private readonly jwt: JwtVerifier | undefined;
  private readonly keys: ApiKeys | undefined;
  private readonly opa: OpaClient | undefined;
  private readonly anonymous: Principal | undefined;
  private readonly certFrom: "cn" | "san";
  /** Certificate fingerprint → principal (roles resolved once per certificate). */
  private readonly certPrincipals = new Map<string, Principal>();

  constructor(cfg: AuthConfig, opts: AuthOptions = {}) {
    this.rbac = new Rbac(cfg);
    this.perms = compileMethodPermissions(METHODS);
    this.certFrom = opts.certPrincipalFrom ?? "cn";
    const jwt = cfg.jwt;
    if (jwt !== undefined) {
      this.jwt = new JwtVerifier(jwt, (c) => {
        const claims = c as Record<string, unknown>;
        return this.principal({
          kind: "jwt",
          id: c.sub,
          groups: jwt.groups_claim === null ? NONE : strings(claimAt(claims, jwt.groups_claim)),
          roles: jwt.roles_claim === null ? NONE : strings(claimAt(claims, jwt.roles_claim)),
          scopes: jwt.scope_claim === null ? NONE : strings(claimAt(claims, jwt.scope_claim)),
          claims,
        });
      });
    }
    if (cfg.api_keys.length > 0) {
      this.keys = new ApiKeys(cfg.api_keys, (k) => this.principal({ kind: "apikey", id: k.name, groups: k.groups, roles: k.roles, scopes: NONE }));
    }
    if (cfg.opa !== undefined) this.opa = new OpaClient(cfg.opa);
    if (cfg.anonymous !== undefined) {
      this.anonymous = this.principal({ kind: "anonymous", id: "anonymous", groups: NONE, roles: [cfg.anonymous], scopes: NONE });
    }
  }

  /** Authenticates and authorizes one call; sets ctx.principal. undefined: allowed now. */
  check(ctx: RequestContext, req: any): Promise<void> | undefined {
    const mp = this.perms[ctx.method.id];
    // compileMethodPermissions covered every method at start; a method added later fails closed.
    if (mp === undefined) throw errors.internal(`${ctx.method.path} has no permission in src/auth/permissions.ts`);
    if (mp.scope === "open") return undefined;
    const p = this.authenticate(ctx.credentials);
    if (p instanceof Promise) {
      return p.then((principal) => {
        ctx.principal = principal;
        return this.authorize(principal, ctx.method, mp, req);
      });
    }
    ctx.principal = p;
    return this.authorize(p, ctx.method, mp, req);
  }

  /** Credentials → principal, synchronously when cached (WebSocket AUTH frames call it directly). */
  authenticate(creds: Credentials | undefined): Principal | Promise<Principal> {
    if (creds !== undefined) {
      const bearer = creds.bearer;
      if (bearer !== undefined) {
        if (bearer === "") throw authErrors.unauthenticated("Authorization: Bearer with an empty token");
        if (bearer.includes(" ")) throw authErrors.unauthenticated("Authorization: unsupported scheme (send Bearer <token> or ApiKey <key>)");
        if (this.jwt === undefined) throw authErrors.unauthenticated("bearer tokens are not accepted by this server (auth.jwt is not configured)");
        return this.jwt.cached(bearer, turnNow()) ?? this.jwt.verify(bearer);
      }
      if (creds.apiKey !== undefined) {
        if (this.keys === undefined) throw authErrors.unauthenticated("API keys are not accepted by this server (auth.api_keys is empty)");
        return this.keys.lookup(creds.apiKey);
      }
      if (creds.cert !== undefined) return this.certPrincipal(creds.cert);
    }
    if (this.anonymous !== undefined) return this.anonymous;
    throw authErrors.unauthenticated("credentials required: send Authorization: Bearer <token>, an API key (x-api-key) or a client certificate");
  }

  /**
   * The principal key (`<kind>:<id>`, `anonymous`) that a request's unfinished bytes are charged to
   * (server.per_principal.max_buffered_bytes), from the credentials of its headers, before its body is
   * read. Synchronous and cheap, with no new verification work: a token already in the JWT cache, an API
   * key that verified before or matches a sha256 hash (a hash and constant-time comparisons, as lookup()
   * makes anyway), a client certificate the TLS layer verified, the anonymous role for no credentials.
   *
   * Everything else (a token not verified yet, an unknown key, a key only scrypt could verify, other
   * schemes) is charged to the one shared UNVERIFIED_PRINCIPAL bucket, never to the principal it claims:
   * a forged token naming `sub: victim` would otherwise fill the victim's budget. Nor does each unverified
   * credential get a bucket of its own (say, under its hash): an attacker mints a fresh string per
   * connection for free, so per-credential buckets would bound nothing. The cost of sharing: while the
   * unverified bucket is full, a legitimate caller's very first body with a token not yet in the cache is
   * refused (429 / RESOURCE_EXHAUSTED, retryable); once one of its calls has verified (a small call, any
   * call without a large body), its token is cached and its bodies are charged to its own key.
   */
  bufferKey(creds: Credentials | undefined): string {
    if (creds !== undefined) {
      const bearer = creds.bearer;
      if (bearer !== undefined) {
        const p = bearer === "" ? undefined : this.jwt?.cached(bearer, turnNow());
        return p === undefined ? UNVERIFIED_PRINCIPAL : keyOf(p);
      }
      if (creds.apiKey !== undefined) {
        const p = this.keys?.known(creds.apiKey);
        return p === undefined ? UNVERIFIED_PRINCIPAL : keyOf(p);
      }
      if (creds.cert !== undefined) {
        try {
          return keyOf(this.certPrincipal(creds.cert));
        } catch {
          return UNVERIFIED_PRINCIPAL; // the certificate lacks the field that names it: refused once decoded
        }
      }
    }
    return this.anonymous !== undefined ? "anonymous" : UNVERIFIED_PRINCIPAL;
  }

  /** RBAC, then OPA. */
  authorize(p: Principal, m: MethodDef, mp: MethodPermission, req: any): Promise<void> | undefined {
    const global = mp.scope === "global";
    const ns = global ? "*" : String(req?.[mp.field] ?? "");
    const perm = mp.permission;
    if (!this.rbac.allowed(p, ns, perm, global)) throw this.denial(p, ns, perm, global);
    const opa = this.opa;
    if (opa === undefined) return undefined;
    const method = `${m.service}/${m.name}`;
    const known = opa.cached(p, ns, method);
    if (known === true) return undefined;
    if (known === false) throw this.denial(p, ns, perm, global);
    return opa.allow(p, ns, perm, method).then((ok) => {
      if (!ok) throw this.denial(p, ns, perm, global);
    });
  }

  private denial(p: Principal, ns: string, perm: Permission, global: boolean) {
    const who = `${p.kind}:${p.id}`;
    return global ? authErrors.deniedGlobal(perm, who) : authErrors.denied(ns, perm, who);
  }

  private certPrincipal(cert: PeerCertificate): Principal {
    const key = `${cert.fingerprint256}\0${cert.subjectCN ?? ""}`;
    let p = this.certPrincipals.get(key);
    if (p === undefined) {
      const base = principalFromCert(cert, this.certFrom);
      p = this.principal({ kind: "mtls", id: base.id, groups: NONE, roles: NONE, scopes: NONE });
      if (this.certPrincipals.size >= MAX_CERT_PRINCIPALS) this.certPrincipals.clear();
      this.certPrincipals.set(key, p);
    }
    return p;
  }

  /** The principal of an identity: its roles are its own defined ones plus those of matching grants. */
  private principal(who: Identity): Principal {
    return Object.freeze({
      id: who.id,
      kind: who.kind,
      groups: Object.freeze([...who.groups]),
      roles: Object.freeze(this.rbac.rolesOf(who)),
      scopes: Object.freeze([...who.scopes]),
      ...(who.claims !== undefined ? { claims: Object.freeze({ ...who.claims }) } : {}),
    });
  }
}

/** As principalKey (src/core/gateway.ts): how grants, the audit log and per_principal name a principal. */
function keyOf(p: Principal): string {
  return p.kind === "anonymous" ? "anonymous" : `${p.kind}:${p.id}`;
}

/** A claim as a list of strings: an array's strings, or a space-separated string (OAuth `scope`). */
function strings(v: unknown): readonly string[] {
  if (typeof v === "string") return v.split(/[\s,]+/).filter((s) => s !== "");
  if (Array.isArray(v)) return v.filter((s): s is string => typeof s === "string");
  return NONE;
}

/** The auth step for a config's `auth:` block. */
export function createAuth(cfg: AuthConfig, opts: AuthOptions = {}): AuthGate {
  return new AuthGate(cfg, opts);
}
