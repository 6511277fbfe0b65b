/** Command-line mistakes: printed with the usage and exit status 64 (EX_USAGE). */
export class UsageError extends Error {}

export const EXIT_USAGE = 64;

export const SERVE_USAGE = `usage: prism serve [--config FILE] [--workers N|auto] [--host H] [--grpc-port P] [--http-port P]`;
export const VALIDATE_USAGE = `usage: prism validate FILE`;
export const KV_USAGE = `usage: prism kv get KEY | set KEY VALUE [--ttl SECONDS] | del KEY  [--ns NAMESPACE] [--addr ws://HOST:PORT]`;
export const NS_USAGE = `usage: prism ns list [--wide] | get NAME | delete NAME | diff -f FILE [--prune] [--verbose]  [--addr ws://HOST:PORT]`;
export const APPLY_USAGE = `usage: prism apply -f FILE [--dry-run] [--prune] [--verbose] [--addr ws://HOST:PORT]`;
export const BACKENDS_USAGE = `usage: prism backends [--types] [--addr ws://HOST:PORT]`;
export const MIGRATE_USAGE = `usage: prism migrate status|start|advance|rollback|finish NAMESPACE [--reason TEXT] [--addr ws://HOST:PORT]`;
export const PATTERNS_USAGE = `usage: prism patterns [--addr ws://HOST:PORT]`;
