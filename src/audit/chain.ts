/**
 * The hash chain of the audit log. A sealed line is the record's JSON object
 * with three fields appended, in this order:
 *
 *   {…record…,"seq":N,"prev":"<hex>","hash":"<hex>"}
 *
 * `seq` counts records from 1 across the whole chain (rotations and restarts
 * included), `prev` is the previous record's `hash` (GENESIS for the first
 * record ever), and `hash` is sha256 (hex) of the line's text up to `prev`'s
 * closing quote followed by "}" — i.e. of `{…record…,"seq":N,"prev":"…"}`.
 * Hashing the text (not a re-serialisation) makes verification exact: any
 * changed byte of a line breaks its hash, a removed or reordered line breaks
 * the next line's `prev` and `seq`.
 *
 * Keyed chain (audit.chain_key): the last field is `"mac"`, HMAC-SHA256 of
 * the same text with a secret key, instead of `"hash"`. Without the key no
 * one can re-seal an edited or shortened chain; with it verify checks each
 * line (and that a keyed chain never turns unkeyed).
 */
import * as crypto from "node:crypto";

/** One-shot sha256 (crypto.hash, Node ≥ 20.12: about half the cost of createHash per record), else createHash. */
const sha256hex: (s: string) => string =
  typeof (crypto as { hash?: unknown }).hash === "function"
    ? (s) => (crypto as unknown as { hash(alg: string, data: string, enc: string): string }).hash("sha256", s, "hex")
    : (s) => crypto.createHash("sha256").update(s).digest("hex");

export const GENESIS = "0".repeat(64);

export interface ChainHead {
  seq: number;
  hash: string;
}

const hmacHex = (key: Buffer, s: string) => crypto.createHmac("sha256", key).update(s).digest("hex");

/**
 * `body` is an unterminated JSON object (`{"time":…,"peer":"…"`); returns the
 * sealed line (no newline) and its link (hash, or mac with a key).
 */
export function seal(body: string, seq: number, prev: string, key?: Buffer): { line: string; hash: string } {
  const hashed = `${body},"seq":${seq},"prev":"${prev}"`;
  if (key !== undefined) {
    const mac = hmacHex(key, `${hashed}}`);
    return { line: `${hashed},"mac":"${mac}"}`, hash: mac };
  }
  const hash = sha256hex(`${hashed}}`);
  return { line: `${hashed},"hash":"${hash}"}`, hash };
}

/** A line without the chain fields (hash_chain: false). */
export function plain(body: string, seq: number): string {
  return `${body},"seq":${seq}}`;
}

const TAIL = /,"seq":(\d+),"prev":"([0-9a-f]{64})","(hash|mac)":"([0-9a-f]{64})"\}$/;

export interface ParsedLine {
  seq: number;
  prev: string;
  /** The line's link: its hash, or its mac. */
  hash: string;
  keyed: boolean;
  /** The link the line's text actually has; undefined for a keyed line read without the key. */
  computed: string | undefined;
}

/** The chain fields of a sealed line, and the link its text has; undefined when the line is not a sealed record. */
export function parseSealed(line: string, key?: Buffer): ParsedLine | undefined {
  const m = TAIL.exec(line);
  if (!m) return undefined;
  const keyed = m[3] === "mac";
  const text = `${line.slice(0, line.length - `,"${m[3]}":"${m[4]}"}`.length)}}`;
  const computed = keyed ? (key === undefined ? undefined : hmacHex(key, text)) : sha256hex(text);
  return { seq: Number(m[1]), prev: m[2]!, hash: m[4]!, keyed, computed };
}
