/**
 * Byte-stream calls (ClaimCheck.Put / Get: MethodDef.transfer) on the
 * ingresses that carry streams: the node:http2 gRPC server, grpc-js, and HTTP
 * (PUT / GET /v1/ns/{namespace}/payloads). The WebSocket transport refuses
 * them (UNIMPLEMENTED, PRISM_ERR_STREAMING_ONLY).
 *
 * Memory stays bounded end to end: an upload's chunks wait in a ChunkQueue of
 * at most HIGH_WATER bytes, past which the ingress stops reading (HTTP/2 and
 * TCP flow control then hold the client); a download writes the next chunk
 * only once the transport took the previous ones (drain).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { ServerHttp2Stream } from "node:http2";
import type { RequestContext } from "../core/context.js";
import { Code, codeName, errors, PrismError, toPrismError } from "../core/errors.js";
import type { Gateway } from "../core/gateway.js";
import { METHOD_BY_ID, type MethodDef } from "../core/methods.js";
import { decodeStrict } from "../core/decode.js";
import { prism } from "../gen/prism.js";
import { DOWNLOAD_BODY, UPLOAD_BODY, type DownloadResponse, type UploadRequest } from "../primitives/claim-check.js";
import { compressedRefusal, Deframer, encodeFramed, RESPONSE_HEADERS, statusTrailers, TRAILERS, TRAILERS_ONLY, WITH_TRAILERS, type TrailerStream } from "./grpc-h2-wire.js";

/** Upload bytes queued between the transport and the payload store before the transport stops reading. */
export const HIGH_WATER = 4 * 1024 * 1024;
/** Download chunk size in gRPC messages (the payload store's reads are re-cut to this). */
export const DOWNLOAD_CHUNK = 256 * 1024;

export type Log = (level: "info" | "warn" | "error", msg: string) => void;

/**
 * Chunks pushed by a transport, read once as an async iterable. `pause` is
 * called when HIGH_WATER bytes wait, `resume` once they are taken.
 */
export class ChunkQueue implements AsyncIterable<Uint8Array> {
  private readonly chunks: Uint8Array[] = [];
  private head = 0;
  queued = 0;
  private ended = false;
  private error: Error | undefined;
  private wake: (() => void) | undefined;
  /** The transport was told to stop reading. */
  paused = false;

  constructor(
    private readonly pause: () => void,
    private readonly resume: () => void,
  ) {}

  push(chunk: Uint8Array): void {
    if (this.ended || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.queued += chunk.length;
    if (this.queued >= HIGH_WATER && !this.paused) {
      this.paused = true;
      this.pause();
    }
    this.wake?.();
  }

  end(): void {
    this.ended = true;
    this.wake?.();
  }

  fail(e: Error): void {
    if (this.ended && this.error === undefined && this.head >= this.chunks.length) return;
    this.error ??= e;
    this.ended = true;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    for (;;) {
      if (this.error) throw this.error;
      if (this.head < this.chunks.length) {
        const c = this.chunks[this.head]!;
        this.chunks[this.head++] = undefined as unknown as Uint8Array;
        if (this.head > 1024) {
          this.chunks.splice(0, this.head);
          this.head = 0;
        }
        this.queued -= c.length;
        if (this.paused && this.queued < HIGH_WATER / 2) {
          this.paused = false;
          this.resume();
        }
        yield c;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((r) => (this.wake = r));
      this.wake = undefined;
    }
  }
}

/** Re-cuts a body into chunks of at most `size` bytes (gRPC messages of a bounded size). */
export async function* recut(body: AsyncIterable<Uint8Array>, size: number): AsyncGenerator<Uint8Array> {
  for await (const c of body) {
    for (let off = 0; off < c.length; off += size) yield off === 0 && c.length <= size ? c : c.subarray(off, Math.min(c.length, off + size));
  }
}

// ------------------------------------------------------------ node:http2 gRPC

/** The H2Call shape grpc-h2.ts drives (push / clientEnd / closed / held / fail). */
export interface TransferH2Call {
  push(chunk: Buffer): void;
  clientEnd(): void;
  closed(): void;
  readonly held: number;
  readonly messages?: number;
  fail(e: PrismError): void;
}

abstract class H2Transfer extends Deframer implements TransferH2Call {
  protected done = false;
  constructor(
    protected readonly stream: TrailerStream,
    protected readonly m: MethodDef,
    protected readonly ctx: RequestContext,
    protected readonly gw: Gateway,
    protected readonly log: Log,
    maxMessageBytes: number,
    protected readonly encoding: string | undefined,
  ) {
    super(maxMessageBytes);
  }

  protected framingFailed(e: PrismError): void {
    this.fail(e);
  }

  abstract clientEnd(): void;

  protected decode(compressed: number, body: Buffer): object | undefined {
    if (compressed !== 0) {
      this.stopped = true;
      this.fail(compressedRefusal(this.encoding));
      return undefined;
    }
    try {
      return decodeStrict(this.m.requestType, body);
    } catch (e) {
      this.stopped = true;
      this.fail(errors.malformed(`malformed prism.v1.${this.m.requestTypeName}: ${(e as Error).message}`));
      return undefined;
    }
  }

  fail(e: PrismError): void {
    if (this.done) return;
    this.done = true;
    if (e.code === Code.INTERNAL) this.log("error", `grpc ${this.m.path}: ${e.message}`);
    const s = this.stream;
    if (s.destroyed || s.closed) return;
    if (!s.headersSent) {
      s.respond(statusTrailers(e, true), TRAILERS_ONLY);
      s.resume();
      return;
    }
    s[TRAILERS] = statusTrailers(e, false);
    s.end();
  }

  closed(): void {
    this.stopped = true;
    if (!this.done) this.ctx.cancel(errors.cancelled("call"));
    this.done = true;
  }
}

/** ClaimCheck.Put over HTTP/2: every request message's chunk into the queue; the response once the handler settles. */
class H2Upload extends H2Transfer {
  private queue: ChunkQueue | undefined;
  private first = true;
  messages = 0;

  protected frameReceived(compressed: number, body: Buffer): void {
    this.messages++;
    const req = this.decode(compressed, body) as UploadRequest | undefined;
    if (!req) return;
    if (this.first) {
      this.first = false;
      this.queue = new ChunkQueue(
        () => this.stream.pause(),
        () => this.stream.resume(),
      );
      if (req.chunk && req.chunk.length) this.queue.push(req.chunk);
      const header: UploadRequest = { ...req, chunk: undefined, [UPLOAD_BODY]: this.queue };
      void this.run(header);
      return;
    }
    if (req.chunk && req.chunk.length) this.queue!.push(req.chunk);
  }

  override get held(): number {
    return this.partial + (this.queue?.queued ?? 0);
  }

  private async run(req: UploadRequest): Promise<void> {
    let res: object;
    try {
      res = await this.gw.unary(this.ctx, req);
    } catch (e) {
      this.queue?.fail(toPrismError(e));
      this.fail(toPrismError(e));
      return;
    }
    if (this.done) return;
    this.done = true;
    const s = this.stream;
    if (s.destroyed || s.closed) return;
    const buf = encodeFramed(this.m.responseType, res);
    this.ctx.bytesOut = buf.length;
    s.respond(RESPONSE_HEADERS, WITH_TRAILERS);
    s.end(buf);
  }

  clientEnd(): void {
    if (this.stopped || this.done) return;
    this.stopped = true;
    if (this.partial !== 0) {
      const e = errors.malformed(`malformed prism.v1.${this.m.requestTypeName}: the stream ended inside a gRPC message`);
      this.queue?.fail(e);
      return this.fail(e);
    }
    if (this.first) return this.fail(new PrismError(Code.UNIMPLEMENTED, "PRISM_ERR_MALFORMED", `received no request message for method ${this.m.path}`));
    this.queue!.end();
  }

  override closed(): void {
    this.queue?.fail(errors.cancelled("upload: the client went away"));
    super.closed();
  }

  override fail(e: PrismError): void {
    this.queue?.fail(e);
    super.fail(e);
  }
}

/** ClaimCheck.Get over HTTP/2: one request, then the claim and the bytes as PayloadChunk messages, written as flow control allows. */
class H2Download extends H2Transfer {
  private req: object | undefined;

  protected frameReceived(compressed: number, body: Buffer): void {
    if (this.req !== undefined) {
      this.stopped = true;
      return this.fail(new PrismError(Code.UNIMPLEMENTED, "PRISM_ERR_MALFORMED", `received a second request message for server-streaming method ${this.m.path}`));
    }
    this.req = this.decode(compressed, body);
  }

  clientEnd(): void {
    if (this.stopped || this.done) return;
    this.stopped = true;
    if (this.req === undefined) return this.fail(new PrismError(Code.UNIMPLEMENTED, "PRISM_ERR_MALFORMED", `received no request message for method ${this.m.path}`));
    void this.run(this.req);
  }

  private async run(req: object): Promise<void> {
    try {
      const res = (await this.gw.unary(this.ctx, req)) as unknown as DownloadResponse;
      const s = this.stream;
      if (this.done || s.destroyed || s.closed) return;
      s.respond(RESPONSE_HEADERS, WITH_TRAILERS);
      await writeAll(s, encodeFramed(this.m.responseType, { claim: res.claim }));
      for await (const chunk of recut(res[DOWNLOAD_BODY], DOWNLOAD_CHUNK)) {
        if (this.done || s.destroyed || s.closed) return;
        this.ctx.bytesOut += chunk.length;
        await writeAll(s, encodeFramed(this.m.responseType, { data: chunk }));
      }
      if (this.done) return;
      this.done = true;
      if (!s.destroyed && !s.closed) s.end();
    } catch (e) {
      this.fail(toPrismError(e));
    }
  }
}

/** Writes, then waits for 'drain' when the stream's buffer is full (or it closed). */
function writeAll(s: ServerHttp2Stream | ServerResponse, buf: Uint8Array): Promise<void> {
  if (s.write(buf)) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      s.off("drain", done);
      s.off("close", done);
      resolve();
    };
    s.on("drain", done);
    s.on("close", done);
  });
}

export function transferH2Call(m: MethodDef, stream: TrailerStream, ctx: RequestContext, gw: Gateway, log: Log, maxMessageBytes: number, encoding: string | undefined): TransferH2Call {
  return m.transfer === "upload" ? new H2Upload(stream, m, ctx, gw, log, maxMessageBytes, encoding) : new H2Download(stream, m, ctx, gw, log, maxMessageBytes, encoding);
}

// ------------------------------------------------------------ HTTP

const M = prism.v1.Method;
const PUT = METHOD_BY_ID[M.CLAIM_PUT]!;
const GET = METHOD_BY_ID[M.CLAIM_GET]!;
const HEAD = METHOD_BY_ID[M.CLAIM_HEAD]!;
const DELETE = METHOD_BY_ID[M.CLAIM_DELETE]!;
const UINT = /^[0-9]+$/;

/** What the HTTP routes give a payload route: the raw node:http request and response. */
export interface RawExchange {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  context(m: MethodDef): RequestContext;
  /** server.request_timeout_ms: here the longest an upload may go without sending a byte (0: no limit). */
  readonly stallTimeoutMs: number;
}

/**
 * node:http ends a request whose whole body has not arrived within its
 * requestTimeout (server.request_timeout_ms): right for every other route, not
 * for a 5 GB upload. This request leaves node's timeout list (the parser's
 * remove()); instead it is cut when no byte arrives for stallTimeoutMs while
 * Prism is reading, and its connection closes after the response, so no later
 * request on it goes unwatched.
 */
function exemptFromRequestTimeout(req: IncomingMessage, res: ServerResponse, queue: ChunkQueue, stallMs: number): void {
  const parser = (req.socket as unknown as { parser?: { remove?: () => void } }).parser;
  if (typeof parser?.remove !== "function") return; // not node's parser: its timeout stays
  parser.remove();
  res.shouldKeepAlive = false;
  if (stallMs <= 0) return;
  let last = Date.now();
  req.on("data", () => (last = Date.now()));
  const t = setInterval(() => {
    if (req.complete || req.destroyed) return clearInterval(t);
    if (queue.paused) last = Date.now(); // Prism is not reading: the client is not the one stalling
    else if (Date.now() - last > stallMs) {
      clearInterval(t);
      queue.fail(errors.exhausted(`upload: no bytes for ${stallMs} ms (server.request_timeout_ms)`));
      req.socket.destroy();
    }
  }, Math.min(1000, Math.max(100, stallMs / 4)));
  t.unref();
  req.once("close", () => clearInterval(t));
}

function claimHeaders(c: prism.v1.IClaim): Record<string, string> {
  return {
    "x-prism-claim-id": c.id ?? "",
    "x-prism-sha256": c.sha256 ?? "",
    "x-prism-size": String(c.size ?? 0),
    ...(c.expiresAtMs ? { "x-prism-expires-at-ms": String(c.expiresAtMs) } : {}),
  };
}

function uintParam(q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name);
  if (v === null) return undefined;
  if (!UINT.test(v) || !Number.isSafeInteger(Number(v))) throw errors.invalidArgument(name, `must be a whole number, got ${JSON.stringify(v.slice(0, 40))}`);
  return Number(v);
}

/** `Range: bytes=a-b` / `bytes=a-` → offset and length (one range only). */
function rangeOf(h: string | undefined): { offset: number; length: number } | undefined {
  if (h === undefined) return undefined;
  const m = /^bytes=(\d+)-(\d*)$/.exec(h.trim());
  if (!m) throw new PrismError(Code.INVALID_ARGUMENT, "PRISM_ERR_BAD_RANGE", `Range ${JSON.stringify(h.slice(0, 60))}: one range "bytes=FIRST-[LAST]" is supported`);
  const first = Number(m[1]);
  const last = m[2] === "" ? undefined : Number(m[2]);
  if (last !== undefined && last < first) throw new PrismError(Code.INVALID_ARGUMENT, "PRISM_ERR_BAD_RANGE", `Range ${h}: last byte before first`);
  return { offset: first, length: last === undefined ? 0 : last - first + 1 };
}

/**
 * PUT /v1/ns/{ns}/payloads[?key=K|queue=Q|topic=T|stream=S&ttl=N&if_absent=1]   (body: the payload, streamed)
 * GET|HEAD /v1/ns/{ns}/payloads/{claim_id} (or /payloads?key=K), Range supported
 * DELETE /v1/ns/{ns}/payloads/{claim_id}
 */
export async function payloadRoute(gw: Gateway, ex: RawExchange, method: string, namespace: string, rest: string, query: string): Promise<void> {
  const q = new URLSearchParams(query);
  let claimId = "";
  if (rest.startsWith("/")) {
    try {
      claimId = decodeURIComponent(rest.slice(1));
    } catch {
      throw errors.invalidArgument("claim_id", "invalid percent-encoding");
    }
  }
  const { req, res } = ex;
  if (method === "PUT" || method === "POST") {
    if (claimId) throw new PrismError(Code.INVALID_ARGUMENT, "PRISM_ERR_BAD_ROUTE", `PUT /v1/ns/${namespace}/payloads takes no claim id: Prism names the payload (the response holds its claim)`);
    const ctx = ex.context(PUT);
    const queue = new ChunkQueue(
      () => req.pause(),
      () => req.resume(),
    );
    exemptFromRequestTimeout(req, res, queue, ex.stallTimeoutMs);
    req.on("data", (c: Buffer) => queue.push(c));
    req.once("end", () => queue.end());
    req.once("error", (e) => queue.fail(errors.cancelled(`upload: ${e.message}`)));
    req.once("close", () => {
      if (!req.complete) queue.fail(errors.cancelled("upload: connection closed"));
    });
    const ifAbsent = q.get("if_absent");
    const body: UploadRequest = {
      namespace,
      key: q.get("key") ?? "",
      queue: q.get("queue") ?? "",
      topic: q.get("topic") ?? "",
      stream: q.get("stream") ?? "",
      ttlSeconds: uintParam(q, "ttl") ?? 0,
      contentType: req.headers["content-type"] ?? "",
      sha256: q.get("sha256") ?? String(req.headers["x-prism-sha256"] ?? ""),
      ifAbsent: ifAbsent === "1" || ifAbsent === "true" || req.headers["if-none-match"] === "*",
      attributes: {},
      [UPLOAD_BODY]: queue,
    };
    let out: prism.v1.IPutPayloadResponse;
    try {
      out = (await gw.unary(ctx, body)) as prism.v1.IPutPayloadResponse;
    } catch (e) {
      queue.fail(toPrismError(e));
      // The client may still be sending: answer, then drop the connection rather than read the rest.
      res.once("finish", () => req.socket.destroy());
      throw e;
    }
    const json = JSON.stringify({
      claim: { id: out.claim?.id, size: Number(out.claim?.size ?? 0), sha256: out.claim?.sha256, content_type: out.claim?.contentType, created_at_ms: Number(out.claim?.createdAtMs ?? 0), expires_at_ms: Number(out.claim?.expiresAtMs ?? 0) },
      ...(out.version ? { version: Number(out.version) } : {}),
      ...(out.messageId ? { message_id: out.messageId } : {}),
      ...(out.offset ? { offset: Number(out.offset) } : {}),
    });
    res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(json) });
    res.end(json);
    return;
  }
  const key = q.get("key") ?? "";
  if (method === "GET" || method === "HEAD") {
    if (method === "HEAD") {
      const claim = (await gw.unary(ex.context(HEAD), { namespace, claimId, key })) as prism.v1.IClaim;
      res.writeHead(200, { "content-length": String(claim.size ?? 0), "accept-ranges": "bytes", "content-type": claim.contentType || "application/octet-stream", ...claimHeaders(claim) });
      res.end();
      return;
    }
    const range = rangeOf(req.headers.range);
    const ctx = ex.context(GET);
    const out = (await gw.unary(ctx, { namespace, claimId, key, offset: range?.offset ?? 0, length: range?.length ?? 0 })) as unknown as DownloadResponse;
    const c = out.claim;
    const headers: Record<string, string> = { "content-type": c.contentType || "application/octet-stream", "content-length": String(out.count), "accept-ranges": "bytes", ...claimHeaders(c) };
    if (range) headers["content-range"] = `bytes ${out.start}-${out.start + out.count - 1}/${c.size}`;
    res.writeHead(range ? 206 : 200, headers);
    try {
      for await (const chunk of out[DOWNLOAD_BODY]) {
        if (res.destroyed) return;
        ctx.bytesOut += chunk.length;
        await writeAll(res, chunk);
      }
      res.end();
    } catch (e) {
      // Headers are out: a broken (or digest-failing) body can only be cut off, so the client sees a short read.
      const pe = toPrismError(e);
      res.destroy(new Error(`${codeName[pe.code]}: ${pe.message}`));
    }
    return;
  }
  if (method === "DELETE") {
    const out = (await gw.unary(ex.context(DELETE), { namespace, claimId, key })) as prism.v1.IDeletePayloadResponse;
    const json = out.deleted ? '{"deleted":true}' : '{"deleted":false}';
    res.writeHead(200, { "content-type": "application/json", "content-length": json.length });
    res.end(json);
    return;
  }
  throw new PrismError(Code.UNIMPLEMENTED, "PRISM_ERR_METHOD_NOT_ALLOWED", `${method} is not allowed on /v1/ns/${namespace}/payloads (allowed: PUT, GET, HEAD, DELETE)`);
}
