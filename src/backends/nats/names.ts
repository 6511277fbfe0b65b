/**
 * Naming: how namespaces, queues, streams and keys map onto NATS subjects,
 * JetStream stream names and KV buckets.
 *
 * Layout (prefix P, namespace token N = enc(namespace)):
 * - PubSub:  `P.N.ps.<topic>` (topics are dot-separated tokens already)
 * - Queue:   stream `P_Q_N__enc(queue)`  on subject `P.N.q.enc(queue)`
 * - Stream:  stream `P_S_N__enc(stream)` on subject `P.N.s.enc(stream)`
 * - KV:      bucket `P_K_N` (stream `KV_P_K_N`), keys hex-encoded
 *
 * enc() keeps [A-Za-z0-9-] and writes every other UTF-8 byte as `_XX`
 * (upper-case hex). It is injective, its output is a valid subject token and
 * stream name, and it never contains `__` (after `_` come two hex digits), so
 * `__` separates parts unambiguously: `users` and `usersAbc`, `a.b` and `a_2Eb`
 * never meet.
 */
import { createHash } from "node:crypto";

const PLAIN = /^[A-Za-z0-9-]*$/;
/** Stream names become directory names on the server: stay well below file-name limits. */
const MAX_STREAM_NAME = 120;

export function enc(s: string): string {
  if (PLAIN.test(s)) return s;
  let out = "";
  for (const b of Buffer.from(s, "utf8")) {
    const c = String.fromCharCode(b);
    out += (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x2d ? c : `_${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/** enc()'s inverse (a queue's subject token back to its name). */
export function dec(token: string): string {
  if (!token.includes("_")) return token;
  const bytes: number[] = [];
  for (let i = 0; i < token.length; i++) {
    if (token[i] === "_") {
      bytes.push(parseInt(token.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(token.charCodeAt(i));
  }
  return Buffer.from(bytes).toString("utf8");
}

/** A stream name from its parts; hashed (still unique per parts) when too long. */
function streamName(prefix: string, kind: string, ns: string, name: string): string {
  const full = `${prefix}_${kind}_${ns}__${name}`;
  if (full.length <= MAX_STREAM_NAME) return full;
  const h = createHash("sha256").update(`${ns}\0${name}`).digest("hex").slice(0, 40);
  return `${prefix}_${kind}_H${h}`;
}

/** Lower-case hex of the key's UTF-8 bytes: valid KV key, and hex order = byte order. */
export function kvKey(key: string): string {
  return Buffer.from(key, "utf8").toString("hex");
}

export function kvKeyDecode(hex: string): string {
  return Buffer.from(hex, "hex").toString("utf8");
}

/** Every name of one namespace. */
export class Names {
  readonly ns: string;
  /** `P.N.ps.` (topics are appended). */
  readonly pubsubBase: string;
  readonly bucket: string;

  constructor(
    readonly prefix: string,
    namespace: string,
  ) {
    this.ns = enc(namespace);
    this.pubsubBase = `${prefix}.${this.ns}.ps.`;
    const b = `${prefix}_K_${this.ns}`;
    this.bucket = b.length <= MAX_STREAM_NAME ? b : `${prefix}_K_H${createHash("sha256").update(this.ns).digest("hex").slice(0, 40)}`;
  }

  queue(queue: string): { stream: string; subject: string } {
    const q = enc(queue);
    return { stream: streamName(this.prefix, "Q", this.ns, q), subject: `${this.prefix}.${this.ns}.q.${q}` };
  }

  stream(stream: string): { stream: string; subject: string } {
    const s = enc(stream);
    return { stream: streamName(this.prefix, "S", this.ns, s), subject: `${this.prefix}.${this.ns}.s.${s}` };
  }

  /** A consumer-group name as a JetStream durable name. */
  group(group: string): string {
    const g = `g-${enc(group)}`;
    return g.length <= MAX_STREAM_NAME ? g : `gH${createHash("sha256").update(group).digest("hex").slice(0, 40)}`;
  }
}
