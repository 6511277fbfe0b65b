/**
 * Key layout. Every key of a namespace starts with `${prefix}:{${namespace}}:`:
 * the braces are a Redis Cluster hash tag, so one namespace's keys share one
 * slot and the multi-key Lua scripts stay legal on a cluster. The closing `}`
 * also makes prefixes unambiguous: `users` and `usersAbc` never share a key
 * prefix (`p:{users}:` vs `p:{usersAbc}:`).
 *
 *   kv:<key>            HASH { v: value, ver: version }, native PEXPIRE for TTL
 *   kvidx               ZSET of live keys, score 0 (byte-ordered scans)
 *   kvver               counter: versions come from it (monotonic per key, even across delete)
 *   ps:<topic>          PubSub channel
 *   qseq                counter: queue message ids (unique per namespace)
 *   q:msg:<id>          HASH { p payload, a attributes, d deliveries, r receipt, t enqueued-at }
 *   q:ready:<queue>     ZSET id → visible-at (ms)
 *   q:lease:<queue>     ZSET id → lease deadline (ms)
 *   s:log:<stream>      Redis stream, entry id `${offset}-0`
 *   s:seq:<stream>      counter: last offset
 * Queue and stream names cannot contain `{`, `}` or whitespace (validated above the driver).
 */
export class Keys {
  /** `${prefix}:{${namespace}}:` */
  readonly base: string;
  readonly kvBase: string;
  readonly kvIndex: string;
  readonly kvVersion: string;
  readonly psBase: string;
  readonly qSeq: string;
  readonly qMsgBase: string;
  /** The PUBLISH channel on which Prism instances tell each other that messages became visible (queue.ts). */
  readonly qWake: string;

  constructor(prefix: string, namespace: string) {
    this.base = `${prefix}:{${namespace}}:`;
    this.kvBase = `${this.base}kv:`;
    this.kvIndex = `${this.base}kvidx`;
    this.kvVersion = `${this.base}kvver`;
    this.psBase = `${this.base}ps:`;
    this.qSeq = `${this.base}qseq`;
    this.qWake = `${this.base}q:wake`;
    this.qMsgBase = `${this.base}q:msg:`;
  }

  kv(key: string): string {
    return this.kvBase + key;
  }
  channel(topic: string): string {
    return this.psBase + topic;
  }
  ready(queue: string): string {
    return `${this.base}q:ready:${queue}`;
  }
  lease(queue: string): string {
    return `${this.base}q:lease:${queue}`;
  }
  log(stream: string): string {
    return `${this.base}s:log:${stream}`;
  }
  /** An idempotency record (its key already names operation and target). */
  once(key: string): string {
    return `${this.base}idem:${key}`;
  }
  seq(stream: string): string {
    return `${this.base}s:seq:${stream}`;
  }
}
