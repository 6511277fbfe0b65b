/**
 * Claim Check payloads (namespaces with `pattern: claim-check`): putStream
 * uploads a payload of any size (up to the namespace's max_payload_bytes,
 * 5 GiB by default) as it is produced, getStream streams one back. Neither
 * holds a payload in memory: every chunk waits for the connection to take
 * the previous ones.
 *
 * Every transport carries them. Over `ws://` / `wss://` and `http://` /
 * `https://` addresses they use the HTTP payload routes (PUT / GET
 * /v1/ns/{ns}/payloads) on the same origin (the WebSocket server shares the
 * HTTP port; ws → http, wss → https); over `grpc://` / `grpcs://` / plain
 * `host:port` the ClaimCheck service (client-streaming Put,
 * server-streaming Get). Credentials (`token`, `apiKey`), the priority and
 * AbortSignal work the same on all of them, and every failure of Prism or of
 * the connection rejects with a {@link PrismError}. Node.js only.
 *
 * @example
 * const prism = await connect("ws://localhost:8981", { apiKey });
 * const cc = prism.claimCheck("uploads");                 // or claimCheck("ws://localhost:8981", "uploads", { apiKey })
 * const { claim } = await cc.putStream(fs.createReadStream("video.mp4"), { queue: "transcode" });
 * const { body } = await cc.getStream(claim.id);
 * await pipeline(body, fs.createWriteStream("copy.mp4"));
 */
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { createHash } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { prism as pb } from "./gen/prism.js";
import { Code, PrismError, cancelled, unavailable } from "./errors.js";
import { httpError } from "./http.js";
import { makeAuth } from "./auth.js";
import { PRIORITY_BYTE, PRIORITY_HEADER, type Auth, type Priority } from "./transport.js";

export interface Claim {
  id: string;
  size: number;
  /** Hex SHA-256 of the whole payload. */
  sha256: string;
  contentType: string;
  createdAtMs: number;
  /** 0: lives as long as the key holding the claim. */
  expiresAtMs: number;
}

/** Where the claim goes once the payload is stored (at most one of key, queue, topic, stream). */
export interface PutTarget {
  key?: string;
  queue?: string;
  topic?: string;
  stream?: string;
  /** The key's TTL, or the payload's life for messages (seconds). */
  ttl?: number;
  /** Expected hex SHA-256: the upload is refused (INVALID_ARGUMENT) when the bytes differ. */
  sha256?: string;
  /** key: write the claim only if the key is absent. */
  ifAbsent?: boolean;
  contentType?: string;
}

export interface PutResult {
  claim: Claim;
  version?: number;
  messageId?: string;
  offset?: number;
}

export interface ClaimCheckOptions {
  /** Bearer token, or a function returning one (called per transfer). Sent as `authorization: Bearer <token>`. */
  token?: string | (() => string | Promise<string>);
  /** API key, sent as `x-api-key`. */
  apiKey?: string;
  /** Priority sent with every transfer (the server sheds `low` first). */
  priority?: Priority;
  /** Extra request headers / gRPC metadata. */
  headers?: Record<string, string>;
}

/** Options of one transfer. */
export interface TransferOptions {
  /** Aborting it cancels the transfer: it rejects (or its body fails) with CANCELLED and Prism stops working on it. */
  signal?: AbortSignal;
}

/** Options of {@link ClaimCheck.getStream}. */
export interface GetStreamOptions extends TransferOptions {
  /** First byte to read (default 0). */
  offset?: number;
  /** Bytes to read from `offset` (default: to the end). A ranged read is not digest-checked. */
  length?: number;
}

type Body = AsyncIterable<Uint8Array> | Iterable<Uint8Array> | Uint8Array;

function claimFromJson(c: Record<string, unknown>): Claim {
  return {
    id: String(c.id ?? ""),
    size: Number(c.size ?? 0),
    sha256: String(c.sha256 ?? ""),
    contentType: String(c.content_type ?? c.contentType ?? ""),
    createdAtMs: Number(c.created_at_ms ?? c.createdAtMs ?? 0),
    expiresAtMs: Number(c.expires_at_ms ?? c.expiresAtMs ?? 0),
  };
}

/** A gRPC status → PrismError, as the gRPC transport maps them (no Prism reason + CANCELLED/UNAVAILABLE: the connection). */
function grpcError(e: grpc.ServiceError, what: string): PrismError {
  const r = e.metadata?.get("prism-reason")?.[0];
  const reason = typeof r === "string" ? r : "";
  if (!reason && (e.code === Code.CANCELLED || e.code === Code.UNAVAILABLE)) return unavailable(`${what}: connection lost: ${e.details || e.message}`);
  return new PrismError(e.code ?? Code.UNKNOWN, e.details || e.message, reason);
}

async function readText(res: IncomingMessage): Promise<string> {
  let t = "";
  res.setEncoding("utf8");
  for await (const d of res) t += d;
  return t;
}

/** The body as chunks: one Uint8Array is one chunk (iterating it would give numbers). */
function chunksOf(body: unknown): AsyncIterable<Uint8Array> | Iterable<Uint8Array> {
  if (body instanceof Uint8Array) return [body];
  if (body == null || typeof body === "string" || (typeof (body as AsyncIterable<unknown>)[Symbol.asyncIterator] !== "function" && typeof (body as Iterable<unknown>)[Symbol.iterator] !== "function")) {
    throw new PrismError(Code.INVALID_ARGUMENT, "body: must be a Uint8Array, or an iterable or async iterable of Uint8Array chunks (a Readable stream, a generator, an array)");
  }
  return body as AsyncIterable<Uint8Array>;
}

/** A chunk that is not bytes (a string from a Readable with an encoding set, a number) fails the body. */
function checkChunk(chunk: unknown, n: number): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  throw new PrismError(Code.INVALID_ARGUMENT, `body: chunk ${n} is ${typeof chunk === "string" ? "a string (read the stream without an encoding)" : typeof chunk}, not a Uint8Array`);
}

/** Streamed payloads of one claim-check namespace. */
export class ClaimCheck {
  private readonly base: URL;
  private readonly grpcTarget: string | undefined;
  private grpcClient: (grpc.Client & Record<string, any>) | undefined;
  private readonly tls: boolean;
  private readonly auth: Auth;

  constructor(
    address: string,
    readonly namespace: string,
    private readonly options: ClaimCheckOptions = {},
  ) {
    if (options.token !== undefined && typeof options.token !== "string" && typeof options.token !== "function") throw new PrismError(Code.INVALID_ARGUMENT, "token: must be a string or a function returning one");
    if (options.apiKey !== undefined && typeof options.apiKey !== "string") throw new PrismError(Code.INVALID_ARGUMENT, "apiKey: must be a string");
    if (options.priority !== undefined && !(options.priority in PRIORITY_BYTE)) throw new PrismError(Code.INVALID_ARGUMENT, `priority: must be critical, high, normal or low, got ${String(options.priority)}`);
    const m = /^([a-z][a-z0-9+.-]*):\/\/(.+)$/i.exec(address);
    const scheme = m ? m[1]!.toLowerCase() : "grpc";
    const rest = (m ? m[2]! : address).replace(/\/.*$/, "");
    if (!["ws", "wss", "http", "https", "grpc", "grpcs"].includes(scheme)) throw new PrismError(Code.INVALID_ARGUMENT, `address: unsupported scheme "${scheme}://" (use ws://, http:// or grpc://)`);
    if (scheme === "grpc" || scheme === "grpcs") {
      this.grpcTarget = rest;
      this.base = new URL(`http://${rest}`);
    } else {
      // The WebSocket server shares the HTTP port: the payload routes are on the same origin.
      this.base = new URL(`${scheme === "wss" || scheme === "https" ? "https" : "http"}://${rest}`);
    }
    this.tls = scheme === "grpcs";
    this.auth = makeAuth(options);
  }

  private client(): grpc.Client & Record<string, any> {
    if (this.grpcClient) return this.grpcClient;
    const codec = (type: { encode(m: any): { finish(): Uint8Array }; decode(b: Uint8Array): any }) => ({
      serialize: (m: any) => Buffer.from(type.encode(m).finish()),
      deserialize: (b: Buffer) => type.decode(b),
    });
    const req = codec(pb.v1.PutPayloadRequest);
    const get = codec(pb.v1.GetPayloadRequest);
    const def = {
      Put: { path: "/prism.v1.ClaimCheck/Put", requestStream: true, responseStream: false, requestSerialize: req.serialize, requestDeserialize: req.deserialize, responseSerialize: codec(pb.v1.PutPayloadResponse).serialize, responseDeserialize: codec(pb.v1.PutPayloadResponse).deserialize },
      Get: { path: "/prism.v1.ClaimCheck/Get", requestStream: false, responseStream: true, requestSerialize: get.serialize, requestDeserialize: get.deserialize, responseSerialize: codec(pb.v1.PayloadChunk).serialize, responseDeserialize: codec(pb.v1.PayloadChunk).deserialize },
    };
    const Ctor = grpc.makeGenericClientConstructor(def as unknown as grpc.ServiceDefinition, "ClaimCheck");
    this.grpcClient = new Ctor(this.grpcTarget!, this.tls ? grpc.credentials.createSsl() : grpc.credentials.createInsecure(), { "grpc.max_receive_message_length": 16 << 20 }) as grpc.Client & Record<string, any>;
    return this.grpcClient;
  }

  /** The credentials, priority and extra headers of one transfer (a token function is called here). */
  private async requestHeaders(): Promise<Record<string, string>> {
    const auth = this.auth.dynamic ? await this.auth.dynamic() : this.auth.fixed;
    return { ...auth, ...(this.options.priority ? { [this.grpcTarget ? PRIORITY_HEADER : "x-prism-priority"]: this.options.priority } : {}), ...this.options.headers };
  }

  private async metadata(): Promise<grpc.Metadata> {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(await this.requestHeaders())) md.set(k.toLowerCase(), v);
    return md;
  }

  /**
   * Uploads `body` (a Uint8Array, or chunks in order, taken as the connection accepts them) and
   * writes its claim to the target. A failure of `body` itself (its own error)
   * rejects with that error and cancels the upload.
   */
  async putStream(body: Body, target: PutTarget = {}, opts: TransferOptions = {}): Promise<PutResult> {
    const chunks = chunksOf(body);
    const signal = opts.signal;
    if (signal?.aborted) throw cancelled(signal);
    const headers = await this.requestHeaders();
    if (signal?.aborted) throw cancelled(signal);
    return this.grpcTarget ? this.grpcPut(chunks, target, headers, signal) : this.httpPut(chunks, target, headers, signal);
  }

  private async httpPut(body: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, target: PutTarget, auth: Record<string, string>, signal: AbortSignal | undefined): Promise<PutResult> {
    const q = new URLSearchParams();
    for (const f of ["key", "queue", "topic", "stream", "sha256"] as const) if (target[f]) q.set(f, target[f]!);
    if (target.ttl) q.set("ttl", String(target.ttl));
    if (target.ifAbsent) q.set("if_absent", "1");
    const url = new URL(`/v1/ns/${encodeURIComponent(this.namespace)}/payloads?${q}`, this.base);
    const what = `PUT ${url.pathname}`;
    const req = (this.base.protocol === "https:" ? httpsRequest : httpRequest)(url, {
      method: "PUT",
      headers: { "content-type": target.contentType || "application/octet-stream", ...auth },
    });
    let aborted = false;
    const onAbort = () => {
      aborted = true;
      req.destroy(); // the server sees the connection close: it cancels the upload and stores nothing
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    let early: IncomingMessage | undefined;
    const response = new Promise<IncomingMessage>((resolve, reject) => {
      req.once("response", (res: IncomingMessage) => resolve((early = res)));
      req.once("error", reject);
    });
    response.catch(() => {}); // awaited below; a failure before then is not unhandled
    /** Resolves when the request can take more, or failed/closed (the loop then finds out). */
    const writable = () =>
      new Promise<void>((r) => {
        const done = () => {
          req.off("drain", done);
          req.off("error", done);
          req.off("close", done);
          r();
        };
        req.once("drain", done);
        req.once("error", done);
        req.once("close", done);
      });
    try {
      const it = body as AsyncIterable<Uint8Array>;
      let n = 0;
      try {
        for await (const chunk of it) {
          // Prism answered before the end (a refusal): stop sending, its answer says why.
          if (aborted || early || req.destroyed) break;
          if (!req.write(checkChunk(chunk, n++))) await writable();
        }
      } catch (e) {
        // The body's own failure: cancel the upload (the server stores nothing) and pass it on.
        req.destroy();
        if (aborted) throw cancelled(signal);
        throw e;
      }
      if (aborted) throw cancelled(signal);
      if (!early && !req.destroyed) req.end();
      let res: IncomingMessage;
      try {
        // A refusal while the body was still being sent arrives here as the response (Prism answers, then closes).
        res = await response;
      } catch (e) {
        throw aborted ? cancelled(signal) : unavailable(what, e);
      }
      let text: string;
      try {
        text = await readText(res);
      } catch (e) {
        throw aborted ? cancelled(signal) : unavailable(`${what}: reading the answer`, e);
      }
      if (res.statusCode !== 200) throw httpError(res.statusCode ?? 0, text);
      if (aborted) throw cancelled(signal);
      let j: Record<string, unknown>;
      try {
        j = JSON.parse(text) as Record<string, unknown>;
      } catch (e) {
        throw new PrismError(Code.INTERNAL, `${what}: malformed answer: ${(e as Error).message}`);
      }
      return {
        claim: claimFromJson(j.claim as Record<string, unknown>),
        ...(j.version !== undefined ? { version: Number(j.version) } : {}),
        ...(j.message_id !== undefined ? { messageId: String(j.message_id) } : {}),
        ...(j.offset !== undefined ? { offset: Number(j.offset) } : {}),
      };
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  private grpcPut(body: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, t: PutTarget, headers: Record<string, string>, signal: AbortSignal | undefined): Promise<PutResult> {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(headers)) md.set(k.toLowerCase(), v);
    return new Promise<PutResult>((resolve, reject) => {
      let finished = false;
      let wake: (() => void) | undefined;
      const onAbort = () => call.cancel(); // RST_STREAM CANCEL: the server cancels the upload
      const call = this.client().Put(md, (err: grpc.ServiceError | null, res: pb.v1.PutPayloadResponse) => {
        finished = true;
        wake?.();
        signal?.removeEventListener("abort", onAbort);
        if (signal?.aborted) return reject(cancelled(signal));
        if (err) return reject(grpcError(err, "ClaimCheck/Put"));
        resolve({
          claim: claimFromJson(res.claim as unknown as Record<string, unknown>),
          ...(t.key ? { version: Number(res.version) } : {}),
          ...(t.queue || t.topic ? { messageId: res.messageId } : {}),
          ...(t.stream ? { offset: Number(res.offset) } : {}),
        });
      });
      signal?.addEventListener("abort", onAbort, { once: true });
      call.write({ namespace: this.namespace, key: t.key, queue: t.queue, topic: t.topic, stream: t.stream, ttlSeconds: t.ttl, sha256: t.sha256, ifAbsent: t.ifAbsent, contentType: t.contentType });
      void (async () => {
        try {
          let n = 0;
          for await (const chunk of body as AsyncIterable<Uint8Array>) {
            // The call ended early (refused, cancelled): stop taking chunks; its status says why.
            if (finished) return;
            if (!call.write({ chunk: checkChunk(chunk, n++) })) {
              await new Promise<void>((r) => {
                wake = r;
                call.once("drain", r);
              });
              wake = undefined;
            }
          }
          if (!finished) call.end();
        } catch (e) {
          // The body's own failure: cancel the upload and pass it on.
          signal?.removeEventListener("abort", onAbort);
          finished = true;
          call.cancel();
          reject(e);
        }
      })();
    });
  }

  /**
   * Streams a payload: by claim id, or `{ key }` for the claim a key holds;
   * `offset` / `length` for a range. A whole read is checked against the
   * claim's SHA-256 (by Prism, and over HTTP by the SDK as the bytes pass):
   * a mismatch ends the body with DATA_LOSS (PRISM_ERR_PAYLOAD_CORRUPT) once
   * the last chunk went by: consume the body to its end before trusting the
   * bytes. A body cut short (connection lost) fails with UNAVAILABLE.
   */
  async getStream(claim: string | { key: string }, opts: GetStreamOptions = {}): Promise<{ claim: Claim; body: AsyncIterable<Uint8Array> }> {
    const byKey = typeof claim !== "string";
    if (byKey ? typeof claim?.key !== "string" : claim === "") throw new PrismError(Code.INVALID_ARGUMENT, "claim: a claim id, or { key } for the claim a key holds");
    for (const f of ["offset", "length"] as const) {
      const v = opts[f];
      if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) throw new PrismError(Code.INVALID_ARGUMENT, `${f}: must be a whole number ≥ 0, got ${String(v)}`);
    }
    const signal = opts.signal;
    if (signal?.aborted) throw cancelled(signal);
    const headers = await this.requestHeaders();
    if (signal?.aborted) throw cancelled(signal);
    if (this.grpcTarget) {
      const md = new grpc.Metadata();
      for (const [k, v] of Object.entries(headers)) md.set(k.toLowerCase(), v);
      const call = this.client().Get({ namespace: this.namespace, claimId: byKey ? "" : claim, key: byKey ? claim.key : "", offset: opts.offset ?? 0, length: opts.length ?? 0 }, md);
      const onAbort = () => call.cancel();
      signal?.addEventListener("abort", onAbort, { once: true });
      const mapErr = (e: unknown) => (signal?.aborted ? cancelled(signal) : grpcError(e as grpc.ServiceError, "ClaimCheck/Get"));
      const it = (call as AsyncIterable<pb.v1.PayloadChunk>)[Symbol.asyncIterator]();
      let first: IteratorResult<pb.v1.PayloadChunk>;
      try {
        first = await it.next();
      } catch (e) {
        signal?.removeEventListener("abort", onAbort);
        throw mapErr(e);
      }
      if (first.done || !first.value.claim) {
        signal?.removeEventListener("abort", onAbort);
        call.cancel();
        throw new PrismError(Code.INTERNAL, "ClaimCheck/Get: the stream did not start with the claim", "PRISM_ERR_MALFORMED");
      }
      const head = claimFromJson(first.value.claim as unknown as Record<string, unknown>);
      async function* data(): AsyncGenerator<Uint8Array> {
        try {
          if (first.value.data?.length) yield first.value.data;
          for (;;) {
            const n = await it.next();
            if (n.done) return;
            if (n.value.data?.length) yield n.value.data;
          }
        } catch (e) {
          throw mapErr(e);
        } finally {
          signal?.removeEventListener("abort", onAbort);
          call.cancel(); // a reader that stops early: the server stops sending (no-op once ended)
        }
      }
      return { claim: head, body: data() };
    }
    const path = byKey ? `/v1/ns/${encodeURIComponent(this.namespace)}/payloads?key=${encodeURIComponent(claim.key)}` : `/v1/ns/${encodeURIComponent(this.namespace)}/payloads/${encodeURIComponent(claim)}`;
    const what = `GET /v1/ns/${this.namespace}/payloads`;
    if (opts.offset || opts.length) headers.range = `bytes=${opts.offset ?? 0}-${opts.length ? (opts.offset ?? 0) + opts.length - 1 : ""}`;
    let res: IncomingMessage;
    try {
      res = await new Promise<IncomingMessage>((resolve, reject) => {
        (this.base.protocol === "https:" ? httpsRequest : httpRequest)(new URL(path, this.base), { method: "GET", headers, ...(signal ? { signal } : {}) }, resolve)
          .once("error", reject)
          .end();
      });
    } catch (e) {
      throw signal?.aborted ? cancelled(signal) : unavailable(what, e);
    }
    if (res.statusCode !== 200 && res.statusCode !== 206) {
      let text = "";
      try {
        text = await readText(res);
      } catch (e) {
        throw signal?.aborted ? cancelled(signal) : unavailable(`${what}: reading the answer`, e);
      }
      throw httpError(res.statusCode ?? 0, text);
    }
    const h = res.headers;
    const expected = Number(h["content-length"]);
    // A whole read is checked here too: over HTTP the last bytes may be out before Prism's own check fails.
    const want = res.statusCode === 200 && typeof h["x-prism-sha256"] === "string" ? h["x-prism-sha256"] : "";
    const id = typeof h["x-prism-claim-id"] === "string" ? h["x-prism-claim-id"] : byKey ? `key ${claim.key}` : claim;
    async function* data(): AsyncGenerator<Uint8Array> {
      let n = 0;
      const hash = want ? createHash("sha256") : undefined;
      try {
        for await (const c of res as AsyncIterable<Buffer>) {
          n += c.length;
          hash?.update(c);
          yield c;
        }
      } catch (e) {
        if (signal?.aborted) throw cancelled(signal);
        throw unavailable(`${what}: the body was cut off after ${n} of ${Number.isFinite(expected) ? expected : "?"} bytes (connection lost, or the payload failed its digest check on the server)`, e);
      } finally {
        res.destroy(); // a reader that stops early closes the connection: the server stops sending
      }
      if (Number.isFinite(expected) && n !== expected) throw new PrismError(Code.UNAVAILABLE, `${what}: the body ended after ${n} of ${expected} bytes`);
      if (hash) {
        const got = hash.digest("hex");
        if (got !== want) throw new PrismError(Code.DATA_LOSS, `payload "${id}": SHA-256 ${got} of the bytes received does not match the claim's ${want}`, "PRISM_ERR_PAYLOAD_CORRUPT");
      }
    }
    return {
      claim: claimFromJson({ id: h["x-prism-claim-id"], size: h["x-prism-size"], sha256: h["x-prism-sha256"], content_type: h["content-type"], expires_at_ms: h["x-prism-expires-at-ms"] }),
      body: data(),
    };
  }

  close(): void {
    this.grpcClient?.close();
    this.grpcClient = undefined;
  }
}

/** Streamed payloads of the claim-check namespace `namespace` on the gateway at `address` (ws(s)://, http(s):// or grpc(s)://). */
export function claimCheck(address: string, namespace: string, options?: ClaimCheckOptions): ClaimCheck {
  return new ClaimCheck(address, namespace, options);
}
