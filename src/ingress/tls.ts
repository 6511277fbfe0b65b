/**
 * TLS for every ingress (server.tls): the certificate, key and client CA read
 * from disk, the server options built from them, and rotation.
 *
 * Rotation: the files are stat()ed every reload_interval_ms (polling, not
 * fs.watch: a Kubernetes secret or certbot replaces files by renaming, which
 * an inotify watch on the old inode never sees). On a change all three are
 * read and checked again; a good set is pushed to every attached server
 * (tls.Server#setSecureContext: new connections get the new certificate,
 * open ones keep theirs); a bad set (half-written, key not matching) keeps
 * the previous one and logs a warning until the files change again.
 *
 * mTLS: requestCert with client_ca; rejectUnauthorized for client_auth
 * "require" (the handshake fails without a certificate that verifies against
 * client_ca, or with an expired one). peerCertificateOf() is what the
 * ingresses put on ctx.credentials.cert, computed once per connection.
 */
import { readFileSync, statSync } from "node:fs";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { createSecureContext, type PeerCertificate as NodePeerCertificate, type SecureContextOptions, type TLSSocket, type TlsOptions } from "node:tls";
import type { TlsConfig } from "../config/schema.js";
import type { Credentials, PeerCertificate } from "../auth/types.js";

type Log = (level: "info" | "warn" | "error", msg: string) => void;

/** What a server needs to swap its certificate (tls.Server, https.Server, Http2SecureServer). */
export interface SecureContextTarget {
  setSecureContext(options: SecureContextOptions): void;
}

const FILES = ["cert", "key", "client_ca"] as const;

interface Loaded {
  options: SecureContextOptions;
  /** Serial and expiry of the server certificate (logs). */
  serial: string;
  validTo: string;
}

/** Reads and checks the files; throws an Error naming the field and file of the first problem. */
function load(cfg: TlsConfig): Loaded {
  const read = (field: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (e) {
      throw new Error(`server.tls.${field}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  };
  const certPem = read("cert", cfg.cert);
  const keyPem = read("key", cfg.key);
  const caPem = cfg.client_ca === undefined ? undefined : read("client_ca", cfg.client_ca);
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (e) {
    throw new Error(`server.tls.cert: ${cfg.cert} is not a PEM certificate (${(e as Error).message})`);
  }
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch (e) {
    throw new Error(`server.tls.key: ${cfg.key} is not a PEM private key (${(e as Error).message})`);
  }
  if (!cert.checkPrivateKey(key)) throw new Error(`server.tls.key: ${cfg.key} does not belong to the certificate in ${cfg.cert}`);
  if (caPem !== undefined) {
    try {
      if (!caPem.includes("-----BEGIN CERTIFICATE-----")) throw new Error("no certificate in it");
      new X509Certificate(caPem);
    } catch (e) {
      throw new Error(`server.tls.client_ca: ${cfg.client_ca} is not a PEM CA bundle (${(e as Error).message})`);
    }
  }
  const options: SecureContextOptions = { cert: certPem, key: keyPem, minVersion: cfg.min_version, ...(caPem !== undefined ? { ca: caPem } : {}) };
  try {
    createSecureContext(options);
  } catch (e) {
    throw new Error(`server.tls: ${cfg.cert} / ${cfg.key}: ${(e as Error).message}`);
  }
  return { options, serial: cert.serialNumber, validTo: cert.validTo };
}

/** mtime, size and inode of each file: a change in any means "read them again". */
function stamp(cfg: TlsConfig): string {
  let s = "";
  for (const field of FILES) {
    const f = cfg[field];
    if (f === undefined) continue;
    try {
      const st = statSync(f);
      s += `${st.mtimeMs}:${st.size}:${st.ino};`;
    } catch {
      s += "missing;";
    }
  }
  return s;
}

/** The current TLS material of one process, shared by its ingresses. */
export class TlsMaterial {
  private loaded: Loaded;
  private stamp: string;
  private readonly targets = new Set<(o: SecureContextOptions) => void>();
  private readonly timer: NodeJS.Timeout;
  private lastProblem = "";

  /** Reads the files (throws naming the file on a problem) and starts watching them. */
  constructor(
    readonly config: TlsConfig,
    private readonly log: Log,
  ) {
    this.stamp = stamp(config);
    this.loaded = load(config);
    this.warnIfExpired();
    this.timer = setInterval(() => this.check(), config.reload_interval_ms);
    this.timer.unref();
  }

  /** Client certificates are asked for (and, with "require", demanded). */
  get mtls(): boolean {
    return this.config.client_auth !== "none";
  }

  /** Secure-context options: certificate, key, CA and minimum version (what setSecureContext takes). */
  contextOptions(): SecureContextOptions {
    return this.loaded.options;
  }

  /** Server-level options (not part of a secure context): client certificates and the handshake limit. */
  serverOptions(handshakeTimeoutMs: number): TlsOptions {
    const auth = this.config.client_auth;
    return {
      requestCert: auth !== "none",
      rejectUnauthorized: auth === "require",
      minVersion: this.config.min_version,
      ...(handshakeTimeoutMs > 0 ? { handshakeTimeout: handshakeTimeoutMs } : {}),
    };
  }

  /** Everything a server is created with (server options + the current context). */
  createOptions(handshakeTimeoutMs: number): TlsOptions {
    return { ...this.serverOptions(handshakeTimeoutMs), ...this.loaded.options };
  }

  /** Keeps `server` on the current certificate; returns the detach function. */
  attach(server: SecureContextTarget): () => void {
    return this.subscribe((o) => server.setSecureContext(o));
  }

  /** Calls `fn` with the new context options after every successful reload. */
  subscribe(fn: (o: SecureContextOptions) => void): () => void {
    this.targets.add(fn);
    return () => this.targets.delete(fn);
  }

  /** Re-reads the files if they changed (the timer calls this; tests may too). */
  check(): void {
    const now = stamp(this.config);
    if (now === this.stamp) return;
    this.stamp = now;
    let next: Loaded;
    try {
      next = load(this.config);
    } catch (e) {
      const msg = (e as Error).message;
      if (msg !== this.lastProblem) this.log("warn", `tls: keeping the previous certificate: ${msg}`);
      this.lastProblem = msg;
      return;
    }
    this.lastProblem = "";
    this.loaded = next;
    for (const fn of this.targets) {
      try {
        fn(next.options);
      } catch (e) {
        this.log("warn", `tls: a listener did not take the new certificate: ${(e as Error).message}`);
      }
    }
    this.log("info", `tls: reloaded ${this.config.cert} (serial ${next.serial}, valid until ${next.validTo})`);
    this.warnIfExpired();
  }

  private warnIfExpired(): void {
    const until = Date.parse(this.loaded.validTo);
    if (Number.isFinite(until) && until < Date.now()) this.log("warn", `tls: the certificate in ${this.config.cert} expired on ${this.loaded.validTo}`);
  }

  close(): void {
    clearInterval(this.timer);
    this.targets.clear();
  }
}

/** Node's `subjectaltname` ("DNS:a, IP Address:1.2.3.4, URI:\"x, y\"": values with delimiters are JSON-quoted) → entries. */
export function parseSubjectAltName(s: string | undefined): string[] {
  const out: string[] = [];
  if (!s) return out;
  let i = 0;
  while (i < s.length) {
    const colon = s.indexOf(":", i);
    if (colon < 0) break;
    const type = s.slice(i, colon);
    let value: string;
    let j = colon + 1;
    if (s[j] === '"') {
      let k = j + 1;
      while (k < s.length && s[k] !== '"') k += s[k] === "\\" ? 2 : 1;
      try {
        value = JSON.parse(s.slice(j, k + 1)) as string;
      } catch {
        value = s.slice(j + 1, k);
      }
      j = k + 1;
    } else {
      const end = s.indexOf(", ", j);
      value = s.slice(j, end < 0 ? s.length : end);
      j = end < 0 ? s.length : end;
    }
    out.push(`${type}:${value}`);
    i = s.startsWith(", ", j) ? j + 2 : j + 1;
  }
  return out;
}

/** Node's parsed peer certificate → the shared PeerCertificate (src/auth/types.ts). */
export function toPeerCertificate(c: NodePeerCertificate): PeerCertificate {
  const cn = c.subject?.CN as string | string[] | undefined;
  return {
    ...(cn !== undefined ? { subjectCN: Array.isArray(cn) ? cn[0] : cn } : {}),
    san: parseSubjectAltName(c.subjectaltname),
    fingerprint256: c.fingerprint256,
  };
}

const PEER_CERT = Symbol("prism.peerCert");
type CachedSocket = TLSSocket & { [PEER_CERT]?: PeerCertificate | null };

/**
 * The verified client certificate of a TLS connection, or undefined (not TLS,
 * none sent, or not verified against client_ca). Cached on the socket: every
 * call of the connection shares it.
 */
export function peerCertificateOf(socket: unknown): PeerCertificate | undefined {
  const s = socket as CachedSocket | undefined;
  if (s === undefined || s === null || typeof s.getPeerCertificate !== "function") return undefined;
  const cached = s[PEER_CERT];
  if (cached !== undefined) return cached ?? undefined;
  let cert: PeerCertificate | null = null;
  if (s.authorized === true) {
    const c = s.getPeerCertificate();
    if (c && c.raw) cert = toPeerCertificate(c);
  }
  s[PEER_CERT] = cert;
  return cert ?? undefined;
}

/** ctx.credentials with the connection's certificate added (a new object: other fields may be per call). */
export function withCert(creds: Credentials | undefined, cert: PeerCertificate): Credentials {
  return creds === undefined ? { cert } : { ...creds, cert };
}
