/**
 * Browser safety on the HTTP/WebSocket port. Prism has no authentication yet,
 * so a web page the operator merely visits must not be able to drive it:
 *
 * - Origin allow-list (server.allowed_origins, empty by default): a browser
 *   puts `Origin` on every cross-site request that can change state (fetch,
 *   form POSTs, WebSocket upgrades, EventSource); any request carrying an
 *   Origin that is not listed is refused with 403, the WebSocket upgrade too.
 *   Non-browser clients (the SDK, curl, grpcurl) send no Origin. A listed
 *   Origin gets CORS answers (preflight and Access-Control-Allow-Origin).
 * - Host check (server.allowed_hosts; default: localhost and the bind host,
 *   with the port): defeats DNS rebinding, where an attacker's name resolves to
 *   127.0.0.1 and the page becomes "same origin". A Host that is an IP literal
 *   always passes: rebinding needs a name. Anything else: 421.
 * - Content types (src/ingress/http.ts): JSON routes take application/json
 *   only; text/plain and form types (what a page can send without a
 *   preflight) get 415.
 */

export interface BrowserPolicy {
  /** Exact origins ("https://app.example", "http://localhost:3000") or "*". */
  allowedOrigins: readonly string[];
  /** "name" (any port), "name:port", or "*"; undefined: localhost and the bind host, with the port. */
  allowedHosts?: readonly string[];
}

export interface Refusal {
  status: 403 | 421;
  reason: string;
  message: string;
}

const IPV4 = /^[0-9]{1,3}(?:\.[0-9]{1,3}){3}$/;
const WILDCARD_BIND = new Set(["0.0.0.0", "::", "[::]", ""]);

/** `name[:port]` / `[v6][:port]` → lower-case name and port ("" when absent). */
function splitHost(host: string): { name: string; port: string } {
  const h = host.trim().toLowerCase();
  if (h.startsWith("[")) {
    const end = h.indexOf("]");
    if (end < 0) return { name: h, port: "" };
    return { name: h.slice(0, end + 1), port: h[end + 1] === ":" ? h.slice(end + 2) : "" };
  }
  const colon = h.lastIndexOf(":");
  const name = colon < 0 ? h : h.slice(0, colon);
  return { name: name.endsWith(".") ? name.slice(0, -1) : name, port: colon < 0 ? "" : h.slice(colon + 1) };
}

function isIpLiteral(name: string): boolean {
  return IPV4.test(name) || (name.startsWith("[") && name.endsWith("]"));
}

export class BrowserGuard {
  private readonly origins: ReadonlySet<string>;
  private readonly anyOrigin: boolean;
  private readonly anyHost: boolean;
  /** name → allowed ports ("" = any). */
  private readonly hosts = new Map<string, Set<string>>();
  /** Host header values seen, with the verdict (bounded). */
  private readonly seen = new Map<string, boolean>();

  constructor(
    private readonly policy: BrowserPolicy,
    private readonly bindHost: string,
  ) {
    this.anyOrigin = policy.allowedOrigins.includes("*");
    this.origins = new Set(policy.allowedOrigins.map((o) => o.replace(/\/+$/, "").toLowerCase()));
    this.anyHost = policy.allowedHosts?.includes("*") ?? false;
  }

  /** Called once the port is bound: the default host names are valid with it. */
  listening(port: number): void {
    this.hosts.clear();
    this.seen.clear();
    const add = (entry: string, defaultPort: string) => {
      const { name, port: p } = splitHost(entry);
      let ports = this.hosts.get(name);
      if (!ports) this.hosts.set(name, (ports = new Set()));
      ports.add(p || defaultPort);
    };
    if (this.policy.allowedHosts !== undefined) {
      for (const h of this.policy.allowedHosts) if (h !== "*") add(h, "");
      return;
    }
    add("localhost", String(port));
    const b = this.bindHost.trim().toLowerCase();
    if (!WILDCARD_BIND.has(b) && !isIpLiteral(b) && !b.includes(":")) add(b, String(port));
  }

  private hostAllowed(host: string): boolean {
    if (this.anyHost) return true;
    const cached = this.seen.get(host);
    if (cached !== undefined) return cached;
    const { name, port } = splitHost(host);
    let ok = isIpLiteral(name);
    if (!ok) {
      const ports = this.hosts.get(name);
      ok = ports !== undefined && (ports.has("") || ports.has(port));
    }
    if (this.seen.size > 256) this.seen.clear();
    this.seen.set(host, ok);
    return ok;
  }

  originAllowed(origin: string): boolean {
    return this.anyOrigin || this.origins.has(origin.replace(/\/+$/, "").toLowerCase());
  }

  /** Why a request (or WebSocket upgrade) with these headers is refused; undefined: allowed. */
  check(host: string | undefined, origin: string | undefined): Refusal | undefined {
    if (host !== undefined && !this.hostAllowed(host)) {
      return {
        status: 421,
        reason: "PRISM_ERR_HOST_NOT_ALLOWED",
        message: `Host ${JSON.stringify(host.slice(0, 100))} is not one this server answers for (server.allowed_hosts; IP addresses always work)`,
      };
    }
    if (origin !== undefined && !this.originAllowed(origin)) {
      return {
        status: 403,
        reason: "PRISM_ERR_ORIGIN_NOT_ALLOWED",
        message: `requests from web origin ${JSON.stringify(origin.slice(0, 100))} are refused (server.allowed_origins lists the allowed ones)`,
      };
    }
    return undefined;
  }
}

/** The JSON error body of a refusal (the shape of every Prism HTTP error). */
export function refusalBody(r: Refusal): string {
  return JSON.stringify({ error: { code: 7, status: "PERMISSION_DENIED", reason: r.reason, message: r.message } });
}

/** Media types a JSON route accepts: application/json (any parameters, e.g. charset). */
export function isJsonContentType(ct: string): boolean {
  const semi = ct.indexOf(";");
  const t = (semi < 0 ? ct : ct.slice(0, semi)).trim().toLowerCase();
  return t === "application/json";
}
