/**
 * The gRPC ingress on @grpc/grpc-js (config `server.grpc_server: grpc-js`):
 * services built from the method table (src/core/methods.ts) on the static
 * protobuf codecs, plus server reflection. Unknown methods are answered
 * UNIMPLEMENTED by grpc-js; messages above maxMessageBytes RESOURCE_EXHAUSTED.
 * Prism owns the listening socket and injects each connection into grpc-js
 * (createConnectionInjector), so connection limits apply here too
 * (src/ingress/grpc-js-limits.ts).
 */
import { createServer as netServer, type Socket } from "node:net";
import type { AddressInfo } from "node:net";
import { Server, ServerCredentials, type UntypedServiceImplementation } from "@grpc/grpc-js";
import type { SecureServerOptions } from "node:http2";
import type { TlsMaterial } from "./tls.js";
import type { Gateway } from "../core/gateway.js";
import type { Listening } from "./types.js";
import { DEFAULT_MAX_BUFFERED_MESSAGES, type GrpcOptions } from "./grpc.js";
import { serviceDefinitions } from "./grpc-codec.js";
import { Subscriptions, subscribeHandler, unaryHandler } from "./grpc-handlers.js";
import { addReflection } from "./grpc-reflection.js";
import { grpcJsDownload, grpcJsUpload } from "./transfer-grpc-js.js";
import { defaultConnectionLimits } from "./limits.js";
import { GrpcJsConnections, injectorHttp2Server } from "./grpc-js-limits.js";

/** `host:port`, bracketing IPv6 literals (log lines). */
function address(host: string, port: number): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * server.tls for grpc-js. createSsl() takes fixed buffers; grpc-js servers watch
 * their credentials instead (the mechanism behind its certificate providers), so
 * this subclass pushes every reload of the files to them: new connections get
 * the new certificate (http2 setSecureContext), no restart.
 */
class RotatingCredentials extends ServerCredentials {
  private readonly detach: () => void;
  constructor(tls: TlsMaterial, handshakeTimeoutMs: number) {
    super(tls.serverOptions(handshakeTimeoutMs) as SecureServerOptions, tls.contextOptions());
    this.detach = tls.subscribe((o) => this.updateSecureContextOptions(o));
  }
  _equals(other: ServerCredentials): boolean {
    return other === this;
  }
  close(): void {
    this.detach();
  }
}

export async function startGrpcJs(gw: Gateway, opts: GrpcOptions): Promise<Listening> {
  const limits = opts.limits ?? defaultConnectionLimits(opts.maxMessageBytes);
  const server = new Server({
    "grpc.max_receive_message_length": opts.maxMessageBytes,
    "grpc.max_send_message_length": opts.maxMessageBytes,
    // Ping idle connections so dead peers (and their subscriptions) are found within minutes.
    "grpc.keepalive_time_ms": 120_000,
    "grpc.keepalive_timeout_ms": 20_000,
    // Connection limits (src/ingress/limits.ts) grpc-js applies itself: streams per connection, nghttp2
    // session memory, idle connections. Header timeout, unfinished request bytes and long polls per
    // connection: GrpcJsConnections below.
    "grpc.max_concurrent_streams": limits.maxStreamsPerConnection,
    "grpc-node.max_session_memory": limits.maxSessionMemoryMb,
    ...(limits.idleTimeoutMs > 0 ? { "grpc.max_connection_idle_ms": limits.idleTimeoutMs } : {}),
  });
  const subs = new Subscriptions();
  const guard = new GrpcJsConnections(limits, opts.log);
  const conns = (peer: string) => guard.connOf(peer);
  const mtls = opts.tls?.mtls === true;
  const creds = opts.tls ? new RotatingCredentials(opts.tls, limits.headerTimeoutMs) : undefined;
  const maxBuffered = opts.maxBufferedMessages ?? DEFAULT_MAX_BUFFERED_MESSAGES;
  for (const { definition, methods } of serviceDefinitions().values()) {
    const impl: UntypedServiceImplementation = {};
    for (const m of methods) {
      impl[m.name] =
        m.transfer === "upload"
          ? grpcJsUpload(gw, m, opts.log, mtls)
          : m.transfer === "download"
            ? grpcJsDownload(gw, m, opts.log, mtls)
            : m.streaming
              ? subscribeHandler(gw, m, opts.log, subs, maxBuffered, opts.backpressure, mtls, conns)
              : unaryHandler(gw, m, opts.log, mtls, conns);
    }
    server.addService(definition, impl);
  }
  if (opts.reflection !== false) {
    try {
      addReflection(server);
    } catch (e) {
      opts.log("warn", `grpc: server reflection is off: ${(e as Error).message}`);
    }
  }

  // Prism's own listener; grpc-js gets each connection once it is counted (TLS: the injector's server does the handshake).
  const injector = server.createConnectionInjector(creds ?? ServerCredentials.createInsecure());
  guard.watch(injectorHttp2Server(server));
  const listener = netServer((socket: Socket) => {
    socket.on("error", () => {});
    if (limits.connections !== undefined && !limits.connections.admit(socket)) return;
    guard.accept(socket);
    injector.injectConnection(socket);
  });
  const port = await new Promise<number>((resolve, reject) => {
    listener.once("error", (e) => {
      guard.close();
      injector.destroy();
      reject(e);
    });
    listener.listen(opts.port, opts.host, () => {
      listener.removeAllListeners("error");
      resolve((listener.address() as AddressInfo).port);
    });
  });
  listener.on("error", (e) => opts.log("error", `grpc: ${e.message}`));
  opts.log("info", `grpc: listening on ${address(opts.host, port)} (grpc-js${creds ? ", TLS" : ""})`);

  const grace = opts.shutdownGraceMs ?? 2000;
  let closed: Promise<void> | undefined;
  return {
    port,
    close: () =>
      (closed ??= new Promise<void>((resolve) => {
        // No new connections; subscriptions never end on their own: end them first so tryShutdown can finish.
        listener.close();
        guard.close();
        subs.endAll();
        creds?.close();
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, grace);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      })),
  };
}
