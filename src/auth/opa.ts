/**
 * An external decision point with OPA's data API: POST `{input: {...}}` to
 * auth.opa.url (e.g. http://opa:8181/v1/data/prism/allow); the answer
 * `{"result": true}` or `{"result": {"allow": true}}` allows, anything else
 * denies. It is asked only after RBAC allowed (both must agree). Failing
 * closed: a timeout, a connection error or a non-2xx answer refuses the call
 * with UNAVAILABLE (retryable, and distinct from a policy's PERMISSION_DENIED).
 */
import type { OpaConfig, Permission } from "./config.js";
import type { Principal } from "./types.js";
import { ExpiringLru } from "./lru.js";
import { authErrors } from "./errors.js";

export interface OpaInput {
  principal: { id: string; kind: string; groups: readonly string[]; roles: readonly string[]; scopes: readonly string[]; claims?: Readonly<Record<string, unknown>> };
  namespace: string;
  permission: Permission;
  /** `Service/Method`, e.g. KeyValue/Get. */
  method: string;
}

export class OpaClient {
  private readonly cache: ExpiringLru<boolean> | undefined;

  constructor(private readonly cfg: OpaConfig) {
    this.cache = cfg.cache_ttl_ms > 0 ? new ExpiringLru(10_000) : undefined;
  }

  /** A cached answer (cache_ttl_ms > 0), else undefined. */
  cached(p: Principal, namespace: string, method: string): boolean | undefined {
    return this.cache?.get(cacheKey(p, namespace, method), Date.now());
  }

  async allow(p: Principal, namespace: string, permission: Permission, method: string): Promise<boolean> {
    const input: OpaInput = {
      principal: { id: p.id, kind: p.kind, groups: p.groups, roles: p.roles, scopes: p.scopes, claims: p.claims },
      namespace,
      permission,
      method,
    };
    let res: Response;
    let body: unknown;
    try {
      res = await fetch(this.cfg.url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ input }),
        signal: AbortSignal.timeout(this.cfg.timeout_ms),
      });
      body = res.ok ? await res.json() : undefined;
    } catch (e) {
      const why = (e as Error)?.name === "TimeoutError" ? `no answer within ${this.cfg.timeout_ms} ms` : (e as Error)?.message ?? String(e);
      throw authErrors.unavailable(`the authorization policy (auth.opa) could not decide: ${why}`);
    }
    if (!res.ok) throw authErrors.unavailable(`the authorization policy (auth.opa) answered HTTP ${res.status}`);
    const r = (body as { result?: unknown } | null)?.result;
    const ok = r === true || (typeof r === "object" && r !== null && (r as { allow?: unknown }).allow === true);
    this.cache?.set(cacheKey(p, namespace, method), ok, Date.now() + this.cfg.cache_ttl_ms);
    return ok;
  }
}

function cacheKey(p: Principal, namespace: string, method: string): string {
  return `${p.kind}:${p.id}\0${p.roles.join(",")}\0${namespace}\0${method}`;
}
