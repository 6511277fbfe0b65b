/**
 * The audit file: appended with one write per batch, rotated by size
 * (file → file.1 → … → file.<keep>; the oldest is overwritten), reopened on
 * the next start where the chain left off (the last line of the file, or of
 * file.1 right after a rotation). Writes are not fsynced: a crash of the
 * machine can lose the last batch, a crash of Prism loses nothing written.
 */
import { mkdir, open, rename, stat, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import type { AuditOutput } from "./sink.js";
import { parseSealed, type ChainHead } from "./chain.js";

/** How much of a file's end is read to find its last line. */
const TAIL_BYTES = 256 * 1024;

export class FileOutput implements AuditOutput {
  private fh: FileHandle | undefined;
  private size = 0;
  /** Files rotated (tests, diagnostics). */
  rotations = 0;

  constructor(
    readonly path: string,
    private readonly rotateBytes: number,
    private readonly keep: number,
  ) {}

  async open(): Promise<ChainHead | undefined> {
    await mkdir(dirname(this.path), { recursive: true });
    const head = (await lastHead(this.path)) ?? (await lastHead(`${this.path}.1`));
    this.fh = await open(this.path, "a+");
    this.size = (await this.fh.stat()).size;
    // A torn last line (a crash mid-write) stays visible to `prism audit verify`; new records start on a line of their own.
    if (this.size > 0 && !(await endsWithNewline(this.fh, this.size))) await this.append(Buffer.from("\n"));
    return head;
  }

  async append(data: Buffer): Promise<void> {
    if (this.size >= this.rotateBytes) await this.rotate();
    const fh = this.fh;
    if (fh === undefined) throw Object.assign(new Error(`audit file ${this.path} is not open`), { written: 0 });
    let off = 0;
    try {
      while (off < data.length) {
        const { bytesWritten } = await fh.write(data, off, data.length - off);
        off += bytesWritten;
        this.size += bytesWritten;
      }
    } catch (e) {
      throw Object.assign(e as Error, { written: off });
    }
  }

  private async rotate(): Promise<void> {
    await this.fh?.close();
    this.fh = undefined;
    for (let i = this.keep - 1; i >= 1; i--) await rename(`${this.path}.${i}`, `${this.path}.${i + 1}`).catch(ignoreMissing);
    await rename(this.path, `${this.path}.1`).catch(ignoreMissing);
    this.fh = await open(this.path, "a");
    this.size = 0;
    this.rotations++;
  }

  async close(): Promise<void> {
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
