/**
 * mTLS identities: a verified client certificate (PeerCertificate, filled in
 * by the ingresses from the TLS connection, src/ingress/tls.ts) → a Principal.
 * server.tls.principal_from picks the id: the subject CN, or the first
 * subjectAltName value (without its "DNS:" / "URI:" / … prefix, so a SPIFFE
 * id stays "spiffe://trust-domain/workload").
 */
import { Code, PrismError } from "../core/errors.js";
import { UNVERIFIED_PRINCIPAL, type PeerCertificate, type Principal } from "./types.js";

const NONE: readonly string[] = Object.freeze([]);

/** A SAN entry's value: "DNS:svc.example" → "svc.example", "IP Address:10.0.0.1" → "10.0.0.1". */
export function sanValue(entry: string): string {
  const i = entry.indexOf(":");
  return i < 0 ? entry : entry.slice(i + 1);
}

/** The principal of a verified client certificate. Throws UNAUTHENTICATED when the certificate lacks the configured field. */
export function principalFromCert(cert: PeerCertificate, from: "cn" | "san" = "cn"): Principal {
  let id: string | undefined;
  if (from === "san") {
    const first = cert.san[0];
    id = first === undefined ? undefined : sanValue(first);
  } else id = cert.subjectCN;
  if (id === undefined || id === "") {
    throw new PrismError(
      Code.UNAUTHENTICATED,
      "PRISM_ERR_UNAUTHENTICATED",
      `the client certificate has no ${from === "san" ? "subjectAltName" : "subject CN"} (server.tls.principal_from: ${from})`,
    );
  }
  return { id, kind: "mtls", groups: NONE, roles: NONE, scopes: NONE };
}

/**
 * With mTLS required (server.tls.client_auth: require) and no `auth:` block, the
 * TLS layer is the authentication: every call has a verified certificate. This
 * gate only names the caller (ctx.principal, so audit records carry it); it
 * authorizes every verified caller, as the TLS configuration says.
 */
export function mtlsIdentityGate(from: "cn" | "san" = "cn"): {
  check(ctx: { credentials?: { cert?: PeerCertificate }; principal: Principal | undefined }): undefined;
  bufferKey(creds: { cert?: PeerCertificate } | undefined): string;
} {
  return {
    // The connection's verified certificate names the principal; without one the call is refused once decoded.
    bufferKey(creds) {
      const cert = creds?.cert;
      if (cert === undefined) return UNVERIFIED_PRINCIPAL;
      try {
        return `mtls:${principalFromCert(cert, from).id}`;
      } catch {
        return UNVERIFIED_PRINCIPAL;
      }
    },
    check(ctx) {
      const cert = ctx.credentials?.cert;
      if (cert === undefined) throw new PrismError(Code.UNAUTHENTICATED, "PRISM_ERR_UNAUTHENTICATED", "a verified client certificate is required (server.tls.client_auth: require)");
      ctx.principal = principalFromCert(cert, from);
      return undefined;
    },
  };
}
