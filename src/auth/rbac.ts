/**
 * Namespace RBAC, compiled once from auth.roles and auth.grants.
 *
 * - A principal's roles: the ones its credential names (a JWT's roles claim,
 *   an API key's roles, the anonymous role) plus the role of every grant that
 *   matches it. Computed when the principal is built (once per verified token).
 * - A role set's permissions per namespace: the union of its rules whose
 *   pattern matches, as a bit mask cached per namespace. Principals with the
 *   same roles share one cache, so the hot path is a WeakMap read and a Map read.
 * - Permissions are independent: admin does not imply read or write (an
 *   operator who reconfigures namespaces need not read their data).
 */
import type { Principal } from "./types.js";
import type { AuthConfig, Permission } from "./config.js";

export const PERM_BIT: Readonly<Record<Permission, number>> = { read: 1, write: 2, admin: 4 };
/** Namespaces a role set remembers before its cache starts over. */
const MAX_CACHED_NAMESPACES = 4096;

interface Rule {
  /** undefined: matches every namespace. */
  match: RegExp | string | undefined;
  mask: number;
}

function compilePattern(p: string): RegExp | string | undefined {
  if (/^\*+$/.test(p)) return undefined;
  if (!p.includes("*")) return p;
  const re = p.split("*").map((s) => s.replace(/[.\\^$+?()[\]{}|-]/g, "\\$&")).join(".*");
  return new RegExp(`^${re}$`);
}

/** The permissions of one set of roles. */
class RoleSet {
  private readonly cache = new Map<string, number>();
  /** What gateway-wide calls get: the rules for every namespace (`*`). */
  readonly globalMask: number;

  constructor(private readonly rules: readonly Rule[]) {
    let g = 0;
    for (const r of rules) if (r.match === undefined) g |= r.mask;
    this.globalMask = g;
  }

  mask(ns: string): number {
    let m = this.cache.get(ns);
    if (m !== undefined) return m;
    m = 0;
    for (const r of this.rules) {
      const k = r.match;
      if (k === undefined || (typeof k === "string" ? k === ns : k.test(ns))) m |= r.mask;
    }
    if (this.cache.size >= MAX_CACHED_NAMESPACES) this.cache.clear();
    this.cache.set(ns, m);
    return m;
  }
}

/** What a credential says about its holder before grants are applied. */
export interface Identity {
  kind: Principal["kind"];
  id: string;
  groups: readonly string[];
  /** Roles named by the credential itself. */
  roles: readonly string[];
  scopes: readonly string[];
  claims?: Readonly<Record<string, unknown>>;
}

interface Grant {
  role: string;
  principals?: ReadonlySet<string>;
  groups?: readonly string[];
  claims?: readonly [string, string | number | boolean][];
  scopes?: readonly string[];
}

export class Rbac {
  private readonly roleRules = new Map<string, Rule[]>();
  private readonly grants: Grant[];
  private readonly sets = new Map<string, RoleSet>();
  private readonly byPrincipal = new WeakMap<Principal, RoleSet>();

  constructor(cfg: Pick<AuthConfig, "roles" | "grants">) {
    for (const [role, rules] of Object.entries(cfg.roles)) {
      const out: Rule[] = [];
      for (const r of rules) {
        let mask = 0;
        for (const p of r.permissions) mask |= PERM_BIT[p];
        for (const n of r.namespaces) out.push({ match: compilePattern(n), mask });
      }
      this.roleRules.set(role, out);
    }
    this.grants = cfg.grants.map((g) => ({
      role: g.role,
      principals: g.principals ? new Set(g.principals) : undefined,
      groups: g.groups,
      claims: g.claims ? Object.entries(g.claims) : undefined,
      scopes: g.scopes,
    }));
  }

  /** The defined roles an identity holds (sorted, unique): its own plus every matching grant's. */
  rolesOf(who: Identity): string[] {
    const out = new Set<string>();
    for (const r of who.roles) if (this.roleRules.has(r)) out.add(r);
    for (const g of this.grants) if (grantMatches(g, who)) out.add(g.role);
    return [...out].sort();
  }

  /** The principal's permission bits on a namespace ("*" checks gateway-wide rules only). */
  mask(p: Principal, ns: string, global = false): number {
    let set = this.byPrincipal.get(p);
    if (set === undefined) {
      set = this.roleSet(p.roles);
      this.byPrincipal.set(p, set);
    }
    return global ? set.globalMask : set.mask(ns);
  }

  allowed(p: Principal, ns: string, perm: Permission, global = false): boolean {
    return (this.mask(p, ns, global) & PERM_BIT[perm]) !== 0;
  }

  private roleSet(roles: readonly string[]): RoleSet {
    const key = roles.join("\n");
    let set = this.sets.get(key);
    if (set === undefined) {
      const rules: Rule[] = [];
      for (const r of roles) rules.push(...(this.roleRules.get(r) ?? []));
      set = new RoleSet(rules);
      this.sets.set(key, set);
    }
    return set;
  }
}

/** Every selector kind a grant lists must match (one entry of each list suffices). */
function grantMatches(g: Grant, who: Identity): boolean {
  if (g.principals !== undefined && !g.principals.has("*") && !g.principals.has(`${who.kind}:${who.id}`)) return false;
  if (g.principals !== undefined && who.kind === "anonymous") return false;
  if (g.groups !== undefined && !g.groups.some((x) => who.groups.includes(x))) return false;
  if (g.scopes !== undefined && !g.scopes.some((x) => who.scopes.includes(x))) return false;
  if (g.claims !== undefined) {
    const c = who.claims;
    if (c === undefined) return false;
    for (const [name, want] of g.claims) {
      const v = claimAt(c, name);
      if (Array.isArray(v) ? !v.includes(want) : v !== want) return false;
    }
  }
  return true;
}

/** A claim by name, or by dotted path into nested objects (realm_access.roles). */
export function claimAt(claims: Readonly<Record<string, unknown>>, name: string): unknown {
  if (Object.hasOwn(claims, name)) return claims[name];
  if (!name.includes(".")) return undefined;
  let v: unknown = claims;
  for (const part of name.split(".")) {
    if (v === null || typeof v !== "object" || !Object.hasOwn(v, part)) return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}
