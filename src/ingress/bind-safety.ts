/**
 * Safe defaults: without authentication any process that reaches Prism's
 * ports may read, write and delete every namespace and reconfigure the
 * gateway. So a listener on anything but a loopback address needs an `auth`
 * block (src/auth) or mTLS that demands client certificates, unless the
 * operator says otherwise explicitly (--insecure-no-auth /
 * server.insecure_no_auth).
 */
import { BlockList, isIP } from "node:net";
import type { PrismConfig } from "../config/schema.js";

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");

/** 127.0.0.0/8, ::1 (also IPv4-mapped), and "localhost". Wildcards (0.0.0.0, ::) and other names are not. */
export function isLoopbackHost(host: string): boolean {
  let h = host.trim().toLowerCase();
  if (h.startsWith("[") && h.endsWith("]")) h = h.slice(1, -1);
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  if (h.startsWith("::ffff:") && isIP(h.slice(7)) === 4) h = h.slice(7);
  const family = isIP(h);
  return family !== 0 && LOOPBACK.check(h, family === 4 ? "ipv4" : "ipv6");
}

/** An `auth` block: every call is authenticated (src/auth/gate.ts); only its anonymous role, if any, lets callers in without credentials. */
function authBlockConfigured(config: PrismConfig): boolean {
  const auth = (config as { auth?: unknown }).auth;
  return auth !== undefined && auth !== null;
}

/** mTLS that refuses connections without a certificate from client_ca. */
function mtlsRequired(config: PrismConfig): boolean {
  const tls = config.server.tls;
  return tls !== undefined && tls.client_ca !== undefined && tls.client_auth === "require";
}

/** The reason `host` may not be bound with this config, or undefined when it may. */
export function bindRefusal(config: PrismConfig, host: string): string | undefined {
  if (isLoopbackHost(host) || config.server.insecure_no_auth === true) return undefined;
  if (authBlockConfigured(config) || mtlsRequired(config)) return undefined;
  return (
    `refusing to listen on ${host} without authentication: anyone who can reach that address could read, write and delete every namespace. ` +
    `Configure callers' identities in prism.yaml — an auth: block (auth.jwt for OIDC/JWT bearer tokens, or static API keys), ` +
    `or mTLS (server.tls with client_ca and client_auth: require) — or listen on a loopback address (server.host: 127.0.0.1, the default), ` +
    `or accept the risk explicitly with --insecure-no-auth (server.insecure_no_auth: true)`
  );
}

/** Throws when `host` may not be bound (see bindRefusal). */
export function checkBindSafety(config: PrismConfig, host: string): void {
  const why = bindRefusal(config, host);
  if (why !== undefined) throw new Error(why);
}
