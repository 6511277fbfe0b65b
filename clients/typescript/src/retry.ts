/**
 * Which calls the SDK may send again after the connection dropped while they
 * were in flight (the first attempt may or may not have reached the server).
 * - "always": reads and calls whose repetition has no further effect.
 * - "keyed": writes, only when they carry an idempotency key (the server then
 *   applies the key once and answers a retry with the first result).
 * - absent: never. Queue Dequeue and Stream ReadGroup lease or claim messages,
 *   Ack/Nack/ExtendVisibility act on a lease (a repeated Ack after a successful
 *   one reports a stale receipt), batch writes, Expire, registry and Admin changes
 *   carry no key. Those fail with UNAVAILABLE.
 * Calls the SDK never sent (issued while disconnected) wait for the connection
 * and are sent once, whatever their kind.
 */
export const RETRY: Readonly<Record<string, "always" | "keyed">> = {
  "KeyValue/Get": "always",
  "KeyValue/Exists": "always",
  "KeyValue/BatchGet": "always",
  "KeyValue/Scan": "always",
  "KeyValue/GetTtl": "always",
  "KeyValue/Persist": "always",
  "KeyValue/Set": "keyed",
  "KeyValue/Delete": "keyed",
  "PubSub/Publish": "keyed",
  "Queue/Enqueue": "keyed",
  "Stream/Append": "keyed",
  "Stream/Read": "always",
  "MulticastRegistry/Enumerate": "always",
  "Admin/ListNamespaces": "always",
  "Admin/GetNamespace": "always",
  "Admin/ListBackends": "always",
  "Admin/ListBackendInstances": "always",
  "Admin/ListPatterns": "always",
  "Admin/Health": "always",
  "Admin/MigrationStatus": "always",
};

/** @internal May this request be sent again after its connection dropped? `r`: the method's entry. */
export function retryable(r: "always" | "keyed" | undefined, request: object): boolean {
  if (r === "always") return true;
  if (r === "keyed") {
    const k = (request as { idempotencyKey?: unknown }).idempotencyKey;
    return typeof k === "string" && k !== "";
  }
  return false;
}
