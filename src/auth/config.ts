/**
 * The `auth:` block of prism.yaml: who may call (JWT, API keys, verified
 * client certificates — server.tls.client_ca, id per server.tls.principal_from —,
 * an anonymous role) and what they may do (roles → permissions per namespace
 * pattern, granted to principals, groups, claims or scopes; optionally OPA).
 * Cross-references (a grant naming an undefined role…) are checked here so a
 * typo fails at start with the field's path, not as a silent denial later.
 */
import { z } from "zod";

export const PERMISSIONS = ["read", "write", "admin"] as const;
export type Permission = (typeof PERMISSIONS)[number];

/** Signature algorithms a JWT may use. HS* (shared secrets) and `none` are not offered at all. */
export const JWT_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"] as const;

/** Namespace pattern: a namespace name where `*` stands for any run of characters. */
const NS_PATTERN = /^[A-Za-z0-9_.*-]{1,128}$/;
const ROLE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
/** `sha256:<64 hex>` or `scrypt:<salt hex>:<64-byte key hex>` (N=16384, r=8, p=1). */
const KEY_HASH = /^(sha256:[0-9a-f]{64}|scrypt:[0-9a-f]{16,128}:[0-9a-f]{128})$/;
/** Grant principal selectors: `<kind>:<id>` (kinds cannot impersonate each other) or `*` (anyone authenticated). */
const PRINCIPAL_REF = /^(\*|(jwt|apikey|mtls):.+)$/;

const strList = z.array(z.string().min(1));

export const jwtSchema = z
  .object({
    issuer: z.string().min(1),
    /** One audience or several (the token must name at least one). */
    audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
    jwks_url: z.string().url().optional(),
    /** A JWKS JSON file (re-read, at most once per jwks_cooldown_ms, when a token names an unknown kid). */
    jwks_file: z.string().min(1).optional(),
    clock_skew_s: z.number().int().min(0).max(600).default(30),
    algorithms: z.array(z.enum(JWT_ALGORITHMS)).min(1).default(["RS256", "ES256", "EdDSA"]),
    /** Claim names (dotted paths reach nested claims, e.g. realm_access.roles); null: not read. */
    roles_claim: z.string().min(1).nullable().default("roles"),
    groups_claim: z.string().min(1).nullable().default("groups"),
    scope_claim: z.string().min(1).nullable().default("scope"),
    /** Unknown `kid`: the key set is fetched again at most this often (jose's cooldownDuration). */
    jwks_cooldown_ms: z.number().int().min(0).default(30_000),
    /** Keys are refetched after this age even without an unknown kid (jose's cacheMaxAge). */
    jwks_max_age_ms: z.number().int().positive().default(600_000),
    jwks_timeout_ms: z.number().int().positive().default(5_000),
    /** Verified tokens remembered (until their exp) so the hot path does not verify signatures. */
    cache_size: z.number().int().min(0).default(10_000),
  })
  .strict()
  .superRefine((j, ctx) => {
    if ((j.jwks_url === undefined) === (j.jwks_file === undefined)) {
      ctx.addIssue({ code: "custom", path: ["jwks_url"], message: "give exactly one of jwks_url or jwks_file" });
    }
  });

export const apiKeySchema = z
  .object({
    /** The principal id (`apikey:<name>` in grants, audit). */
    name: z.string().min(1).max(128),
    /** Never the key itself: `sha256:<hex of sha256(key)>` or `scrypt:<salt hex>:<hex>`. */
    hash: z.string().regex(KEY_HASH, "must be sha256:<64 hex digits> or scrypt:<salt hex>:<128 hex digits>"),
    roles: z.array(z.string().regex(ROLE_NAME)).default([]),
    groups: strList.default([]),
  })
  .strict();

export const roleRuleSchema = z
  .object({
    namespaces: z.array(z.string().regex(NS_PATTERN, "must be a namespace name; * matches any characters (team-a.*, *)")).min(1),
    permissions: z.array(z.enum(PERMISSIONS)).min(1),
  })
  .strict();

export const grantSchema = z
  .object({
    role: z.string().regex(ROLE_NAME),
    principals: z.array(z.string().regex(PRINCIPAL_REF, "must be * or <kind>:<id> with kind jwt, apikey or mtls (e.g. jwt:alice, mtls:orders.svc)")).min(1).optional(),
    groups: strList.min(1).optional(),
    /** JWT claim → required value (an array claim matches when it contains the value). */
    claims: z.record(z.string().min(1), z.union([z.string(), z.number(), z.boolean()])).optional(),
    scopes: strList.min(1).optional(),
  })
  .strict()
  .refine((g) => g.principals || g.groups || g.claims || g.scopes, "a grant needs principals, groups, claims or scopes (every listed kind must match)");

export const opaSchema = z
  .object({
    /** The decision's data API, e.g. http://127.0.0.1:8181/v1/data/prism/allow. */
    url: z.string().url(),
    timeout_ms: z.number().int().positive().max(60_000).default(500),
    /** How long an answer is reused for the same principal, namespace and method (0: ask every call). */
    cache_ttl_ms: z.number().int().min(0).default(0),
  })
  .strict();

export const authSchema = z
  .object({
    jwt: jwtSchema.optional(),
    api_keys: z.array(apiKeySchema).default([]),
    /** A role for calls without credentials; absent: they are refused UNAUTHENTICATED. */
    anonymous: z.string().regex(ROLE_NAME).optional(),
    roles: z.record(z.string().regex(ROLE_NAME, "role names are 1-128 of A-Z a-z 0-9 _ . : -"), z.array(roleRuleSchema)).default({}),
    grants: z.array(grantSchema).default([]),
    opa: opaSchema.optional(),
  })
  .strict()
  .superRefine((a, ctx) => {
    const known = (role: string, path: (string | number)[]) => {
      if (!Object.hasOwn(a.roles, role)) ctx.addIssue({ code: "custom", path, message: `role "${role}" is not defined under auth.roles` });
    };
    a.grants.forEach((g, i) => known(g.role, ["grants", i, "role"]));
    a.api_keys.forEach((k, i) => k.roles.forEach((r, j) => known(r, ["api_keys", i, "roles", j])));
    if (a.anonymous !== undefined) known(a.anonymous, ["anonymous"]);
    const names = new Set<string>();
    a.api_keys.forEach((k, i) => {
      if (names.has(k.name)) ctx.addIssue({ code: "custom", path: ["api_keys", i, "name"], message: `duplicate API key name "${k.name}"` });
      names.add(k.name);
    });
  });

export type AuthConfig = z.output<typeof authSchema>;
export type JwtConfig = z.output<typeof jwtSchema>;
export type ApiKeyConfig = z.output<typeof apiKeySchema>;
export type OpaConfig = z.output<typeof opaSchema>;
