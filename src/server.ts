/**
 * The composition root of one gateway process (or one worker): router with
 * the configured namespaces, the gateway, and the ingresses. Tests start it
 * in-process with port 0 and, for exact time-based cases, a ManualClock.
 */
import { systemClock, type Clock } from "./core/clock.js";
import { Gateway, type ControlPlane, type Forwarder } from "./core/gateway.js";
import { Router, type Placement } from "./router/router.js";
import type { PrismConfig } from "./config/schema.js";
import { startGrpc } from "./ingress/grpc.js";
import { startHttpTransport } from "./ingress/transport.js";
import { backpressureOf, breakerOptions, installShedding } from "./shedding/index.js";
import type { Listening } from "./ingress/types.js";
import { connectionLimitsOf, defaultPerPrincipal, principalBytesOf, principalLimitsOf } from "./ingress/limits.js";
import { redactSecrets } from "./core/redact.js";
import { CONNECTION_DEFAULTS, SHEDDING_DEFAULTS } from "./config/defaults.js";
import { setupObservability, type LogSink } from "./observability/index.js";
import { stderrLog, type Log } from "./observability/logging.js";
import { VERSION } from "./core/version.js";
import { resolve } from "node:path";
import { ControlAgent } from "./control/agent.js";
import { createAuth } from "./auth/gate.js";
import { mtlsIdentityGate } from "./auth/mtls.js";
import { setupAudit } from "./audit/index.js";
import { Keyring } from "./pii/keyring.js";
import { openConfigStore } from "./control/stores.js";
import { configStoreSpec } from "./control/store-spec.js";
import type { ResolvedNamespace } from "./config/resolve.js";
import { TlsMaterial } from "./ingress/tls.js";
import { checkBindSafety } from "./ingress/bind-safety.js";

export { VERSION } from "./core/version.js";
export { stderrLog, type Log } from "./observability/logging.js";

export interface ServerOptions {
  config: PrismConfig;
  clock?: Clock;
  log?: Log;
  /** Overrides of config.server (tests pass 0 for ephemeral ports). */
  host?: string;
  grpcPort?: number;
  httpPort?: number;
  /** Multi-worker wiring (src/workers). */
  workers?: number;
  /** This worker's index (reported by Admin.Health). */
  workerIndex?: number;
  placement?: Placement;
  forwarder?: Forwarder;
  /** Namespace changes go here (a cluster worker: to the primary). Absent: this process runs its own control agent on server.config_store. */
  control?: ControlPlane;
  /** Namespaces already resolved by the primary (cluster workers); otherwise the agent applies config.namespaces and the store's. */
  namespaces?: ResolvedNamespace[];
  /** How long shutdown waits for calls in progress (default 10 s). */
  drainGraceMs?: number;
  /** Skip an ingress (e.g. a worker that serves only the mesh). */
  grpc?: boolean;
  http?: boolean;
  /** Access-log JSON lines go here instead of stderr (tests). */
  logSink?: LogSink;
  /** A node:cluster worker: GET /metrics aggregates every worker through the primary. */
  clusterMetrics?: boolean;
  /** Access log on stderr (or logSink). Default: on unless the caller passed its own `log` other than stderrLog (tests, embedders). */
  accessLog?: boolean;
}

export interface RunningServer {
  readonly gateway: Gateway;
  readonly router: Router;
  /** This process's control agent (absent in cluster workers). */
  readonly agent?: ControlAgent;
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly host: string;
  /** Stop accepting and let in-flight calls finish (the ingresses close); backends stay open until close(). */
  drain(): Promise<void>;
  close(): Promise<void>;
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  // Every log line of this process (drivers, control plane, ingresses) is masked (src/core/redact.ts), whatever the sink.
  const sink = opts.log ?? stderrLog;
  const log: Log = (level, msg) => sink(level, redactSecrets(msg));
  const clock = opts.clock ?? systemClock;
  const server = opts.config.server;
  const host = opts.host ?? server.host;
  // Safe defaults (src/ingress/bind-safety.ts): no non-loopback listener without authentication.
  checkBindSafety(opts.config, host);
  // server.tls: read (a bad file fails the start, naming it) and watched for rotation before anything connects.
  const tls = server.tls ? new TlsMaterial(server.tls, log) : undefined;
  const router = new Router(clock, log, opts.placement, { breaker: breakerOptions(server) });
  // security.kek (src/pii): unwraps the data keys of pii: encrypt namespaces; read from its file or variable in every process.
  const keyring = Keyring.load(opts.config.security, server.data_dir);
  router.keyring = keyring;
  let control = opts.control;
  let agent: ControlAgent | undefined;
  // Migrations save backfill cursors and record rollbacks through the control plane.
  router.migrationHost = {
    loadCursor: (n) => control!.loadCursor(n),
    saveCursor: (n, c) => control!.saveCursor(n, c),
    rollback: (n, r, a) => control!.rollback(n, r, a),
    loadRepairs: (n) => control!.loadRepairs(n),
    writeRepairs: (n, p, r) => control!.writeRepairs(n, p, r),
    writerLease: (n, i, a) => control!.writerLease(n, i, a),
    loadReconcile: (n) => control!.loadReconcile(n),
    saveReconcile: (n, c) => control!.saveReconcile(n, c),
  };
  if (opts.namespaces) for (const r of opts.namespaces) await router.apply(r);
  if (!control) {
    const store = await openConfigStore(configStoreSpec(server));
    agent = new ControlAgent({
      store,
      sink: { apply: async (r) => void (await router.apply(r)), delete: async (n) => void (await router.delete(n)) },
      log,
      paths: { dataDir: resolve(server.data_dir), allowedPaths: server.allowed_paths.map((p) => resolve(p)) },
      keyring,
    });
    try {
      await agent.start({ backends: opts.config.backends ?? {}, namespaces: opts.config.namespaces });
    } catch (e) {
      await agent.close().catch(() => {});
      await router.close();
      tls?.close();
      throw e;
    }
    control = agent;
  }
  const obs = await setupObservability({
    server,
    router,
    logSink: opts.logSink,
    cluster: opts.clusterMetrics,
    accessLog: opts.accessLog ?? (opts.log === undefined || opts.log === stderrLog || opts.logSink !== undefined),
  });
  // The audit log (src/audit): one record per call; with several workers, one file per worker.
  const audit = await setupAudit({ audit: opts.config.audit, dataDir: server.data_dir, router, worker: (opts.workers ?? 1) > 1 ? opts.workerIndex ?? 0 : undefined, log });
  const gateway = new Gateway({
    audit,
    observer: obs.observer,
    router,
    version: VERSION,
    workers: opts.workers ?? 1,
    workerIndex: opts.workerIndex,
    control,
    forwarder: opts.forwarder,
    // Authentication and namespace RBAC (src/auth); absent `auth:` block: none, one undefined check per call.
    auth:
      opts.config.auth !== undefined
        ? createAuth(opts.config.auth, { certPrincipalFrom: server.tls?.principal_from })
        : // mTLS as the only authentication: name each caller from its certificate (audit records).
          server.tls?.client_auth === "require"
          ? mtlsIdentityGate(server.tls.principal_from)
          : undefined,
  });
  // Admission control, rate limits and retries (src/shedding); the slow-subscriber policy goes to the ingresses.
  const shedding = installShedding(gateway, server);
  const backpressure = backpressureOf(server);
  // Connection limits (src/ingress/limits.ts): one budget of unfinished request bytes for all ingresses of this worker.
  const limits = connectionLimitsOf(server, server.max_message_bytes);
  gateway.longPollLimits = { max: server.max_long_polls ?? CONNECTION_DEFAULTS.max_long_polls, perConnection: server.max_long_polls_per_connection ?? CONNECTION_DEFAULTS.max_long_polls_per_connection };
  const identities = opts.config.auth !== undefined || server.tls?.client_auth === "require";
  const perPrincipal = server.per_principal ?? defaultPerPrincipal(identities, (server.shedding ?? SHEDDING_DEFAULTS).max_in_flight, gateway.longPollLimits.max, limits.budget.max);
  gateway.principalLimits = principalLimitsOf(perPrincipal);
  // Unfinished request bytes per principal, charged by the ingresses before the body (server.per_principal.max_buffered_bytes).
  limits.principalBytes = principalBytesOf(perPrincipal, gateway.auth);
  if (limits.principalBytes !== undefined) limits.principalBytes.onRefusal = () => gateway.observer?.principalLimited?.("max_buffered_bytes");

  const browser = { allowedOrigins: server.allowed_origins ?? [], allowedHosts: server.allowed_hosts };
  const listeners: Listening[] = [];
  try {
    const grpc = opts.grpc === false ? undefined : await startGrpc(gateway, { host, port: opts.grpcPort ?? server.grpc_port, maxMessageBytes: server.max_message_bytes, log, backpressure, server: server.grpc_server, limits, tls });
    if (grpc) listeners.push(grpc);
    const http = opts.http === false ? undefined : await startHttpTransport(gateway, { host, port: opts.httpPort ?? server.http_port, maxMessageBytes: server.max_message_bytes, log, backpressure, metrics: obs.scrape, limits, browser, tls });
    if (http) listeners.push(http);
    let closed: Promise<void> | undefined;
    let drained: Promise<void> | undefined;
    // Graceful: refuse new calls, let the ones in progress answer (bounded), then close connections.
    const drain = () =>
      (drained ??= gateway
        .drain(opts.drainGraceMs ?? 10_000)
        .then(() => Promise.all(listeners.map((l) => l.close().catch(() => {}))))
        .then(() => {}));
    return {
      gateway,
      router,
      agent,
      host,
      grpcPort: grpc?.port ?? 0,
      httpPort: http?.port ?? 0,
      drain,
      close: () =>
        (closed ??= (async () => {
          await drain();
          // Every call has settled (or was refused): its record is written before the process goes.
          await audit?.close();
          // The runtimes' close still writes through the agent (a migration's writer lease is deleted once its copies landed).
          await agent?.quiesce();
          await router.close();
          await agent?.close();
          shedding.close();
          await obs.close();
          tls?.close();
        })()),
    };
  } catch (e) {
    await Promise.all(listeners.map((l) => l.close().catch(() => {})));
    await agent?.close().catch(() => {});
    await router.close();
    shedding.close();
    await obs.close();
    await audit?.close();
    tls?.close();
    throw e;
  }
}
