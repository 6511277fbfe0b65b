/**
 * s3: a payload (object) store in an S3 bucket (@aws-sdk/client-s3, multipart
 * uploads through @aws-sdk/lib-storage), for the claim-check pattern.
 *
 *   backend: { type: s3, bucket: prism-payloads, region: eu-west-1 }
 *   backend: { type: s3, bucket: b, endpoint: "http://127.0.0.1:9000", access_key_id: ..., secret_access_key: ... }
 *
 * Per payload two objects under `<prefix><namespace>/`: `<id>.bin` (the
 * bytes, uploaded in parts as they arrive: at most 2 parts are in memory) and
 * `<id>.json` (size, SHA-256, expiry), written last as the commit point. A
 * failed upload aborts its multipart upload; a `.bin` without its `.json` is
 * listed as incomplete so the sweeper removes it.
 */
import { Readable } from "node:stream";
import type { BackendDriver, BackendHealth, BackendInstance, NamespaceStores, PayloadListing, PayloadMeta, PayloadStore } from "../driver.js";
import type { Clock } from "../../core/clock.js";
import { Code, errors, PrismError } from "../../core/errors.js";
import type { S3Options } from "./options.js";
import { requireCjs } from "../../core/require-cjs.js";

type S3Sdk = typeof import("@aws-sdk/client-s3");
type StorageSdk = typeof import("@aws-sdk/lib-storage");

const ID = /^[A-Za-z0-9_-]{1,128}$/;

function checkId(id: string): void {
  if (!ID.test(id)) throw errors.invalidArgument("claim_id", "must be 1-128 of A-Z a-z 0-9 _ -");
}

function status(e: unknown): number | undefined {
  return (e as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

function isMissing(e: unknown): boolean {
  const name = (e as Error)?.name;
  return name === "NoSuchKey" || name === "NotFound" || status(e) === 404;
}

function unavailable(what: string, e: unknown): PrismError {
  if (e instanceof PrismError) return e;
  return errors.unavailable(`s3 ${what}: ${(e as Error)?.message ?? String(e)}`);
}

class S3PayloadStore implements PayloadStore {
  constructor(
    private readonly inst: S3Instance,
    private readonly prefix: string,
  ) {}

  private key(id: string, ext: "bin" | "json"): string {
    return `${this.prefix}${id}.${ext}`;
  }

  async put(id: string, body: AsyncIterable<Uint8Array>, meta: () => PayloadMeta, signal?: AbortSignal): Promise<void> {
    checkId(id);
    const { s3, sdk, storage } = await this.inst.client();
    // The body's own failure (too large, digest, client gone) is what the caller gets, not the abort that follows it.
    let bodyError: unknown;
    async function* watched(): AsyncGenerator<Uint8Array> {
      try {
        yield* body;
      } catch (e) {
        bodyError = e;
        throw e;
      }
    }
    const upload = new storage.Upload({
      client: s3,
      params: { Bucket: this.inst.bucket, Key: this.key(id, "bin"), Body: Readable.from(watched(), { objectMode: false }) },
      partSize: this.inst.partSize,
      queueSize: 1,
      leavePartsOnError: false,
    });
    const onAbort = () => void upload.abort().catch(() => {});
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await upload.done();
      await s3.send(new sdk.PutObjectCommand({ Bucket: this.inst.bucket, Key: this.key(id, "json"), Body: JSON.stringify(meta()), ContentType: "application/json" }));
    } catch (e) {
      await this.delete(id).catch(() => {});
      // lib-storage wraps a body error; the PrismError (too large, digest, client gone) is the cause.
      const cause = bodyError instanceof PrismError ? bodyError : findPrism(e);
      if (cause) throw cause;
      if (signal?.aborted) throw errors.cancelled("upload");
      throw unavailable("upload", e);
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  private async readMeta(id: string): Promise<PayloadMeta | null> {
    const { s3, sdk } = await this.inst.client();
    let text: string;
    try {
      const r = await s3.send(new sdk.GetObjectCommand({ Bucket: this.inst.bucket, Key: this.key(id, "json") }));
      text = await r.Body!.transformToString("utf8");
    } catch (e) {
      if (isMissing(e)) return null;
      throw unavailable("get", e);
    }
    const m = JSON.parse(text) as PayloadMeta;
    if (m.expiresAtMs !== 0 && m.expiresAtMs <= this.inst.clock.now()) return null;
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
    const { s3, sdk } = await this.inst.client();
    try {
      const r = await s3.send(new sdk.GetObjectCommand({ Bucket: this.inst.bucket, Key: this.key(id, "bin"), Range: `bytes=${offset}-${end}` }), { abortSignal: signal });
      return { meta, body: r.Body as unknown as Readable };
    } catch (e) {
      if (isMissing(e)) throw new PrismError(Code.NOT_FOUND, "PRISM_ERR_PAYLOAD_NOT_FOUND", `payload "${id}" not found`);
      throw unavailable("get", e);
    }
  }

  async delete(id: string): Promise<boolean> {
    checkId(id);
    const { s3, sdk } = await this.inst.client();
    let found = false;
    for (const ext of ["json", "bin"] as const) {
      try {
        await s3.send(new sdk.HeadObjectCommand({ Bucket: this.inst.bucket, Key: this.key(id, ext) }));
        found = true;
        await s3.send(new sdk.DeleteObjectCommand({ Bucket: this.inst.bucket, Key: this.key(id, ext) }));
      } catch (e) {
        if (!isMissing(e)) throw unavailable("delete", e);
      }
    }
    return found;
  }

  async list(cursor: string, limit: number): Promise<{ items: PayloadListing[]; nextCursor: string }> {
    const { s3, sdk } = await this.inst.client();
    // Two objects per payload: list twice the page (plus one, to see the next id), grouped by id.
    const seen = new Map<string, { exts: Set<string>; at: number }>();
    let token: string | undefined;
    let more = true;
    const startAfter = cursor ? `${this.prefix}${cursor}.~` : undefined;
    while (more && seen.size <= limit) {
      let r;
      try {
        r = await s3.send(new sdk.ListObjectsV2Command({ Bucket: this.inst.bucket, Prefix: this.prefix, StartAfter: token ? undefined : startAfter, ContinuationToken: token, MaxKeys: Math.min(1000, limit * 2 + 2) }));
      } catch (e) {
        throw unavailable("list", e);
      }
      for (const o of r.Contents ?? []) {
        const name = o.Key!.slice(this.prefix.length);
        const dot = name.indexOf(".");
        if (dot <= 0) continue;
        const id = name.slice(0, dot);
        let s = seen.get(id);
        if (!s) seen.set(id, (s = { exts: new Set(), at: o.LastModified?.getTime() ?? 0 }));
        s.exts.add(name.slice(dot + 1));
      }
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
      more = token !== undefined;
    }
    const ids = [...seen.keys()].sort();
    const page = ids.slice(0, limit);
    const items: PayloadListing[] = [];
    for (const id of page) {
      const s = seen.get(id)!;
      if (s.exts.has("json")) {
        let text: string | undefined;
        try {
          const r = await s3.send(new sdk.GetObjectCommand({ Bucket: this.inst.bucket, Key: this.key(id, "json") }));
          text = await r.Body!.transformToString("utf8");
        } catch (e) {
          // Gone since the listing: deleted meanwhile. Any other failure is the backend's, not a broken payload to delete.
          if (isMissing(e)) continue;
          throw unavailable("list", e);
        }
        try {
          items.push({ complete: true, id, ...(JSON.parse(text) as PayloadMeta) });
          continue;
        } catch {
          // a meta that does not parse: incomplete
        }
      }
      items.push({ complete: false, id, createdAtMs: s.at });
    }
    return { items, nextCursor: ids.length > limit || more ? page[page.length - 1]! : "" };
  }
}

function findPrism(e: unknown): PrismError | undefined {
  for (let c: unknown = e, i = 0; c && i < 5; c = (c as { cause?: unknown }).cause, i++) if (c instanceof PrismError) return c;
  return undefined;
}

class S3Instance implements BackendInstance {
  private sdk: Promise<{ s3: InstanceType<S3Sdk["S3Client"]>; sdk: S3Sdk; storage: StorageSdk }> | undefined;
  readonly bucket: string;
  readonly partSize: number;

  constructor(
    private readonly options: S3Options,
    readonly clock: Clock,
  ) {
    this.bucket = options.bucket;
    this.partSize = (options.part_size_mb ?? 8) * 1024 * 1024;
  }

  client(): Promise<{ s3: InstanceType<S3Sdk["S3Client"]>; sdk: S3Sdk; storage: StorageSdk }> {
    return (this.sdk ??= (async () => {
      // Loaded on first use: the AWS SDK costs nothing until a namespace stores a payload.
      const sdk = requireCjs("@aws-sdk/client-s3") as S3Sdk;
      const storage = requireCjs("@aws-sdk/lib-storage") as StorageSdk;
      const o = this.options;
      const s3 = new sdk.S3Client({
        region: o.region ?? "us-east-1",
        endpoint: o.endpoint,
        forcePathStyle: o.force_path_style ?? o.endpoint !== undefined,
        credentials: o.access_key_id && o.secret_access_key ? { accessKeyId: o.access_key_id, secretAccessKey: o.secret_access_key } : undefined,
        // Checksums of every request and response body: S3-compatible servers do not all speak them.
        requestChecksumCalculation: "WHEN_REQUIRED",
        responseChecksumValidation: "WHEN_REQUIRED",
      });
      if (o.create_bucket) {
        try {
          await s3.send(new sdk.HeadBucketCommand({ Bucket: this.bucket }));
        } catch {
          await s3.send(new sdk.CreateBucketCommand({ Bucket: this.bucket })).catch(() => {});
        }
      }
      return { s3, sdk, storage };
    })().catch((e) => {
      this.sdk = undefined;
      throw unavailable("client", e);
    }));
  }

  namespace(name: string): NamespaceStores {
    return { payload: new S3PayloadStore(this, `${this.options.prefix ?? ""}${encodeURIComponent(name)}/`) };
  }

  async health(): Promise<BackendHealth> {
    const t = performance.now();
    try {
      const { s3, sdk } = await this.client();
      await s3.send(new sdk.HeadBucketCommand({ Bucket: this.bucket }));
      return { ok: true, latencyMs: performance.now() - t, message: "ok" };
    } catch (e) {
      return { ok: false, latencyMs: performance.now() - t, message: (e as Error).message };
    }
  }

  async close(): Promise<void> {
    const p = this.sdk;
    this.sdk = undefined;
    if (p) (await p.catch(() => undefined))?.s3.destroy();
  }
}

export const driver: BackendDriver<S3Options> = {
  type: "s3",
  description: "payload (object) store in an S3 bucket or S3-compatible server: multipart streamed uploads, ranged gets (claim-check payloads)",
  interfaces: ["payload_basic", "payload_ttl"],
  properties: {},
  create(options, ctx) {
    return new S3Instance(options, ctx.clock);
  },
};
