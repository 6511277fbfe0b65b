/**
 * Identity types shared by the ingresses (which collect credentials), the
 * authenticator and authorizer (src/auth) and the audit log. Kept free of
 * imports so every layer may depend on it without cycles.
 */

/** What a verified TLS client certificate says (set by the ingress on every call of that connection). */
export interface PeerCertificate {
  /** Subject common name. */
  subjectCN?: string;
  /** subjectAltName entries as Node prints them, e.g. "DNS:svc.example", "URI:spiffe://…", "email:…". */
  san: string[];
  /** SHA-256 fingerprint (colon-separated hex, as Node's getPeerCertificate().fingerprint256). */
  fingerprint256: string;
}

/** Credentials an ingress collected for one call (or one connection). */
export interface Credentials {
  /** Bearer token (gRPC metadata `authorization`, HTTP `Authorization: Bearer`, WebSocket upgrade header or first frame). */
  bearer?: string;
  /** Static API key (`x-api-key` metadata / header, or `Authorization: ApiKey …`). */
  apiKey?: string;
  /** Verified mTLS client certificate (only when the TLS layer authorized it against client_ca). */
  cert?: PeerCertificate;
}

/** Who is calling, once authenticated. */
export interface Principal {
  /** Stable identity: JWT `sub`, certificate CN/SAN, API key name. */
  id: string;
  kind: "jwt" | "mtls" | "apikey" | "anonymous";
  groups: readonly string[];
  roles: readonly string[];
  scopes: readonly string[];
  /** Verified JWT claims (jwt only). */
  claims?: Readonly<Record<string, unknown>>;
}

/**
 * The one bucket that bodies with credentials not (yet) verified are charged to before they are decoded
 * (server.per_principal.max_buffered_bytes; AuthGate.bufferKey).
 */
export const UNVERIFIED_PRINCIPAL = "unverified";
