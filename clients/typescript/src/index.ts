/**
 * `@prism/client`: the TypeScript SDK for the Prism data access gateway.
 *
 * ```ts
 * import { connect } from "@prism/client";
 * const prism = await connect("ws://localhost:8981");
 * await prism.kv("default").set("greeting", "hello");
 * await prism.close();
 * ```
 * @packageDocumentation
 */
import { Prism } from "./client.js";
import { Code, PrismError } from "./errors.js";
import { PRIORITY_BYTE, type ConnectOptions } from "./transport.js";
import { WsTransport } from "./ws.js";
import { GrpcTransport } from "./grpc.js";
import { HttpTransport } from "./http.js";

export { Prism, KeyValue, PubSub, Queue, Stream, Admin, MulticastRegistry } from "./client.js";
export type { Bytes, SetOptions, OutboxMessage, KvItem, ScanItem, ScanPage, QueueMessage, StreamRecord, NamespaceInfo, RegistryMember, SlotInfo, BackendInstanceInfo, PatternInfo, Health } from "./client.js";
export type { Subscription, PubSubMessage } from "./subscription.js";
export type { ConnectOptions, Priority } from "./transport.js";
export { Code, PrismError, codeName } from "./errors.js";

/**
 * Connects to a Prism gateway. The address picks the transport:
 * - `ws://host:8981` / `wss://…`: binary WebSocket (`/v1/ws` is added when the path is empty);
 * - `grpc://host:8980` / `grpcs://…` / plain `host:8980`: gRPC;
 * - `http://host:8981` / `https://…`: HTTP/JSON, Server-Sent Events for subscriptions.
 *
 * Resolves once the server is reachable; rejects with a {@link PrismError}
 * UNAVAILABLE when it is not.
 */
export async function connect(address: string, options: ConnectOptions = {}): Promise<Prism> {
  if (options.timeoutMs !== undefined && (!Number.isFinite(options.timeoutMs) || options.timeoutMs < 0)) {
    throw new PrismError(Code.INVALID_ARGUMENT, `timeoutMs: must be a number ≥ 0, got ${options.timeoutMs}`);
  }
  if (options.priority !== undefined && !(options.priority in PRIORITY_BYTE)) {
    throw new PrismError(Code.INVALID_ARGUMENT, `priority: must be critical, high, normal or low, got ${JSON.stringify(options.priority)}`);
  }
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(address)?.[1]?.toLowerCase();
  switch (scheme) {
    case "ws":
    case "wss": {
      const url = new URL(address);
      if (url.pathname === "" || url.pathname === "/") url.pathname = "/v1/ws";
      return new Prism(await WsTransport.open(url.toString(), options));
    }
    case "http":
    case "https":
      return new Prism(await HttpTransport.open(address, options));
    case "grpc":
    case "grpcs":
      return new Prism(await GrpcTransport.open(address.slice(scheme.length + 3).replace(/\/+$/, ""), scheme === "grpcs", options));
    case undefined:
      return new Prism(await GrpcTransport.open(address, false, options));
    default:
      throw new PrismError(Code.INVALID_ARGUMENT, `unsupported address scheme "${scheme}://" (use ws://, grpc:// or http://)`);
  }
}
