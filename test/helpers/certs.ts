/**
 * Test certificates made with Debian's openssl in a temporary directory: a CA,
 * server certificates (SAN 127.0.0.1 / localhost), client certificates from
 * that CA, from another CA, and expired ones (`-days -1`: notAfter before
 * notBefore, so already expired when issued; faketime is not available).
 * EC P-256 keys: a whole set takes a few tens of milliseconds.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";

export interface KeyPair {
  cert: string;
  key: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: ["ignore", "ignore", "pipe"] });
}

/** A random positive serial (hex), so that two certificates for the same name differ. */
export function randomSerial(): string {
  const b = randomBytes(12);
  b[0] = (b[0]! & 0x7f) | 0x10;
  return b.toString("hex");
}

export class CertDir {
  readonly dir: string;
  constructor(prefix = "prism-certs-") {
    this.dir = mkdtempSync(join(tmpdir(), prefix));
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  read(name: string): Buffer {
    return readFileSync(this.path(name));
  }

  /** A self-signed CA: <name>.crt, <name>.key. */
  ca(name: string, cn = `${name} test CA`): KeyPair {
    const pair = { cert: this.path(`${name}.crt`), key: this.path(`${name}.key`) };
    openssl(
      ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", pair.key, "-out", pair.cert, "-days", "2", "-subj", `/CN=${cn}`,
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-set_serial", `0x${randomSerial()}`],
      this.dir,
    );
    return pair;
  }

  /**
   * A certificate signed by `ca`: <name>.crt, <name>.key. usage server: SAN
   * IP:127.0.0.1, DNS:localhost (plus `san`); client: clientAuth, SAN `san` if given.
   * days -1: expired.
   */
  issue(ca: KeyPair, name: string, o: { cn: string; usage: "server" | "client"; san?: string[]; days?: number; serial?: string }): KeyPair & { serial: string } {
    const pair = { cert: this.path(`${name}.crt`), key: this.path(`${name}.key`) };
    const csr = this.path(`${name}.csr`);
    const ext = this.path(`${name}.ext`);
    const san = o.usage === "server" ? ["IP:127.0.0.1", "DNS:localhost", ...(o.san ?? [])] : (o.san ?? []);
    writeFileSync(
      ext,
      [
        "basicConstraints=CA:FALSE",
        "keyUsage=critical,digitalSignature",
        `extendedKeyUsage=${o.usage === "server" ? "serverAuth" : "clientAuth"}`,
        ...(san.length ? [`subjectAltName=${san.join(",")}`] : []),
      ].join("\n") + "\n",
    );
    openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", pair.key, "-out", csr, "-subj", `/CN=${o.cn}`], this.dir);
    const serial = o.serial ?? randomSerial();
    openssl(["x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-out", pair.cert, "-days", String(o.days ?? 2), "-set_serial", `0x${serial}`, "-extfile", ext], this.dir);
    return { ...pair, serial };
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The usual set: CA, server, a good client, a client of another CA, an expired client. */
export function standardCerts(prefix?: string) {
  const d = new CertDir(prefix);
  const ca = d.ca("ca");
  const otherCa = d.ca("other-ca");
  const server = d.issue(ca, "server", { cn: "prism-test-server", usage: "server" });
  const client = d.issue(ca, "client", { cn: "orders.svc", usage: "client", san: ["URI:spiffe://test/orders"] });
  const foreign = d.issue(otherCa, "foreign-client", { cn: "intruder.svc", usage: "client" });
  const expired = d.issue(ca, "expired-client", { cn: "expired.svc", usage: "client", days: -1 });
  return { dir: d, ca, otherCa, server, client, foreign, expired };
}
