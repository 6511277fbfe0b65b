/**
 * filesystem: a payload (object) store in a local directory, the claim-check
 * pattern's local-first `payloads` backend.
 *
 *   backend: { type: filesystem, root: payloads }    # inside server.data_dir
 *
 * Per namespace a folder `<root>/<namespace>/` holds, per payload id:
 * `<id>.part` while it is being written, `<id>.bin` once the bytes are in
 * (fsynced), and `<id>.json` (the meta: size, SHA-256, expiry) written last,
 * through a rename, as the commit point. A payload without its `.json` is an
 * upload that never completed: absent for get/head, listed as incomplete so
 * the sweeper removes it. Bytes stream in and out (fs streams, backpressure);
 * nothing holds a whole payload.
 */
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, stat, writeFile, open } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { BackendDriver, BackendHealth, BackendInstance, NamespaceStores, PayloadListing, PayloadMeta, PayloadStore } from "../driver.js";
import type { Clock } from "../../core/clock.js";
import { Code, errors, PrismError } from "../../core/errors.js";
import type { FilesystemOptions } from "./options.js";

const ID = /^[A-Za-z0-9_-]{1,128}$/;
const READ_CHUNK = 256 * 1024;

function checkId(id: string): void {
  if (!ID.test(id)) throw errors.invalidArgument("claim_id", "must be 1-128 of A-Z a-z 0-9 _ -");
}

function isMissing(e: unknown): boolean {
  return (e as NodeJS.ErrnoException)?.code === "ENOENT";
}

/** Filesystem errors other than "absent" are the backend failing (disk full, permissions): UNAVAILABLE. */
function unavailable(what: string, e: unknown): Error {
  return errors.unavailable(`filesystem ${what}: ${(e as Error).message}`);
}

export class FsPayloadStore implements PayloadStore {
  private ready: Promise<void> | undefined;

  constructor(
    private readonly dir: string,
    private readonly fsync: boolean,
    private readonly clock: Clock,
  ) {}

  private ensureDir(): Promise<void> {
    return (this.ready ??= mkdir(this.dir, { recursive: true }).then(
      () => undefined,
      (e: unknown) => {
        this.ready = undefined;
        throw unavailable("mkdir", e);
      },
    ));
  }

  private path(id: string, ext: "part" | "bin" | "json"): string {
    return join(this.dir, `${id}.${ext}`);
  }

  async put(id: string, body: AsyncIterable<Uint8Array>, meta: () => PayloadMeta, signal?: AbortSignal): Promise<void> {
    checkId(id);
    await this.ensureDir();
    const part = this.path(id, "part");
    try {
      await pipeline(Readable.from(body, { objectMode: false, highWaterMark: READ_CHUNK }), createWriteStream(part, { flush: this.fsync }), { signal });
      await rename(part, this.path(id, "bin"));
      const tmp = join(this.dir, `${id}.json.tmp`);
      await writeFile(tmp, JSON.stringify(meta()), { flush: this.fsync });
      await rename(tmp, this.path(id, "json"));
      if (this.fsync) await syncDir(this.dir);
    } catch (e) {
      await this.delete(id).catch(() => {});
      if (e instanceof PrismError) throw e; // from the body (too large, digest mismatch, client gone)
      if ((e as Error)?.name === "AbortError") throw errors.cancelled("upload");
      throw unavailable("write", e);
    }
  }

  private async readMeta(id: string): Promise<PayloadMeta | null> {
    let text: string;
    try {
      text = await readFile(this.path(id, "json"), "utf8");
    } catch (e) {
      if (isMissing(e)) return null;
      throw unavailable("read", e);
    }
    const m = JSON.parse(text) as PayloadMeta;
    if (m.expiresAtMs !== 0 && m.expiresAtMs <= this.clock.now()) return null;
    return m;
  }

  async head(id: string): Promise<PayloadMeta | null> {
    checkId(id);
    return this.readMeta(id);
  }

  async get(id: string, offset: number, length: number, signal?: AbortSignal): Promise<{ meta: PayloadMeta; body: AsyncIterable<Uint8Array> } | null> {
    checkId(id);
    const meta = await this.readMeta(id);
    if (!meta) return null;
    if (offset >= meta.size) return { meta, body: Readable.from([]) };
    const end = length > 0 ? Math.min(meta.size, offset + length) - 1 : meta.size - 1;
    const body = createReadStream(this.path(id, "bin"), { start: offset, end, highWaterMark: READ_CHUNK, signal });
    // Opening fails asynchronously: wait for it, so that a missing file is an answer, not a broken stream.
    await new Promise<void>((resolve, reject) => {
      body.once("open", () => resolve());
      body.once("error", (e) => reject(isMissing(e) ? new PrismError(Code.NOT_FOUND, "PRISM_ERR_PAYLOAD_NOT_FOUND", `payload "${id}" not found`) : unavailable("read", e)));
    });
    return { meta, body };
  }

  async delete(id: string): Promise<boolean> {
    checkId(id);
    let found = false;
    for (const ext of ["json", "bin", "part"] as const) {
      try {
        await rm(this.path(id, ext));
        found = true;
      } catch (e) {
        if (!isMissing(e)) throw unavailable("delete", e);
      }
    }
    await rm(join(this.dir, `${id}.json.tmp`), { force: true }).catch(() => {});
    return found;
  }

  async list(cursor: string, limit: number): Promise<{ items: PayloadListing[]; nextCursor: string }> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (e) {
      if (isMissing(e)) return { items: [], nextCursor: "" };
      throw unavailable("list", e);
    }
    const byId = new Map<string, Set<string>>();
    for (const n of names) {
      const dot = n.indexOf(".");
      if (dot <= 0) continue;
      const id = n.slice(0, dot);
      if (id <= cursor) continue;
      let s = byId.get(id);
      if (!s) byId.set(id, (s = new Set()));
      s.add(n.slice(dot + 1));
    }
    const ids = [...byId.keys()].sort();
    const page = ids.slice(0, limit);
    const items: PayloadListing[] = [];
    for (const id of page) {
      const item = await this.listing(id);
      if (item) items.push(item);
    }
    return { items, nextCursor: ids.length > limit ? page[page.length - 1]! : "" };
  }

  /**
   * One payload as the sweeper sees it, from its files as they are now (not
   * as readdir saw them: an upload moves `.part` → `.bin` → `.json` meanwhile).
   * The meta first, then the leftovers in the order an upload creates them, so
   * a payload that completes while it is looked at is found complete or young,
   * never as an upload of unknown (zero) age. Null: it is gone (deleted since).
   * Failures other than "absent" are the backend's (UNAVAILABLE), never taken
   * for a broken payload to delete.
   */
  private async listing(id: string): Promise<PayloadListing | null> {
    try {
      const m = JSON.parse(await readFile(this.path(id, "json"), "utf8")) as PayloadMeta;
      return { complete: true, id, ...m };
    } catch (e) {
      if (e instanceof SyntaxError) {
        // A meta that does not parse (it is renamed into place whole, so this is damage): incomplete, aged by its file.
        const st = await this.statOf(`${id}.json`);
        return st === null ? null : { complete: false, id, createdAtMs: st };
      }
      if (!isMissing(e)) throw unavailable("list", e);
    }
    for (const ext of ["part", "bin", "json.tmp"]) {
      const st = await this.statOf(`${id}.${ext}`);
      if (st !== null) return { complete: false, id, createdAtMs: st };
    }
    return null; // none left: deleted meanwhile (an upload's `.bin` stays until its payload is deleted)
  }

  /** A file's mtime (ms); null when absent; other failures are the backend's. */
  private async statOf(name: string): Promise<number | null> {
    try {
      return (await stat(join(this.dir, name))).mtimeMs;
    } catch (e) {
      if (isMissing(e)) return null;
      throw unavailable("list", e);
    }
  }
}

async function syncDir(dir: string): Promise<void> {
  const h = await open(dir, "r");
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

class FsInstance implements BackendInstance {
  constructor(
    private readonly root: string,
    private readonly fsync: boolean,
    private readonly clock: Clock,
  ) {}

  namespace(name: string): NamespaceStores {
    // encodeURIComponent keeps every namespace name one safe folder name (they are A-Z a-z 0-9 _ . -).
    return { payload: new FsPayloadStore(join(this.root, encodeURIComponent(name)), this.fsync, this.clock) };
  }

  async health(): Promise<BackendHealth> {
    const t = performance.now();
    try {
      await mkdir(this.root, { recursive: true });
      await stat(this.root);
      return { ok: true, latencyMs: performance.now() - t, message: "ok" };
    } catch (e) {
      return { ok: false, latencyMs: performance.now() - t, message: (e as Error).message };
    }
  }

  async close(): Promise<void> {}
}

export const driver: BackendDriver<FilesystemOptions> = {
  type: "filesystem",
  description: "payload (object) store in a local directory: streamed puts and ranged gets, SHA-256 and expiry in a sidecar file (claim-check payloads)",
  interfaces: ["payload_basic", "payload_ttl"],
  properties: {},
  create(options, ctx) {
    return new FsInstance(options.root, options.fsync ?? true, ctx.clock);
  },
};
