/**
 * The method table: every RPC of the contract once, with its codecs, its
 * WebSocket method id, the primitive it belongs to and its handler. The gRPC
 * service definitions, the HTTP routes and the WebSocket dispatcher are all
 * built from this table, so the three ingresses cannot drift apart.
 */
import { prism } from "../gen/prism.js";
import type { ApiName } from "./interfaces.js";
import type { NamespaceRuntime } from "../router/router.js";
import type { RequestContext } from "./context.js";
import type { Subscription, SubscriptionSink } from "../backends/driver.js";
import type { Gateway } from "./gateway.js";
import * as kv from "../primitives/keyvalue.js";
import * as ps from "../primitives/pubsub.js";
import * as q from "../primitives/queue.js";
import * as st from "../primitives/stream.js";
import * as admin from "../primitives/admin.js";
import * as reg from "../primitives/registry.js";
import * as cc from "../primitives/claim-check.js";

/** The static protobufjs class of a message. */
export interface MessageCodec<T = any> {
  encode(message: T, writer?: any): { finish(): Uint8Array };
  decode(reader: Uint8Array | any, length?: number): T;
  fromObject(object: Record<string, any>): T;
  toObject(message: T, options?: Record<string, any>): Record<string, any>;
  readonly name?: string;
}

export type NsHandler = (ns: NamespaceRuntime, req: any, ctx: RequestContext) => Promise<object>;
export type AdminHandler = (gw: Gateway, req: any, ctx: RequestContext) => Promise<object>;
export type SubscribeHandler = (ns: NamespaceRuntime, req: any, sink: SubscriptionSink, ctx: RequestContext) => Promise<Subscription>;

export interface MethodDef {
  /** prism.v1.Method value: the WebSocket frame's method field. */
  readonly id: number;
  readonly service: "KeyValue" | "PubSub" | "Queue" | "Stream" | "MulticastRegistry" | "ClaimCheck" | "Admin";
  readonly name: string;
  /** gRPC path, e.g. /prism.v1.KeyValue/Get */
  readonly path: string;
  readonly requestType: MessageCodec;
  readonly responseType: MessageCodec;
  readonly requestTypeName: string;
  readonly responseTypeName: string;
  /** Server-streaming (PubSub.Subscribe). */
  readonly streaming: boolean;
  /** Data methods: the primitive (or pattern API) the namespace must serve. */
  readonly primitive?: ApiName;
  readonly handler?: NsHandler;
  readonly admin?: AdminHandler;
  readonly subscribe?: SubscribeHandler;
  /** Safe to retry (no side effects beyond the first success). */
  readonly idempotent: boolean;
  /**
   * A byte stream (ClaimCheck): "upload" is client-streaming (the handler reads
   * the request's UPLOAD_BODY), "download" server-streaming (the ingress sends
   * the response's DOWNLOAD_BODY). Served by gRPC and HTTP only (src/ingress/transfer.ts).
   */
  readonly transfer?: "upload" | "download";
}

const M = prism.v1.Method;
const v1 = prism.v1 as unknown as Record<string, MessageCodec>;

function def(
  id: number,
  service: MethodDef["service"],
  name: string,
  req: string,
  res: string,
  impl: { handler?: NsHandler; admin?: AdminHandler; subscribe?: SubscribeHandler; primitive?: ApiName; idempotent?: boolean; transfer?: "upload" | "download" },
): MethodDef {
  return {
    id,
    service,
    name,
    path: `/prism.v1.${service}/${name}`,
    requestType: v1[req]!,
    responseType: v1[res]!,
    requestTypeName: req,
    responseTypeName: res,
    streaming: !!impl.subscribe,
    primitive: impl.primitive,
    handler: impl.handler,
    admin: impl.admin,
    subscribe: impl.subscribe,
    idempotent: impl.idempotent ?? false,
    transfer: impl.transfer,
  };
}

const KV = "keyvalue" as const;
const REG = "multicast_registry" as const;
const CC = "claim_check" as const;
export const METHODS: readonly MethodDef[] = [
  def(M.KV_GET, "KeyValue", "Get", "GetRequest", "GetResponse", { handler: kv.get, primitive: KV, idempotent: true }),
  def(M.KV_SET, "KeyValue", "Set", "SetRequest", "SetResponse", { handler: kv.set, primitive: KV }),
  def(M.KV_DELETE, "KeyValue", "Delete", "DeleteRequest", "DeleteResponse", { handler: kv.del, primitive: KV, idempotent: true }),
  def(M.KV_EXISTS, "KeyValue", "Exists", "ExistsRequest", "ExistsResponse", { handler: kv.exists, primitive: KV, idempotent: true }),
  def(M.KV_BATCH_GET, "KeyValue", "BatchGet", "BatchGetRequest", "BatchGetResponse", { handler: kv.batchGet, primitive: KV, idempotent: true }),
  def(M.KV_BATCH_SET, "KeyValue", "BatchSet", "BatchSetRequest", "BatchSetResponse", { handler: kv.batchSet, primitive: KV }),
  def(M.KV_BATCH_DELETE, "KeyValue", "BatchDelete", "BatchDeleteRequest", "BatchDeleteResponse", { handler: kv.batchDelete, primitive: KV, idempotent: true }),
  def(M.KV_SCAN, "KeyValue", "Scan", "ScanRequest", "ScanResponse", { handler: kv.scan, primitive: KV, idempotent: true }),
  def(M.KV_EXPIRE, "KeyValue", "Expire", "ExpireRequest", "ExpireResponse", { handler: kv.expire, primitive: KV }),
  def(M.KV_GET_TTL, "KeyValue", "GetTtl", "GetTtlRequest", "GetTtlResponse", { handler: kv.getTtl, primitive: KV, idempotent: true }),
  def(M.KV_PERSIST, "KeyValue", "Persist", "PersistRequest", "PersistResponse", { handler: kv.persist, primitive: KV, idempotent: true }),
  def(M.PUBSUB_PUBLISH, "PubSub", "Publish", "PublishRequest", "PublishResponse", { handler: ps.publish, primitive: "pubsub" }),
  def(M.PUBSUB_SUBSCRIBE, "PubSub", "Subscribe", "SubscribeRequest", "PubSubMessage", { subscribe: ps.subscribe, primitive: "pubsub" }),
  def(M.QUEUE_ENQUEUE, "Queue", "Enqueue", "EnqueueRequest", "EnqueueResponse", { handler: q.enqueue, primitive: "queue" }),
  def(M.QUEUE_DEQUEUE, "Queue", "Dequeue", "DequeueRequest", "DequeueResponse", { handler: q.dequeue, primitive: "queue" }),
  def(M.QUEUE_ACK, "Queue", "Ack", "AckRequest", "AckResponse", { handler: q.ack, primitive: "queue" }),
  def(M.QUEUE_NACK, "Queue", "Nack", "NackRequest", "NackResponse", { handler: q.nack, primitive: "queue" }),
  def(M.QUEUE_EXTEND_VISIBILITY, "Queue", "ExtendVisibility", "ExtendVisibilityRequest", "ExtendVisibilityResponse", { handler: q.extendVisibility, primitive: "queue" }),
  def(M.QUEUE_ENQUEUE_BATCH, "Queue", "EnqueueBatch", "EnqueueBatchRequest", "EnqueueBatchResponse", { handler: q.enqueueBatch, primitive: "queue" }),
  def(M.QUEUE_ACK_BATCH, "Queue", "AckBatch", "AckBatchRequest", "AckBatchResponse", { handler: q.ackBatch, primitive: "queue" }),
  def(M.STREAM_APPEND, "Stream", "Append", "AppendRequest", "AppendResponse", { handler: st.append, primitive: "stream" }),
  def(M.STREAM_READ, "Stream", "Read", "ReadRequest", "ReadResponse", { handler: st.read, primitive: "stream", idempotent: true }),
  def(M.STREAM_READ_GROUP, "Stream", "ReadGroup", "ReadGroupRequest", "ReadGroupResponse", { handler: st.readGroup, primitive: "stream" }),
  def(M.STREAM_ACK_GROUP, "Stream", "AckGroup", "AckGroupRequest", "AckGroupResponse", { handler: st.ackGroup, primitive: "stream" }),
  def(M.REGISTRY_REGISTER, "MulticastRegistry", "Register", "RegisterRequest", "RegisterResponse", { handler: reg.register, primitive: REG, idempotent: true }),
  def(M.REGISTRY_UNREGISTER, "MulticastRegistry", "Unregister", "UnregisterRequest", "UnregisterResponse", { handler: reg.unregister, primitive: REG, idempotent: true }),
  def(M.REGISTRY_ENUMERATE, "MulticastRegistry", "Enumerate", "EnumerateRequest", "EnumerateResponse", { handler: reg.enumerate, primitive: REG, idempotent: true }),
  def(M.REGISTRY_MULTICAST, "MulticastRegistry", "Multicast", "MulticastRequest", "MulticastResponse", { handler: reg.multicast, primitive: REG }),
  def(M.REGISTRY_SUBSCRIBE, "MulticastRegistry", "Subscribe", "MemberSubscribeRequest", "PubSubMessage", { subscribe: reg.subscribe, primitive: REG }),
  def(M.CLAIM_PUT, "ClaimCheck", "Put", "PutPayloadRequest", "PutPayloadResponse", { handler: cc.put as NsHandler, primitive: CC, transfer: "upload" }),
  def(M.CLAIM_GET, "ClaimCheck", "Get", "GetPayloadRequest", "PayloadChunk", { handler: cc.get as NsHandler, primitive: CC, transfer: "download" }),
  def(M.CLAIM_HEAD, "ClaimCheck", "Head", "GetPayloadRequest", "Claim", { handler: cc.head, primitive: CC, idempotent: true }),
  def(M.CLAIM_DELETE, "ClaimCheck", "Delete", "GetPayloadRequest", "DeletePayloadResponse", { handler: cc.del, primitive: CC, idempotent: true }),
  def(M.ADMIN_LIST_NAMESPACES, "Admin", "ListNamespaces", "ListNamespacesRequest", "ListNamespacesResponse", { admin: admin.listNamespaces, idempotent: true }),
  def(M.ADMIN_GET_NAMESPACE, "Admin", "GetNamespace", "GetNamespaceRequest", "NamespaceInfo", { admin: admin.getNamespace, idempotent: true }),
  def(M.ADMIN_APPLY_NAMESPACE, "Admin", "ApplyNamespace", "ApplyNamespaceRequest", "ApplyNamespaceResponse", { admin: admin.applyNamespace }),
  def(M.ADMIN_DELETE_NAMESPACE, "Admin", "DeleteNamespace", "DeleteNamespaceRequest", "DeleteNamespaceResponse", { admin: admin.deleteNamespace }),
  def(M.ADMIN_LIST_BACKENDS, "Admin", "ListBackends", "ListBackendsRequest", "ListBackendsResponse", { admin: admin.listBackends, idempotent: true }),
  def(M.ADMIN_HEALTH, "Admin", "Health", "HealthRequest", "HealthResponse", { admin: admin.health, idempotent: true }),
  def(M.ADMIN_APPLY_BACKEND, "Admin", "ApplyBackend", "ApplyBackendRequest", "ApplyBackendResponse", { admin: admin.applyBackend }),
  def(M.ADMIN_DELETE_BACKEND, "Admin", "DeleteBackend", "DeleteBackendRequest", "DeleteBackendResponse", { admin: admin.deleteBackend }),
  def(M.ADMIN_LIST_BACKEND_INSTANCES, "Admin", "ListBackendInstances", "ListBackendInstancesRequest", "ListBackendInstancesResponse", { admin: admin.listBackendInstances, idempotent: true }),
  def(M.ADMIN_MIGRATION_STATUS, "Admin", "MigrationStatus", "MigrationRequest", "MigrationInfo", { admin: admin.migrationStatus, idempotent: true }),
  def(M.ADMIN_START_MIGRATION, "Admin", "StartMigration", "MigrationRequest", "MigrationInfo", { admin: admin.startMigration }),
  def(M.ADMIN_ADVANCE_MIGRATION, "Admin", "AdvanceMigration", "MigrationRequest", "MigrationInfo", { admin: admin.advanceMigration }),
  def(M.ADMIN_ROLLBACK_MIGRATION, "Admin", "RollbackMigration", "MigrationRequest", "MigrationInfo", { admin: admin.rollbackMigration }),
  def(M.ADMIN_FINISH_MIGRATION, "Admin", "FinishMigration", "MigrationRequest", "MigrationInfo", { admin: admin.finishMigration }),
  def(M.ADMIN_LIST_PATTERNS, "Admin", "ListPatterns", "ListPatternsRequest", "ListPatternsResponse", { admin: admin.listPatterns, idempotent: true }),
];

/** Indexed by WebSocket method id (a dense array: one bounds check per frame). */
export const METHOD_BY_ID: readonly (MethodDef | undefined)[] = (() => {
  const a: (MethodDef | undefined)[] = [];
  for (const m of METHODS) a[m.id] = m;
  return a;
})();

export const METHOD_BY_PATH: ReadonlyMap<string, MethodDef> = new Map(METHODS.map((m) => [m.path, m]));

/** `KeyValue/Get` or `KeyValue.Get` → MethodDef (HTTP routes, CLI). */
export function methodByName(service: string, name: string): MethodDef | undefined {
  return METHOD_BY_PATH.get(`/prism.v1.${service}/${name}`);
}
