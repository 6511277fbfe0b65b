/**
 * `prism serve`: one process (--workers 1) or a node:cluster primary with N
 * ingress workers. Either way: a banner on stdout once serving (ending with
 * the machine-readable `listening grpc=P http=P`), and a graceful stop on
 * SIGTERM/SIGINT: stop accepting, finish in-flight calls (at most 10 s),
 * close subscriptions and backends, exit 0.
 */
import { redactSecrets } from "../core/redact.js";
import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import type { RunningServer } from "../server.js";
import { stderrLog } from "../observability/logging.js";
import { VERSION } from "../core/version.js";
import type { PrismConfig } from "../config/schema.js";
import { EMBEDDED_BACKENDS, ownerOf } from "../workers/placement.js";
import { reportConfigError, resolveConfigInChild } from "./config.js";
import { UsageError } from "./usage.js";
import { resolve } from "node:path";
import { withDefaultStore } from "../control/store-spec.js";
import { bindRefusal } from "../ingress/bind-safety.js";

const DRAIN_MS = 10_000;

function port(v: string | undefined, flag: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UsageError(`${flag}: "${v}" is not a port (0-65535)`);
  return n;
}

function workerCount(v: string | number): number {
  if (v === "auto") return availableParallelism();
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 256) throw new UsageError(`--workers: "${v}" is not a positive count or "auto"`);
  return n;
}

/** How prism.yaml names a backend: an inline type, an instance, or the automatic choice. */
function describeRef(ref: unknown, config: PrismConfig): { text: string; type?: string } {
  if (typeof ref === "string") return { text: `${ref} (${config.backends[ref]?.type ?? "?"})`, type: config.backends[ref]?.type };
  if (ref && typeof ref === "object" && (ref as { auto?: unknown }).auto === true) return { text: "auto" };
  const type = String((ref as { type?: unknown } | undefined)?.type ?? "?");
  return { text: type, type };
}

/** The lines printed once serving. */
export function banner(config: PrismConfig, host: string, grpcPort: number, httpPort: number, workers: number): string {
  const store = config.server.config_store;
  const lines = [
    `prism ${VERSION} serving gRPC ${host}:${grpcPort}, HTTP/WebSocket ${host}:${httpPort} (${workers} worker${workers === 1 ? "" : "s"})`,
    `data directory ${config.server.data_dir}; config store ${store?.type === "sqlite" ? `sqlite ${resolve(config.server.data_dir, store.path)}` : store?.type === "postgres" ? `postgres ${redactSecrets(store.url)}` : "memory"}`,
  ];
  const tls = config.server.tls;
  if (tls) lines.push(`tls ${tls.min_version}+ with ${tls.cert}; client certificates: ${tls.client_auth}${tls.client_ca ? ` (client_ca ${tls.client_ca})` : ""}`);
  for (const [name, b] of Object.entries(config.backends)) lines.push(`backend ${name}: ${b.type}`);
  for (const ns of config.namespaces) {
    const refs = Object.entries(ns.slots ?? {}).map(([slot, ref]) => ({ slot, ...describeRef(ref, config) }));
    if (ns.backend !== undefined) refs.push({ slot: "", ...describeRef(ns.backend, config) });
    const embedded = refs.some((r) => r.type !== undefined && EMBEDDED_BACKENDS.has(r.type));
    const owner = workers > 1 && embedded ? ` (state on worker ${ownerOf(ns.name, workers)})` : "";
    const on = refs.map((r) => (r.slot ? `${r.slot}=${r.text}` : r.text)).join(", ");
    lines.push(`namespace ${ns.name}: ${ns.pattern ? `pattern ${ns.pattern}` : ns.primitives.join(", ")} on ${on}${owner}`);
  }
  lines.push(`listening grpc=${grpcPort} http=${httpPort}`);
  return lines.join("\n") + "\n";
}

export async function serve(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: "string", short: "c" },
      workers: { type: "string", short: "w" },
      host: { type: "string" },
      "grpc-port": { type: "string" },
      "http-port": { type: "string" },
      "insecure-no-auth": { type: "boolean" },
    },
    strict: true,
    allowPositionals: false,
  });
  let config: PrismConfig;
  try {
    config = (await resolveConfigInChild(values.config)).config;
  } catch (e) {
    return reportConfigError(e);
  }
  // prism serve keeps Admin changes in a SQLite file under data_dir unless prism.yaml names a store.
  config = { ...config, server: withDefaultStore(config.server) };
  // --insecure-no-auth rides in the config so cluster workers (which check again in startServer) see it too.
  if (values["insecure-no-auth"] === true) config = { ...config, server: { ...config.server, insecure_no_auth: true } };
  const host = values.host ?? config.server.host;
  const refusal = bindRefusal(config, host);
  if (refusal !== undefined) {
    process.stderr.write(`prism serve: cannot start: ${refusal}\n`);
    return 1;
  }
  if (config.server.insecure_no_auth && bindRefusal({ ...config, server: { ...config.server, insecure_no_auth: false } }, host) !== undefined) {
    stderrLog("warn", `listening on ${host} with no authentication (--insecure-no-auth): any client that reaches it may read, write and delete every namespace`);
  }
  const grpcPort = port(values["grpc-port"], "--grpc-port") ?? config.server.grpc_port;
  const httpPort = port(values["http-port"], "--http-port") ?? config.server.http_port;
  const workers = workerCount(values.workers ?? config.server.workers);

  if (workers > 1) {
    const { runPrimary } = await import("../workers/cluster.js");
    return runPrimary({
      config,
      workers,
      host,
      grpcPort,
      httpPort,
      exec: process.argv[1]!,
      args: process.argv.slice(2),
      log: stderrLog,
      onReady: (p) => process.stdout.write(banner(config, host, p.grpcPort, p.httpPort, workers)),
    });
  }

  let server: RunningServer;
  try {
    // Loaded only here: a cluster primary supervises and never serves, so it does not load the gateway.
    const { startServer } = await import("../server.js");
    server = await startServer({ config, host, grpcPort, httpPort, log: stderrLog });
  } catch (e) {
    process.stderr.write(`prism serve: cannot start: ${(e as Error).message}\n`);
    return 1;
  }
  process.stdout.write(banner(config, host, server.grpcPort, server.httpPort, 1));
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = async () => {
      if (stopping) return;
      stopping = true;
      const bounded = (p: Promise<void>) => Promise.race([p, new Promise<void>((r) => setTimeout(r, DRAIN_MS).unref())]);
      await bounded(server.drain());
      await bounded(server.close());
      resolve(0);
    };
    process.on("SIGTERM", () => void stop());
    process.on("SIGINT", () => void stop());
  });
}
