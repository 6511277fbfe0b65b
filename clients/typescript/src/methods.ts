/**
 * The SDK's method table: "Service/Method" → WebSocket method id, gRPC path and
 * the static protobuf codecs. Built once at load; transports look a method up
 * once per call (one Map.get).
 */
import { prism } from "./gen/prism.js";
import { RETRY } from "./retry.js";

/** The static protobufjs class of a message (encode/decode/fromObject/toObject). */
export interface Codec {
  encode(message: any, writer?: any): { finish(): Uint8Array };
  decode(reader: Uint8Array): any;
  fromObject(object: Record<string, any>): any;
  toObject(message: any, options?: Record<string, any>): Record<string, any>;
}

/** The service names of the Prism API. */
export type ServiceName = "KeyValue" | "PubSub" | "Queue" | "Stream" | "MulticastRegistry" | "Admin";

/** One RPC of the contract. */
export interface MethodInfo {
  readonly service: ServiceName;
  readonly name: string;
  /** `prism.v1.Method` value: the WebSocket request frame's method field. */
  readonly id: number;
  /** gRPC path, e.g. `/prism.v1.KeyValue/Get`. */
  readonly path: string;
  readonly requestType: Codec;
  readonly responseType: Codec;
  /** Server-streaming (PubSub/Subscribe). */
  readonly streaming: boolean;
  /** May it be sent again after its connection dropped (retry.ts): always, with an idempotency key, or never. */
  readonly retry: "always" | "keyed" | undefined;
}

const M = prism.v1.Method;
const v1 = prism.v1 as unknown as Record<string, Codec>;

const TABLE: [number, ServiceName, string, string, string][] = [
  [M.KV_GET, "KeyValue", "Get", "GetRequest", "GetResponse"],
  [M.KV_SET, "KeyValue", "Set", "SetRequest", "SetResponse"],
  [M.KV_DELETE, "KeyValue", "Delete", "DeleteRequest", "DeleteResponse"],
  [M.KV_EXISTS, "KeyValue", "Exists", "ExistsRequest", "ExistsResponse"],
  [M.KV_BATCH_GET, "KeyValue", "BatchGet", "BatchGetRequest", "BatchGetResponse"],
  [M.KV_BATCH_SET, "KeyValue", "BatchSet", "BatchSetRequest", "BatchSetResponse"],
  [M.KV_BATCH_DELETE, "KeyValue", "BatchDelete", "BatchDeleteRequest", "BatchDeleteResponse"],
  [M.KV_SCAN, "KeyValue", "Scan", "ScanRequest", "ScanResponse"],
  [M.KV_EXPIRE, "KeyValue", "Expire", "ExpireRequest", "ExpireResponse"],
  [M.KV_GET_TTL, "KeyValue", "GetTtl", "GetTtlRequest", "GetTtlResponse"],
  [M.KV_PERSIST, "KeyValue", "Persist", "PersistRequest", "PersistResponse"],
  [M.PUBSUB_PUBLISH, "PubSub", "Publish", "PublishRequest", "PublishResponse"],
  [M.PUBSUB_SUBSCRIBE, "PubSub", "Subscribe", "SubscribeRequest", "PubSubMessage"],
  [M.QUEUE_ENQUEUE, "Queue", "Enqueue", "EnqueueRequest", "EnqueueResponse"],
  [M.QUEUE_DEQUEUE, "Queue", "Dequeue", "DequeueRequest", "DequeueResponse"],
  [M.QUEUE_ACK, "Queue", "Ack", "AckRequest", "AckResponse"],
  [M.QUEUE_NACK, "Queue", "Nack", "NackRequest", "NackResponse"],
  [M.QUEUE_EXTEND_VISIBILITY, "Queue", "ExtendVisibility", "ExtendVisibilityRequest", "ExtendVisibilityResponse"],
  [M.QUEUE_ENQUEUE_BATCH, "Queue", "EnqueueBatch", "EnqueueBatchRequest", "EnqueueBatchResponse"],
  [M.QUEUE_ACK_BATCH, "Queue", "AckBatch", "AckBatchRequest", "AckBatchResponse"],
  [M.STREAM_APPEND, "Stream", "Append", "AppendRequest", "AppendResponse"],
  [M.STREAM_READ, "Stream", "Read", "ReadRequest", "ReadResponse"],
  [M.STREAM_READ_GROUP, "Stream", "ReadGroup", "ReadGroupRequest", "ReadGroupResponse"],
  [M.STREAM_ACK_GROUP, "Stream", "AckGroup", "AckGroupRequest", "AckGroupResponse"],
  [M.REGISTRY_REGISTER, "MulticastRegistry", "Register", "RegisterRequest", "RegisterResponse"],
  [M.REGISTRY_UNREGISTER, "MulticastRegistry", "Unregister", "UnregisterRequest", "UnregisterResponse"],
  [M.REGISTRY_ENUMERATE, "MulticastRegistry", "Enumerate", "EnumerateRequest", "EnumerateResponse"],
  [M.REGISTRY_MULTICAST, "MulticastRegistry", "Multicast", "MulticastRequest", "MulticastResponse"],
  [M.REGISTRY_SUBSCRIBE, "MulticastRegistry", "Subscribe", "MemberSubscribeRequest", "PubSubMessage"],
  [M.ADMIN_LIST_NAMESPACES, "Admin", "ListNamespaces", "ListNamespacesRequest", "ListNamespacesResponse"],
  [M.ADMIN_GET_NAMESPACE, "Admin", "GetNamespace", "GetNamespaceRequest", "NamespaceInfo"],
  [M.ADMIN_APPLY_NAMESPACE, "Admin", "ApplyNamespace", "ApplyNamespaceRequest", "ApplyNamespaceResponse"],
  [M.ADMIN_DELETE_NAMESPACE, "Admin", "DeleteNamespace", "DeleteNamespaceRequest", "DeleteNamespaceResponse"],
  [M.ADMIN_LIST_BACKENDS, "Admin", "ListBackends", "ListBackendsRequest", "ListBackendsResponse"],
  [M.ADMIN_HEALTH, "Admin", "Health", "HealthRequest", "HealthResponse"],
  [M.ADMIN_APPLY_BACKEND, "Admin", "ApplyBackend", "ApplyBackendRequest", "ApplyBackendResponse"],
  [M.ADMIN_DELETE_BACKEND, "Admin", "DeleteBackend", "DeleteBackendRequest", "DeleteBackendResponse"],
  [M.ADMIN_LIST_BACKEND_INSTANCES, "Admin", "ListBackendInstances", "ListBackendInstancesRequest", "ListBackendInstancesResponse"],
  [M.ADMIN_LIST_PATTERNS, "Admin", "ListPatterns", "ListPatternsRequest", "ListPatternsResponse"],
  [M.ADMIN_MIGRATION_STATUS, "Admin", "MigrationStatus", "MigrationRequest", "MigrationInfo"],
  [M.ADMIN_START_MIGRATION, "Admin", "StartMigration", "MigrationRequest", "MigrationInfo"],
  [M.ADMIN_ADVANCE_MIGRATION, "Admin", "AdvanceMigration", "MigrationRequest", "MigrationInfo"],
  [M.ADMIN_ROLLBACK_MIGRATION, "Admin", "RollbackMigration", "MigrationRequest", "MigrationInfo"],
  [M.ADMIN_FINISH_MIGRATION, "Admin", "FinishMigration", "MigrationRequest", "MigrationInfo"],
];

/** Every method, keyed by `"Service/Method"` (e.g. `"KeyValue/Get"`). */
export const METHODS: ReadonlyMap<string, MethodInfo> = new Map(
  TABLE.map(([id, service, name, req, res]) => [
    `${service}/${name}`,
    {
      service,
      name,
      id,
      path: `/prism.v1.${service}/${name}`,
      requestType: v1[req]!,
      responseType: v1[res]!,
      streaming: name === "Subscribe",
      retry: RETRY[`${service}/${name}`],
    },
  ]),
);

/** The method, or undefined when the name is not part of the API. */
export function methodInfo(service: string, name: string): MethodInfo | undefined {
  return METHODS.get(`${service}/${name}`);
}
