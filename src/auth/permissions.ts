/**
 * Which permission every RPC needs, decided once per method in one table.
 * test/unit/auth-rbac.test.ts checks that every method of the method table
 * (src/core/methods.ts) is listed, so a new RPC cannot slip through unmapped:
 * permissionOf() of an unlisted method throws at start (compileMethodPermissions).
 *
 * Scope: "namespace" checks the permission on the namespace the request names
 * (data calls: `namespace`; Admin: `name` or `namespace`); "global" checks it
 * on the namespace pattern "*" (the caller needs a rule whose patterns include
 * `*`: gateway-wide operations such as listing namespaces or changing backends).
 * "open": no permission (Admin.Health, like GET /healthz: load balancers probe
 * it without credentials; it names backends' health, never namespaces or data).
 */
import type { MethodDef } from "../core/methods.js";
import type { Permission } from "./config.js";

export type Scope = "namespace" | "global" | "open";
export interface MethodPermission {
  permission: Permission;
  scope: Scope;
  /** The request field naming the namespace (scope "namespace"). */
  field: "namespace" | "name";
}

const ns = (permission: Permission): MethodPermission => ({ permission, scope: "namespace", field: "namespace" });
const adminNs = (field: "namespace" | "name"): MethodPermission => ({ permission: "admin", scope: "namespace", field });
const GLOBAL_ADMIN: MethodPermission = { permission: "admin", scope: "global", field: "namespace" };
const OPEN: MethodPermission = { permission: "read", scope: "open", field: "namespace" };

/** Keyed by `Service/Method`. */
export const METHOD_PERMISSIONS: Readonly<Record<string, MethodPermission>> = {
  "KeyValue/Get": ns("read"),
  "KeyValue/Exists": ns("read"),
  "KeyValue/BatchGet": ns("read"),
  "KeyValue/Scan": ns("read"),
  "KeyValue/GetTtl": ns("read"),
  "KeyValue/Set": ns("write"),
  "KeyValue/Delete": ns("write"),
  "KeyValue/BatchSet": ns("write"),
  "KeyValue/BatchDelete": ns("write"),
  "KeyValue/Expire": ns("write"),
  "KeyValue/Persist": ns("write"),
  "PubSub/Publish": ns("write"),
  "PubSub/Subscribe": ns("read"),
  // Dequeue leases messages (it changes what others see) but is how a queue is read: read.
  "Queue/Dequeue": ns("read"),
  "Queue/Enqueue": ns("write"),
  "Queue/Ack": ns("write"),
  "Queue/Nack": ns("write"),
  "Queue/ExtendVisibility": ns("write"),
  "Queue/EnqueueBatch": ns("write"),
  "Queue/AckBatch": ns("write"),
  "Stream/Read": ns("read"),
  "Stream/ReadGroup": ns("read"),
  "Stream/Append": ns("write"),
  "Stream/AckGroup": ns("write"),
  "MulticastRegistry/Enumerate": ns("read"),
  "MulticastRegistry/Subscribe": ns("read"),
  "MulticastRegistry/Register": ns("write"),
  "MulticastRegistry/Unregister": ns("write"),
  "MulticastRegistry/Multicast": ns("write"),
  // Claim-check payloads (large values beside a KeyValue / Queue / PubSub / Stream message).
  "ClaimCheck/Put": ns("write"),
  "ClaimCheck/Delete": ns("write"),
  "ClaimCheck/Get": ns("read"),
  "ClaimCheck/Head": ns("read"),
  "Admin/Health": OPEN,
  "Admin/GetNamespace": adminNs("name"),
  "Admin/DeleteNamespace": adminNs("name"),
  "Admin/MigrationStatus": adminNs("namespace"),
  "Admin/StartMigration": adminNs("namespace"),
  "Admin/AdvanceMigration": adminNs("namespace"),
  "Admin/RollbackMigration": adminNs("namespace"),
  "Admin/FinishMigration": adminNs("namespace"),
  // The entry's name is inside YAML/Struct the handler parses: gateway-wide admin.
  "Admin/ApplyNamespace": GLOBAL_ADMIN,
  "Admin/ListNamespaces": GLOBAL_ADMIN,
  "Admin/ListBackends": GLOBAL_ADMIN,
  "Admin/ApplyBackend": GLOBAL_ADMIN,
  "Admin/DeleteBackend": GLOBAL_ADMIN,
  "Admin/ListBackendInstances": GLOBAL_ADMIN,
  "Admin/ListPatterns": GLOBAL_ADMIN,
};

export function permissionOf(m: { service: string; name: string }): MethodPermission | undefined {
  return METHOD_PERMISSIONS[`${m.service}/${m.name}`];
}

/** Indexed by method id (the gateway's hot path: one array read). Throws if a method has no entry. */
export function compileMethodPermissions(methods: readonly MethodDef[]): (MethodPermission | undefined)[] {
  const out: (MethodPermission | undefined)[] = [];
  for (const m of methods) {
    const p = permissionOf(m);
    if (p === undefined) throw new Error(`auth: method ${m.service}/${m.name} has no permission in src/auth/permissions.ts`);
    out[m.id] = p;
  }
  return out;
}
