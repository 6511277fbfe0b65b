/**
 * The header timeout holds behind TLS on both gRPC servers (issue 19): a
 * client that completes the TLS handshake (ALPN h2) and then sends nothing is
 * closed after server.header_timeout_ms (1 s here; idle_timeout_ms is 20 s, so
 * grpc-js's own idle close cannot pass for it), while a TLS client that makes
 * calls is served. On grpc-js the listener is Prism's and the connection is
 * injected into grpc-js (src/ingress/grpc-js-limits.ts): the TLS socket that
 * wraps the accepted one is closed through its HTTP/2 session.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { connect as tlsConnect } from "node:tls";
import { readFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client, credentials, Metadata, type ServiceError } from "@grpc/grpc-js";
import { startServer, type RunningServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { methodByName } from "../../src/core/methods.js";
import { encoder } from "../../src/ingress/grpc-codec.js";
import { standardCerts } from "../helpers/certs.js";

const HEALTH = methodByName("Admin", "Health")!;
const certs = standardCerts("prism-tls-ht-");

for (const grpcServer of ["http2", "grpc-js"] as const) {
  describe(`TLS gRPC (${grpcServer}): a handshake and then silence is closed after header_timeout_ms`, { timeout: 30_000 }, () => {
    let srv: RunningServer;
    const dataDir = mkdtempSync(join(tmpdir(), "prism-tls-ht-data-"));
    before(async () => {
      const config = await validateConfig(
        {
          server: {
            data_dir: dataDir,
            allowed_paths: [certs.dir.dir],
            grpc_server: grpcServer,
            header_timeout_ms: 1000,
            idle_timeout_ms: 20_000,
            tls: { cert: certs.server.cert, key: certs.server.key },
          },
          namespaces: [{ name: "d", backend: { type: "memstore" } }],
        },
        "grpc-tls-header-timeout.test",
      );
      srv = await startServer({ config, host: "127.0.0.1", grpcPort: 0, http: false, log: () => {} });
    });
    after(async () => {
      await srv?.close();
      rmSync(dataDir, { recursive: true, force: true });
    });

    it("the silent TLS client is closed within 8 s; a calling one is served", async () => {
      const t0 = Date.now();
      const silent = tlsConnect({ host: "127.0.0.1", port: srv.grpcPort, ALPNProtocols: ["h2"], ca: readFileSync(certs.ca.cert), servername: "localhost", rejectUnauthorized: false });
      silent.on("error", () => {});
      silent.resume();
      await new Promise<void>((resolve, reject) => {
        silent.once("secureConnect", () => resolve());
        silent.once("error", reject);
      });
      assert.equal(silent.alpnProtocol, "h2");
      const closed = new Promise<number>((resolve) => {
        const t = setTimeout(() => resolve(-1), 8000);
        silent.once("close", () => {
          clearTimeout(t);
          resolve(Date.now() - t0);
        });
      });

      const client = new Client(`127.0.0.1:${srv.grpcPort}`, credentials.createSsl(readFileSync(certs.ca.cert)));
      try {
        const code = await new Promise<number>((resolve) =>
          client.makeUnaryRequest(HEALTH.path, encoder(HEALTH.requestType) as (v: any) => Buffer, (b: Buffer) => HEALTH.responseType.decode(b), {}, new Metadata(), {}, (err: ServiceError | null) =>
            resolve(err?.code ?? 0),
          ),
        );
        assert.equal(code, 0, "a TLS client making calls is served");
        const ms = await closed;
        assert.ok(ms > 0, "the silent TLS connection was not closed within 8 s");
      } finally {
        client.close();
        silent.destroy();
      }
    });
  });
}
