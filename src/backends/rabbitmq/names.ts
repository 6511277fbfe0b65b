/**
 * Broker object names. Namespace names may contain `.` but never `:` or `~`,
 * so `${prefix}.${ns with . → :}.` is a prefix no other namespace shares
 * (`users` / `users.abc` / `usersAbc` stay apart), and names with `~` are
 * Prism's own (delay tiers), out of any namespace's reach.
 */
export function nsPart(ns: string): string {
  return ns.replace(/\./g, ":");
}

export function queueName(prefix: string, ns: string, queue: string): string {
  return `${prefix}.${nsPart(ns)}.${queue}`;
}

export function pubsubExchange(prefix: string, ns: string): string {
  return `${prefix}.${nsPart(ns)}.ps`;
}

/** `<queue>.dlq` is the dead-letter queue of `<queue>`; a `.dlq` queue has none of its own. */
export function isDlq(queue: string): boolean {
  return queue.endsWith(".dlq");
}
