/**
 * Wires observability for one gateway process from the config and the
 * environment: metrics (server.metrics), the access log (server.log_level,
 * server.access_log_sample), traces (OTEL_* env). Returns the gateway
 * observer (undefined when everything is off: the gateway then pays nothing),
 * the /metrics scrape function and a close hook.
 */
import type { ServerConfig } from "../config/schema.js";
import type { Router } from "../router/router.js";
import { GatewayMetrics } from "./metrics.js";
import { AccessLog } from "./access-log.js";
import { Observer } from "./observer.js";
import { Tracing } from "./tracing.js";
import { workerScrape, type Scrape } from "./cluster-metrics.js";
import { createBufferedLogger, resolveLevel, setProcessLogLevel, type LogSink } from "./logging.js";

export interface ObservabilityOptions {
  server: ServerConfig;
  router: Router;
  /** JSON log lines go here instead of stderr (tests). */
  logSink?: LogSink;
  /** A node:cluster worker: /metrics answers for the whole gateway (src/observability/cluster-metrics.ts). */
  cluster?: boolean;
  /** Write the access log (server.access_log_sample still applies). Default true. */
  accessLog?: boolean;
  env?: NodeJS.ProcessEnv;
}

export interface Observability {
  readonly observer: Observer | undefined;
  readonly metrics: GatewayMetrics | undefined;
  /** GET /metrics; undefined when metrics are off. */
  readonly scrape: (() => Promise<Scrape>) | undefined;
  close(): Promise<void>;
}

export async function setupObservability(opts: ObservabilityOptions): Promise<Observability> {
  const { server, router } = opts;
  if (opts.logSink === undefined) setProcessLogLevel(server.log_level);
  const metrics = server.metrics ? new GatewayMetrics({ router }) : undefined;
  const level = resolveLevel(server.log_level, opts.env);
  let access: AccessLog | undefined;
  if (opts.accessLog !== false && server.access_log_sample > 0) {
    const { logger, close } = createBufferedLogger(level, opts.logSink);
    if (logger.isLevelEnabled("info")) access = new AccessLog(logger, server.access_log_sample, close);
    else close();
  }
  const tracing = await Tracing.load(opts.env);
  const observer = metrics || access || tracing ? new Observer({ router, metrics, access, tracing }) : undefined;
  if (metrics && observer) metrics.beforeCollect = () => observer.flush();
  const clustered = metrics && opts.cluster ? workerScrape(metrics) : undefined;
  const scrape = metrics === undefined ? undefined : clustered ? clustered.scrape : async () => ({ contentType: metrics.contentType, body: await metrics.text() });
  return {
    observer,
    metrics,
    scrape,
    close: async () => {
      observer?.close();
      clustered?.close();
      await tracing?.shutdown();
    },
  };
}

export type { Scrape } from "./cluster-metrics.js";
export type { LogSink } from "./logging.js";
