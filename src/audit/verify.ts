/**
 * `prism audit verify FILE…`: checks the hash chain of audit files given
 * oldest first (audit.log.2 audit.log.1 audit.log). Every line must be a
 * sealed record whose hash matches its text (an edited line fails), whose
 * `prev` is the previous line's hash and whose `seq` is the previous seq + 1
 * (a deleted or reordered line fails at the line after the gap). The first
 * line either starts the chain (prev = GENESIS, seq 1) or continues one from
 * a file not given (a rotated-away file): that is reported, not refused.
 *
 * The chain alone cannot show lines cut off the END of the newest file, nor
 * off the START of the oldest one: what remains still links up. The head
 * file Prism keeps beside the log (`<file>.head`, src/audit/head-file.ts)
 * closes both: when it is there (or given with --head), each file given that
 * it lists must start at the seq it recorded, and the newest file must reach
 * its last seq with its hash.
 *
 * A keyed chain (audit.chain_key: lines end with "mac") is checked with the
 * key (--key-file or PRISM_AUDIT_KEY); once a line is keyed every later one
 * must be, so a chain cannot be re-sealed without the key by dropping it.
 */
import { createReadStream, existsSync } from "node:fs";
import { basename } from "node:path";
import { createInterface } from "node:readline";
import { GENESIS, parseSealed } from "./chain.js";
import { headPathOf, readHeadFile, type HeadFile } from "./head-file.js";

export interface VerifyResult {
  ok: boolean;
  records: number;
  firstSeq?: number;
  lastSeq?: number;
  /** Lines carry a mac (audit.chain_key), checked with the key given. */
  keyed?: boolean;
  /** The first line starts the chain (prev = GENESIS). */
  fromGenesis?: boolean;
  /** The head file the ends were checked against; undefined: none found (the ends are not checked). */
  head?: string;
  /** Where the chain first breaks. */
  file?: string;
  line?: number;
  reason?: string;
}

/** The head file of the newest file given: `<newest>.head`, or for `audit.log.3` also `audit.log.head`. */
export function findHeadFile(files: readonly string[]): string | undefined {
  const newest = files[files.length - 1];
  if (newest === undefined) return undefined;
  const candidates = [headPathOf(newest)];
  const rotated = /^(.*)\.\d+$/.exec(newest);
  if (rotated) candidates.push(headPathOf(rotated[1]!));
  return candidates.find((c) => existsSync(c));
}

/**
 * `head`: a head file path, false to check the chain only; default: findHeadFile.
 * `key`: audit.chain_key, for keyed chains (lines with `mac`).
 */
export async function verifyFiles(files: readonly string[], opts: { head?: string | false; key?: Buffer } = {}): Promise<VerifyResult> {
  let keyedSince: string | undefined;
  let prev: { seq: number; hash: string; file: string; line: number } | undefined;
  const out: VerifyResult = { ok: true, records: 0 };
  const headPath = opts.head === false ? undefined : (opts.head ?? findHeadFile(files));
  const head: HeadFile | undefined = headPath === undefined ? undefined : await readHeadFile(headPath);
  if (headPath !== undefined && head === undefined) throw new Error(`head file ${headPath} not found`);
  if (head !== undefined) out.head = headPath;
  for (const file of files) {
    const rl = createInterface({ input: createReadStream(file, { encoding: "utf8" }), crlfDelay: Infinity });
    const listed = head?.files.find((f) => f.file === basename(file));
    const current = head !== undefined && head.files[0]?.file === basename(file);
    let first: number | undefined;
    let last: number | undefined;
    let atHead: string | undefined;
    let n = 0;
    for await (const line of rl) {
      n++;
      if (line.length === 0) continue;
      const fail = (reason: string): VerifyResult => {
        rl.close();
        return { ...out, ok: false, file, line: n, reason };
      };
      try {
        JSON.parse(line);
      } catch {
        return fail("not a JSON object (edited or cut)");
      }
      const p = parseSealed(line, opts.key);
      if (!p) return fail("not a sealed audit record (no seq / prev / hash at its end)");
      if (p.keyed && opts.key === undefined) return fail("a keyed chain (audit.chain_key): give the key with --key-file FILE or PRISM_AUDIT_KEY");
      if (!p.keyed && keyedSince !== undefined) return fail(`an unkeyed line after keyed ones (since ${keyedSince}): the chain was re-sealed without the key`);
      if (p.keyed && keyedSince === undefined) keyedSince = `${file}:${n}`;
      if (p.computed !== p.hash) return fail(p.keyed ? "its mac does not match its content with this key (the line was edited, or the key is not the chain's)" : "its hash does not match its content (the line was edited)");
      if (prev === undefined) {
        out.fromGenesis = p.prev === GENESIS;
        if (out.fromGenesis && p.seq !== 1) return fail(`starts the chain but has seq ${p.seq} (records before it were removed)`);
        out.firstSeq = p.seq;
      } else {
        if (p.prev !== prev.hash) return fail(`its prev is not the hash of the record before it (${prev.file}:${prev.line}): a line was deleted, inserted or moved`);
        if (p.seq !== prev.seq + 1) return fail(`seq ${p.seq} follows seq ${prev.seq}: a line was deleted, inserted or moved`);
      }
      if (first === undefined) {
        first = p.seq;
        if (listed !== undefined && first !== listed.first_seq) {
          return fail(
            first > listed.first_seq
              ? `starts at seq ${first} but the head file (${headPath}) records seq ${listed.first_seq} as this file's first: records ${listed.first_seq}..${first - 1} were removed from its start`
              : `starts at seq ${first} but the head file (${headPath}) records seq ${listed.first_seq} as this file's first: lines were added before it`,
          );
        }
      }
      if (current && p.seq === head!.seq) atHead = p.hash;
      last = p.seq;
      prev = { seq: p.seq, hash: p.hash, file, line: n };
      if (p.keyed) out.keyed = true;
      out.records++;
      out.lastSeq = p.seq;
    }
    if (listed !== undefined && first === undefined) return { ...out, ok: false, file, line: 1, reason: `holds no record but the head file (${headPath}) records seq ${listed.first_seq} as this file's first` };
    if (current) {
      const at = { ...out, ok: false, file, line: n + 1 };
      if ((last ?? 0) < head!.seq) return { ...at, reason: `ends at seq ${last ?? 0} but the head file (${headPath}) records seq ${head!.seq} written: records ${(last ?? 0) + 1}..${head!.seq} were cut off the end` };
      if (atHead !== head!.hash) return { ...at, reason: `record seq ${head!.seq} is not the one the head file (${headPath}) recorded (its hash differs): the file's end was rewritten` };
    }
  }
  // Unkeyed lines may only come before keyed ones (a key turned on later): an end without a mac was re-sealed without the key.
  if (opts.key !== undefined && out.records > 0 && keyedSince === undefined) return { ...out, ok: false, file: prev!.file, line: prev!.line, reason: "a key was given but no line carries a mac: the chain is not keyed (or was re-sealed without the key)" };
  return out;
}

/** The CLI's text: one line, and the exit code (0 intact, 1 broken). */
export function describe(r: VerifyResult): { text: string; code: number } {
  if (!r.ok) return { text: `audit verify: BROKEN at ${r.file}:${r.line}: ${r.reason} (${r.records} record(s) before it are intact)`, code: 1 };
  if (r.records === 0) return { text: "audit verify: ok: no records", code: 0 };
  const start = r.fromGenesis ? "from the start of the chain" : `continuing a chain whose record ${r.firstSeq! - 1} is in an older file`;
  const keyed = r.keyed ? ", keyed (mac checked with the key)" : "";
  const ends = r.head !== undefined ? `; both ends match ${r.head}` : "; no head file: lines cut off the end (or off the start of the oldest file) cannot be detected";
  return { text: `audit verify: ok: ${r.records} record(s), seq ${r.firstSeq}..${r.lastSeq}${keyed}, ${start}${ends}`, code: 0 };
}
