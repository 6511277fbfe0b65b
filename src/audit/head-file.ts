/**
 * The audit file's head: `<file>.head`, a small JSON document rewritten
 * (temporary file + rename) after each batch lands:
 *
 *   {"seq":N,"hash":"<hex>","files":[{"file":"audit.log","first_seq":F0},
 *                                   {"file":"audit.log.1","first_seq":F1},…],"time":"…"}
 *
 * `seq`/`hash` are the last record written, `files` the first seq of the
 * current file and of each rotated one. The chain alone cannot show lines
 * cut off the end of the newest file, nor the first lines of the oldest one
 * (the remaining lines still link up); with the head, `prism audit verify`
 * can: the newest file must reach `seq` with that `hash`, and each file must
 * start at its `first_seq`. It is a second place an editor must change
 * consistently, not a proof against one who rewrites both (keep a copy of the
 * head elsewhere, e.g. ship it with the logs, for that). The head never runs
 * ahead of the file: it is written only after the batch's write returned.
 */
import { readFile, rename, writeFile } from "node:fs/promises";
import { basename } from "node:path";
import type { ChainHead } from "./chain.js";

export interface HeadFile extends ChainHead {
  files: { file: string; first_seq: number }[];
  time?: string;
}

export const headPathOf = (auditFile: string) => `${auditFile}.head`;

/** The head file at `path`; undefined when there is none; throws when it is not one. */
export async function readHeadFile(path: string): Promise<HeadFile | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  const h = JSON.parse(text) as HeadFile;
  if (!Number.isSafeInteger(h.seq) || typeof h.hash !== "string" || !Array.isArray(h.files)) throw new Error(`${path} is not an audit head file`);
  return h;
}

/** Rewrites the head of `auditFile` atomically (one writer per file: the process that appends it). */
export async function writeHeadFile(auditFile: string, head: ChainHead, firstSeqs: readonly (number | undefined)[], now: number): Promise<void> {
  const files: HeadFile["files"] = [];
  const name = basename(auditFile);
  firstSeqs.forEach((first, i) => {
    if (first !== undefined) files.push({ file: i === 0 ? name : `${name}.${i}`, first_seq: first });
  });
  const doc: HeadFile = { seq: head.seq, hash: head.hash, files, time: new Date(now).toISOString() };
  const path = headPathOf(auditFile);
  const tmp = `${path}.tmp`;
  await writeFile(tmp, `${JSON.stringify(doc)}\n`);
  await rename(tmp, path);
}
