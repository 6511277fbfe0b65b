/**
 * The gRPC ingress: a grpc-js server whose services are built from the method
 * table (src/core/methods.ts) on the static protobuf codecs, plus server
 * reflection (grpc.reflection.v1 / v1alpha) for generic tools.
 *
 *   grpcurl -plaintext localhost:8980 list
 *   grpcurl -plaintext -d '{"namespace":"default","key":"hello","value":"d29ybGQ="}' \
 *     localhost:8980 prism.v1.KeyValue/Set
 *
 * Unknown methods are answered UNIMPLEMENTED by grpc-js; messages above
 * maxMessageBytes RESOURCE_EXHAUSTED.
 *
 * `server: "http2"` (config server.grpc_server) serves the same contract from
 * Prism's own gRPC server on node:http2 instead (src/ingress/grpc-h2.ts).
 */
import type { Gateway } from "../core/gateway.js";
import type { IngressOptions, Listening } from "./types.js";

/** Messages a gRPC subscriber may have buffered before the backpressure policy applies. */
export const DEFAULT_MAX_BUFFERED_MESSAGES = 10_000;

export interface GrpcOptions extends IngressOptions {
  /** Messages a subscriber may have buffered before it is dropped (default 10,000). */
  maxBufferedMessages?: number;
  /** Serve grpc.reflection (default true). */
  reflection?: boolean;
  /** How long close() lets unary calls finish before cutting connections (default 2000 ms). */
  shutdownGraceMs?: number;
  /** The server implementation (config server.grpc_server, whose default is "http2"): grpc-js (when unset here) or Prism's own on node:http2 (src/ingress/grpc-h2.ts). */
  server?: "grpc-js" | "http2";
}

/**
 * Starts the configured gRPC server. Each implementation is imported only when
 * chosen, so the default (node:http2) does not load grpc-js at all (~11 MB of
 * RSS per worker); server reflection reads its descriptor set on its first call.
 */
export async function startGrpc(gw: Gateway, opts: GrpcOptions): Promise<Listening> {
  if (opts.server === "http2") return (await import("./grpc-h2.js")).startGrpcH2(gw, opts);
  return (await import("./grpc-js-server.js")).startGrpcJs(gw, opts);
}
