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
import { HealingChannel, type Opener } from "./healing.js";
import { backoffOptions } from "./backoff.js";
import { makeAuth } from "./auth.js";

export { Prism, KeyValue, PubSub, Queue, Stream, Admin, MulticastRegistry } from "./client.js";
export type { Bytes, SetOptions, OutboxMessage, KvItem, ScanItem, ScanPage, QueueMessage, EnqueueOptions, EnqueueEntry, StreamRecord, NamespaceInfo, RegistryMember, SlotInfo, BackendInstanceInfo, PatternInfo, Health } from "./client.js";
export type { Subscription, PubSubMessage } from "./subscription.js";
export type { EntryResult } from "./coalesce.js";
export { ClaimCheck, claimCheck } from "./claim-check.js";
export type { Claim, PutTarget, PutResult, ClaimCheckOptions, TransferOptions, GetStreamOptions } from "./claim-check.js";
export type { ConnectOptions, Priority, CallOptions, WriteOptions, ReconnectOptions, ConnectionState } from "./transport.js";
export { Code, PrismError, codeName } from "./errors.js";
export { RETRY } from "./retry.js";

function badOption(name: string, why: string, got: unknown): PrismError {
  return new PrismError(Code.INVALID_ARGUMENT, `${name}: ${why}, got ${typeof got === "string" ? JSON.stringify(got) : String(got)}`);
}

/** The transport for an address: ws(s)://, http(s)://, grpc(s):// or plain host:port (gRPC). */
function opener(address: string): Opener {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(address)?.[1]?.toLowerCase();
  switch (scheme) {
    case "ws":
    case "wss": {
      const url = new URL(address);
      if (url.pathname === "" || url.pathname === "/") url.pathname = "/v1/ws";
      const u = url.toString();
      return (o) => WsTransport.open(u, o);
    }
    case "http":
    case "https":
      return (o) => HttpTransport.open(address, o);
    case "grpc":
    case "grpcs": {
      const target = address.slice(scheme.length + 3).replace(/\/+$/, "");
      return (o) => GrpcTransport.open(target, scheme === "grpcs", o);
    }
    case undefined:
      return (o) => GrpcTransport.open(address, false, o);
    default:
      throw new PrismError(Code.INVALID_ARGUMENT, `unsupported address scheme "${scheme}://" (use ws://, grpc:// or http://)`);
  }
}

/**
 * Connects to a Prism gateway. The address picks the transport:
 * - `ws://host:8981` / `wss://…`: binary WebSocket (`/v1/ws` is added when the path is empty);
 * - `grpc://host:8980` / `grpcs://…` / plain `host:8980`: gRPC;
 * - `http://host:8981` / `https://…`: HTTP/JSON, Server-Sent Events for subscriptions.
 *
 * Resolves once the server is reachable; rejects with a {@link PrismError}
 * UNAVAILABLE when it is not (the first connection is not retried). After
 * that, the client reconnects by itself whenever the connection drops (see
 * {@link ConnectOptions.reconnect}).
 */
export async function connect(address: string, options: ConnectOptions = {}): Promise<Prism> {
  const { timeoutMs, priority, token, apiKey, connectTimeoutMs } = options;
  if (timeoutMs !== undefined && (!Number.isFinite(timeoutMs) || timeoutMs < 0)) throw badOption("timeoutMs", "must be a number ≥ 0", timeoutMs);
  if (priority !== undefined && !(priority in PRIORITY_BYTE)) throw badOption("priority", "must be critical, high, normal or low", priority);
  if (connectTimeoutMs !== undefined && (!Number.isFinite(connectTimeoutMs) || connectTimeoutMs <= 0)) throw badOption("connectTimeoutMs", "must be a number > 0", connectTimeoutMs);
  if (token !== undefined && typeof token !== "string" && typeof token !== "function") throw badOption("token", "must be a string or a function returning one", token);
  if (apiKey !== undefined && typeof apiKey !== "string") throw badOption("apiKey", "must be a string", apiKey);
  const reconnect = options.reconnect === false ? undefined : backoffOptions(options.reconnect === true ? {} : options.reconnect);
  const open = opener(address);
  const channel = await HealingChannel.connect({
    open,
    openOptions: {
      priority,
      auth: makeAuth(options),
      connectTimeoutMs: connectTimeoutMs ?? (timeoutMs && timeoutMs > 0 ? timeoutMs : 10_000),
    },
    reconnect,
    timeoutMs: timeoutMs ?? 0,
    autoIdempotency: options.autoIdempotency === true,
    coalesce: options.coalesce !== false,
    onState: options.onState,
  });
  return new Prism(channel, { address, options: { token, apiKey, priority } });
}
