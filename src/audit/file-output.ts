/**
 * The audit file: appended with one write per batch, rotated by size
 * (file → file.1 → … → file.<keep>; the oldest is overwritten), reopened on
 * the next start where the chain left off (the last line of the file, or of
 * file.1 right after a rotation, or the head file when it is further: see
 * below). After each batch the head file `<file>.head` (src/audit/head-file.ts)
 * records the last seq/hash and each file's first seq, so that `prism audit
 * verify` also finds lines cut off either end. Writes are not fsynced: a
 * crash of the machine can lose the last batch (and verify then reports the
 * tail the head promised), a crash of Prism loses nothing written.
 */
import { mkdir, open, rename, stat, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import type { AuditOutput } from "./sink.js";
import { parseSealed, type ChainHead } from "./chain.js";
import { headPathOf, readHeadFile, writeHeadFile } from "./head-file.js";

/** How much of a file's end is read to find its last line. */
const TAIL_BYTES = 256 * 1024;

export class FileOutput implements AuditOutput {
  private fh: FileHandle | undefined;
  private size = 0;
  /** Files rotated (tests, diagnostics). */
  rotations = 0;
  /** The first seq of the current file (index 0) and of each rotated one (index i: file.i). */
  private firstSeqs: (number | undefined)[] = [];
  /** The last byte written ends a line: rotation waits for it (a retried partial write finishes its line first). */
  private atLineStart = true;
  private headWriting: Promise<void> | undefined;
  private headPending: ChainHead | undefined;
  private headFailed = false;

  constructor(
    readonly path: string,
    private readonly rotateBytes: number,
    private readonly keep: number,
    private readonly log: (level: "info" | "warn" | "error", msg: string) => void = () => {},
  ) {}

  async open(): Promise<ChainHead | undefined> {
    await mkdir(dirname(this.path), { recursive: true });
    const inFile = (await lastHead(this.path)) ?? (await lastHead(`${this.path}.1`));
    let saved;
    try {
      saved = await readHeadFile(headPathOf(this.path));
    } catch (e) {
      this.log("error", `audit: ${(e as Error).message}; it is written anew after the next batch`);
    }
    const name = (i: number) => (i === 0 ? this.path : `${this.path}.${i}`);
    const base = name(0).slice(dirname(this.path).length + 1);
    for (let i = 0; i <= this.keep; i++) {
      const entry = saved?.files.find((f) => f.file === (i === 0 ? base : `${base}.${i}`));
      this.firstSeqs[i] = entry?.first_seq ?? (await firstSeqOf(name(i)));
    }
    this.fh = await open(this.path, "a+");
    this.size = (await this.fh.stat()).size;
    // A torn last line (a crash mid-write) stays visible to `prism audit verify`; new records start on a line of their own.
    if (this.size > 0 && !(await endsWithNewline(this.fh, this.size))) await this.append(Buffer.from("\n"));
    if (saved !== undefined && saved.seq > (inFile?.seq ?? 0)) {
      // Records the head saw written are gone: continue from the head, so the gap stays in the chain for verify to report.
      this.log("error", `audit: ${this.path} ends at seq ${inFile?.seq ?? 0} but its head file recorded seq ${saved.seq} written: records ${(inFile?.seq ?? 0) + 1}..${saved.seq} were removed while Prism was stopped; the chain continues from seq ${saved.seq}`);
      return { seq: saved.seq, hash: saved.hash };
    }
    return inFile;
  }

  async append(data: Buffer): Promise<void> {
    if (this.size >= this.rotateBytes && this.atLineStart) await this.rotate();
    const fh = this.fh;
    if (fh === undefined) throw Object.assign(new Error(`audit file ${this.path} is not open`), { written: 0 });
    if (this.size === 0 && this.firstSeqs[0] === undefined) this.firstSeqs[0] = seqOfLine(data.subarray(0, data.indexOf(0x0a)).toString("utf8"));
    let off = 0;
    try {
      while (off < data.length) {
        const { bytesWritten } = await fh.write(data, off, data.length - off);
        off += bytesWritten;
        this.size += bytesWritten;
      }
    } catch (e) {
      if (off > 0) this.atLineStart = data[off - 1] === 0x0a;
      throw Object.assign(e as Error, { written: off });
    }
    if (data.length > 0) this.atLineStart = data[data.length - 1] === 0x0a;
  }

  /** After a batch landed: rewrites the head file (one write at a time; the latest head wins). */
  mark(head: ChainHead): void {
    this.headPending = { seq: head.seq, hash: head.hash };
    if (this.headWriting === undefined) this.headWriting = this.writeHead();
  }

  /** Resolves once the head file holds the last head marked. */
  async headWritten(): Promise<void> {
    await this.headWriting;
  }

  private async writeHead(): Promise<void> {
    while (this.headPending !== undefined) {
      const head = this.headPending;
      this.headPending = undefined;
      try {
        await writeHeadFile(this.path, head, this.firstSeqs, Date.now());
        if (this.headFailed) this.log("info", "audit: writing the head file again");
        this.headFailed = false;
      } catch (e) {
        if (!this.headFailed) this.log("warn", `audit: cannot write ${headPathOf(this.path)} (${(e as Error).message}); verify cannot check the ends of the file until it can`);
        this.headFailed = true;
      }
    }
    this.headWriting = undefined;
  }

  private async rotate(): Promise<void> {
    await this.fh?.close();
    this.fh = undefined;
    for (let i = this.keep - 1; i >= 1; i--) await rename(`${this.path}.${i}`, `${this.path}.${i + 1}`).catch(ignoreMissing);
    await rename(this.path, `${this.path}.1`).catch(ignoreMissing);
    this.firstSeqs = [undefined, ...this.firstSeqs].slice(0, this.keep + 1);
    this.fh = await open(this.path, "a");
    this.size = 0;
    this.rotations++;
  }

  async close(): Promise<void> {
    await this.headWriting;
    await this.fh?.close();
    this.fh = undefined;
  }
}

function ignoreMissing(e: NodeJS.ErrnoException): void {
  if (e.code !== "ENOENT") throw e;
}

async function endsWithNewline(fh: FileHandle, size: number): Promise<boolean> {
  const b = Buffer.alloc(1);
  await fh.read(b, 0, 1, size - 1);
  return b[0] === 0x0a;
}

/** The seq a record line carries (sealed or plain); undefined for anything else. */
function seqOfLine(l: string): number | undefined {
  const sealed = parseSealed(l);
  if (sealed) return sealed.seq;
  const m = /"seq":(\d+)\}$/.exec(l);
  return m ? Number(m[1]) : undefined;
}

/** The seq of a file's first record; undefined: no file or no record in its first 256 KiB. */
async function firstSeqOf(path: string): Promise<number | undefined> {
  let fh;
  try {
    fh = await open(path, "r");
  } catch {
    return undefined;
  }
  try {
    const b = Buffer.alloc(TAIL_BYTES);
    const { bytesRead } = await fh.read(b, 0, TAIL_BYTES, 0);
    const text = b.subarray(0, bytesRead).toString("utf8");
    const end = text.indexOf("\n");
    return seqOfLine(end < 0 ? text : text.slice(0, end));
  } finally {
    await fh.close();
  }
}

/** seq and hash of a file's last record (plain records: seq only, hash ""); undefined: no file or no record. */
async function lastHead(path: string): Promise<ChainHead | undefined> {
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch {
    return undefined;
  }
  if (size === 0) return undefined;
  const fh = await open(path, "r");
  try {
    const n = Math.min(size, TAIL_BYTES);
    const b = Buffer.alloc(n);
    await fh.read(b, 0, n, size - n);
    const lines = b.toString("utf8").split("\n").filter((l) => l.length > 0);
    for (let i = lines.length - 1; i >= 0; i--) {
      const l = lines[i]!;
      const sealed = parseSealed(l);
      if (sealed) return { seq: sealed.seq, hash: sealed.hash };
      const m = /"seq":(\d+)\}$/.exec(l);
      if (m) return { seq: Number(m[1]), hash: "0".repeat(64) };
    }
    return undefined;
  } finally {
    await fh.close();
  }
}
