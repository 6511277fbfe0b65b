/**
 * Claim Check payloads (namespaces with `pattern: claim-check`): putStream
 * uploads a payload of any size (up to the namespace's max_payload_bytes,
 * 5 GiB by default) as it is produced, getStream streams one back. Neither
 * holds a payload in memory: every chunk waits for the connection to take
 * the previous ones.
 *
 * Over `ws://` and `http://` addresses they use the HTTP payload routes (PUT /
 * GET /v1/ns/{ns}/payloads, the same port); over `grpc://` the ClaimCheck
 * service (client-streaming Put, server-streaming Get). Node.js only.
 *
 * @example
 * const cc = claimCheck("ws://localhost:8981", "uploads");
 * const { claim } = await cc.putStream(fs.createReadStream("video.mp4"), { queue: "transcode" });
 * const { body } = await cc.getStream(claim.id);
 * await pipeline(body, fs.createWriteStream("copy.mp4"));
 */
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import * as grpc from "@grpc/grpc-js";
import { prism as pb } from "./gen/prism.js";
import { PrismError } from "./errors.js";

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
  /** Extra request headers / gRPC metadata (e.g. authorization). */
  headers?: Record<string, string>;
}

type Body = AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

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

function errorOf(status: number, text: string): PrismError {
  try {
    const e = (JSON.parse(text) as { error?: { code?: number; message?: string; reason?: string } }).error;
    if (e) return new PrismError(e.code ?? 2, e.message ?? text, e.reason ?? "");
  } catch {
    // not JSON
  }
  return new PrismError(2, `HTTP ${status}: ${text.slice(0, 200)}`, "");
}

function grpcError(e: grpc.ServiceError): PrismError {
  const reason = e.metadata?.get("prism-reason")?.[0];
  return new PrismError(e.code, e.details || e.message, typeof reason === "string" ? reason : "");
}

async function readText(res: IncomingMessage): Promise<string> {
  let t = "";
  res.setEncoding("utf8");
  for await (const d of res) t += d;
  return t;
}

/** Streamed payloads of one claim-check namespace. */
export class ClaimCheck {
  private readonly base: URL;
  private readonly grpcTarget: string | undefined;
  private grpcClient: (grpc.Client & Record<string, any>) | undefined;

  constructor(
    address: string,
    readonly namespace: string,
    private readonly options: ClaimCheckOptions = {},
  ) {
    const m = /^(ws|wss|http|https|grpc|grpcs):\/\/(.+)$/.exec(address);
    const scheme = m ? m[1]! : "grpc";
    const rest = m ? m[2]! : address;
    if (scheme === "grpc" || scheme === "grpcs") {
      this.grpcTarget = rest.replace(/\/.*$/, "");
      this.base = new URL(`http://${this.grpcTarget}`);
    } else {
      this.base = new URL(`${scheme === "wss" || scheme === "https" ? "https" : "http"}://${rest.replace(/\/.*$/, "")}`);
    }
    this.tls = scheme === "grpcs";
  }

  private readonly tls: boolean;

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

  private metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(this.options.headers ?? {})) md.set(k.toLowerCase(), v);
    return md;
  }

  /** Uploads `body` (chunks in order, produced as they are taken) and writes its claim to the target. */
  async putStream(body: Body, target: PutTarget = {}): Promise<PutResult> {
    if (this.grpcTarget) return this.grpcPut(body, target);
    const q = new URLSearchParams();
    for (const f of ["key", "queue", "topic", "stream", "sha256"] as const) if (target[f]) q.set(f, target[f]!);
    if (target.ttl) q.set("ttl", String(target.ttl));
    if (target.ifAbsent) q.set("if_absent", "1");
    const req = (this.base.protocol === "https:" ? httpsRequest : httpRequest)(new URL(`/v1/ns/${encodeURIComponent(this.namespace)}/payloads?${q}`, this.base), {
      method: "PUT",
      headers: { "content-type": target.contentType || "application/octet-stream", ...this.options.headers },
    });
    const response = new Promise<IncomingMessage>((resolve, reject) => {
      req.once("response", resolve);
      req.once("error", reject);
    });
    try {
      for await (const chunk of body as AsyncIterable<Uint8Array>) {
        if (!req.write(chunk)) await new Promise<void>((r, j) => (req.once("drain", r), req.once("error", j)));
      }
      req.end();
    } catch (e) {
      // The server answered early (an error) and closed: its answer says why.
      const res = await Promise.race([response, new Promise<undefined>((r) => setTimeout(r, 1000, undefined))]).catch(() => undefined);
      if (res) throw errorOf(res.statusCode ?? 0, await readText(res));
      req.destroy();
      throw e;
    }
    const res = await response;
    const text = await readText(res);
    if (res.statusCode !== 200) throw errorOf(res.statusCode ?? 0, text);
    const j = JSON.parse(text) as Record<string, unknown>;
    return {
      claim: claimFromJson(j.claim as Record<string, unknown>),
      ...(j.version !== undefined ? { version: Number(j.version) } : {}),
      ...(j.message_id !== undefined ? { messageId: String(j.message_id) } : {}),
      ...(j.offset !== undefined ? { offset: Number(j.offset) } : {}),
    };
  }

  private grpcPut(body: Body, t: PutTarget): Promise<PutResult> {
    return new Promise<PutResult>((resolve, reject) => {
      const call = this.client().Put(this.metadata(), (err: grpc.ServiceError | null, res: pb.v1.PutPayloadResponse) => {
        if (err) return reject(grpcError(err));
        resolve({
          claim: claimFromJson(res.claim as unknown as Record<string, unknown>),
          ...(t.key ? { version: Number(res.version) } : {}),
          ...(t.queue || t.topic ? { messageId: res.messageId } : {}),
          ...(t.stream ? { offset: Number(res.offset) } : {}),
        });
      });
      call.write({ namespace: this.namespace, key: t.key, queue: t.queue, topic: t.topic, stream: t.stream, ttlSeconds: t.ttl, sha256: t.sha256, ifAbsent: t.ifAbsent, contentType: t.contentType });
      void (async () => {
        try {
          for await (const chunk of body as AsyncIterable<Uint8Array>) {
            if (!call.write({ chunk })) await new Promise<void>((r) => call.once("drain", r));
          }
          call.end();
        } catch (e) {
          call.cancel();
          reject(e);
        }
      })();
    });
  }

  /**
   * Streams a payload: by claim id, or `{ key }` for the claim a key holds;
   * `offset` / `length` for a range. A whole read is checked against the
   * claim's SHA-256 by Prism: a mismatch ends the body with an error.
   */
  async getStream(claim: string | { key: string }, opts: { offset?: number; length?: number } = {}): Promise<{ claim: Claim; body: AsyncIterable<Uint8Array> }> {
    const byKey = typeof claim !== "string";
    if (this.grpcTarget) {
      const call = this.client().Get({ namespace: this.namespace, claimId: byKey ? "" : claim, key: byKey ? claim.key : "", offset: opts.offset ?? 0, length: opts.length ?? 0 }, this.metadata());
      const it = (call as AsyncIterable<pb.v1.PayloadChunk>)[Symbol.asyncIterator]();
      let first: IteratorResult<pb.v1.PayloadChunk>;
      try {
        first = await it.next();
      } catch (e) {
        throw grpcError(e as grpc.ServiceError);
      }
      if (first.done || !first.value.claim) throw new PrismError(13, "ClaimCheck.Get: the stream did not start with the claim", "PRISM_ERR_MALFORMED");
      const head = claimFromJson(first.value.claim as unknown as Record<string, unknown>);
      async function* data(): AsyncGenerator<Uint8Array> {
        try {
          for (;;) {
            const n = await it.next();
            if (n.done) return;
            if (n.value.data?.length) yield n.value.data;
          }
        } catch (e) {
          throw grpcError(e as grpc.ServiceError);
        }
      }
      return { claim: head, body: data() };
    }
    const path = byKey ? `/v1/ns/${encodeURIComponent(this.namespace)}/payloads?key=${encodeURIComponent(claim.key)}` : `/v1/ns/${encodeURIComponent(this.namespace)}/payloads/${encodeURIComponent(claim)}`;
    const headers: Record<string, string> = { ...this.options.headers };
    if (opts.offset || opts.length) headers.range = `bytes=${opts.offset ?? 0}-${opts.length ? (opts.offset ?? 0) + opts.length - 1 : ""}`;
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      (this.base.protocol === "https:" ? httpsRequest : httpRequest)(new URL(path, this.base), { method: "GET", headers }, resolve).once("error", reject).end();
    });
    if (res.statusCode !== 200 && res.statusCode !== 206) throw errorOf(res.statusCode ?? 0, await readText(res));
    const h = res.headers;
    return {
      claim: claimFromJson({ id: h["x-prism-claim-id"], size: h["x-prism-size"], sha256: h["x-prism-sha256"], content_type: h["content-type"], expires_at_ms: h["x-prism-expires-at-ms"] }),
      body: res,
    };
  }

  close(): void {
    this.grpcClient?.close();
    this.grpcClient = undefined;
  }
}

/** Streamed payloads of the claim-check namespace `namespace` on the gateway at `address` (ws://, http:// or grpc://). */
export function claimCheck(address: string, namespace: string, options?: ClaimCheckOptions): ClaimCheck {
  return new ClaimCheck(address, namespace, options);
}
