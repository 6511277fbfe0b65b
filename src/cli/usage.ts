/** Command-line mistakes: printed with the usage and exit status 64 (EX_USAGE). */
export class UsageError extends Error {}

export const EXIT_USAGE = 64;

export const SERVE_USAGE = `usage: prism serve [--config FILE] [--workers N|auto] [--host H] [--grpc-port P] [--http-port P] [--insecure-no-auth]`;
export const VALIDATE_USAGE = `usage: prism validate FILE`;
export const KV_USAGE = `usage: prism kv get KEY [--raw] | set KEY VALUE [--ttl SECONDS] | del KEY  [--ns NAMESPACE] [--addr ws://HOST:PORT]`;
/** How the client commands find the gateway (src/cli/client.ts). */
export const ADDR_HELP = `--addr names the gateway: ws://HOST:PORT, grpc://HOST:PORT or http://HOST:PORT; without it $PRISM_ADDR, else ws://127.0.0.1:8981.
kv get prints the value and a newline; --raw prints the value's bytes only.`;
export const NS_USAGE = `usage: prism ns list [--wide] | get NAME | delete NAME | diff -f FILE [--prune] [--verbose]  [--addr ws://HOST:PORT]`;
export const APPLY_USAGE = `usage: prism apply -f FILE [--dry-run] [--prune] [--verbose] [--addr ws://HOST:PORT]`;
export const BACKENDS_USAGE = `usage: prism backends [--types] [--addr ws://HOST:PORT]`;
export const MIGRATE_USAGE = `usage: prism migrate status|start|advance|rollback|finish NAMESPACE [--reason TEXT] [--dry-run (start only)] [--addr ws://HOST:PORT]`;
export const PATTERNS_USAGE = `usage: prism patterns [--addr ws://HOST:PORT]`;
export const AUDIT_USAGE = `usage: prism audit verify [--head FILE.head | --no-head] [--key-file FILE] FILE [FILE…]   (rotated files oldest first: audit.log.2 audit.log.1 audit.log; the ends are checked against <newest>.head when it is there; a keyed chain needs audit.chain_key via --key-file or PRISM_AUDIT_KEY)`;
export const KEYS_USAGE = `usage: prism keys rotate [--config FILE] [--dry-run]   (re-wraps the data keys with security.kek)`;
