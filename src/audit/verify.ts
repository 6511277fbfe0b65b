/**
 * `prism audit verify FILE…`: checks the hash chain of audit files given
 * oldest first (audit.log.2 audit.log.1 audit.log). Every line must be a
 * sealed record whose hash matches its text (an edited line fails), whose
 * `prev` is the previous line's hash and whose `seq` is the previous seq + 1
 * (a deleted or reordered line fails at the line after the gap). The first
 * line either starts the chain (prev = GENESIS, seq 1) or continues one from
 * a file not given (a rotated-away file): that is reported, not refused.
 * Limit: lines cut off the END of the newest file leave no gap to detect
 * (compare the last seq with what the service logged, or keep file.1's last
 * hash elsewhere).
 */
import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import { GENESIS, parseSealed } from "./chain.js";

export interface VerifyResult {
  ok: boolean;
  records: number;
  firstSeq?: number;
  lastSeq?: number;
  /** The first line starts the chain (prev = GENESIS). */
  fromGenesis?: boolean;
  /** Where the chain first breaks. */
  file?: string;
  line?: number;
  reason?: string;
}

export async function verifyFiles(files: readonly string[]): Promise<VerifyResult> {
  let prev: { seq: number; hash: string; file: string; line: number } | undefined;
  const out: VerifyResult = { ok: true, records: 0 };
  for (const file of files) {
    const rl = createInterface({ input: createReadStream(file, { encoding: "utf8" }), crlfDelay: Infinity });
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
      const p = parseSealed(line);
      if (!p) return fail("not a sealed audit record (no seq / prev / hash at its end)");
      if (p.computed !== p.hash) return fail("its hash does not match its content (the line was edited)");
      if (prev === undefined) {
        out.fromGenesis = p.prev === GENESIS;
        if (out.fromGenesis && p.seq !== 1) return fail(`starts the chain but has seq ${p.seq} (records before it were removed)`);
        out.firstSeq = p.seq;
      } else {
        if (p.prev !== prev.hash) return fail(`its prev is not the hash of the record before it (${prev.file}:${prev.line}): a line was deleted, inserted or moved`);
        if (p.seq !== prev.seq + 1) return fail(`seq ${p.seq} follows seq ${prev.seq}: a line was deleted, inserted or moved`);
      }
      prev = { seq: p.seq, hash: p.hash, file, line: n };
      out.records++;
      out.lastSeq = p.seq;
    }
  }
  return out;
}

/** The CLI's text: one line, and the exit code (0 intact, 1 broken). */
export function describe(r: VerifyResult): { text: string; code: number } {
  if (!r.ok) return { text: `audit verify: BROKEN at ${r.file}:${r.line}: ${r.reason} (${r.records} record(s) before it are intact)`, code: 1 };
  if (r.records === 0) return { text: "audit verify: ok: no records", code: 0 };
  const start = r.fromGenesis ? "from the start of the chain" : `continuing a chain whose record ${r.firstSeq! - 1} is in an older file`;
  return { text: `audit verify: ok: ${r.records} record(s), seq ${r.firstSeq}..${r.lastSeq}, ${start}`, code: 0 };
}
