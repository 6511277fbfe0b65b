/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha, a bidirectional
 * stream) on the node:http2 gRPC server. The answers come from
 * @grpc/reflection's own implementation, loaded on the first call exactly as
 * the grpc-js ingress does it (src/ingress/grpc-reflection.ts: descriptors
 * from proto-loader, several MB most deployments never use); this file only
 * adapts an HTTP/2 stream to the duplex-call shape that implementation drives
 * (`on("data" | "end")`, `write`, `end`).
 */
import { createRequire } from "node:module";
import type { ServerHttp2Stream } from "node:http2";
import type { Server, ServiceDefinition } from "@grpc/grpc-js";
import { Code, errors, PrismError } from "../core/errors.js";
import { findProtoDir, prismPackageDefinition } from "./grpc-reflection.js";
import { canInflate, compressedRefusal, Deframer, inflateMessageSync, frame, OK_TRAILERS, RESPONSE_HEADERS, statusTrailers, TRAILERS, TRAILERS_ONLY, WITH_TRAILERS, type TrailerStream } from "./grpc-h2-wire.js";

const METHOD = "ServerReflectionInfo";
export const REFLECTION_PATHS: ReadonlySet<string> = new Set(["v1", "v1alpha"].map((v) => `/grpc.reflection.${v}.ServerReflection/${METHOD}`));

const require = createRequire(import.meta.url);

interface Impl {
  deserialize: (b: Buffer) => unknown;
  serialize: (m: unknown) => Buffer;
  handler: (stream: object) => void;
}

let loaded: Map<string, Impl> | undefined;

/** @grpc/reflection's handlers and codecs by path (loaded once). Throws when unavailable. */
function load(): Map<string, Impl> {
  if (loaded) return loaded;
  if (!findProtoDir()) throw new Error("cannot find proto/prism/v1/prism.proto above the gateway's install folder");
  const { ReflectionService } = require("@grpc/reflection") as typeof import("@grpc/reflection");
  const byPath = new Map<string, Impl>();
  const capture = {
    addService(definition: ServiceDefinition, impl: Record<string, (stream: object) => void>) {
      const m = definition[METHOD]!;
      byPath.set(m.path, { deserialize: m.requestDeserialize, serialize: m.responseSerialize as (m: unknown) => Buffer, handler: impl[METHOD]! });
    },
  };
  new ReflectionService(prismPackageDefinition() as any).addToServer(capture as unknown as Server);
  loaded = byPath;
  return byPath;
}

type Listener = (arg?: unknown) => void;

/**
 * One ServerReflectionInfo call: requests are deframed and decoded, handed to
 * the implementation's 'data' listeners; the client's half-close becomes 'end'
 * (the implementation answers by ending), which ends the stream with OK.
 */
export class ReflectionCall extends Deframer {
  private readonly data: Listener[] = [];
  private readonly ended: Listener[] = [];
  private headersSent = false;
  private done = false;
  private readonly impl: Impl | undefined;

  constructor(
    private readonly stream: ServerHttp2Stream,
    path: string,
    maxMessageBytes: number,
    private readonly encoding: string | undefined,
  ) {
    super(maxMessageBytes);
    try {
      this.impl = load().get(path);
    } catch (e) {
      this.fail(new PrismError(Code.UNIMPLEMENTED, "PRISM_ERR_UNKNOWN_METHOD", `server reflection is unavailable: ${(e as Error).message}`));
      return;
    }
    this.impl!.handler(this);
  }

  // --- the duplex-call surface @grpc/reflection uses
  on(event: string, fn: Listener): this {
    if (event === "data") this.data.push(fn);
    else if (event === "end") this.ended.push(fn);
    return this;
  }

  write(msg: unknown): boolean {
    if (this.done || this.stream.destroyed) return false;
    if (!this.headersSent) {
      this.headersSent = true;
      this.stream.respond(RESPONSE_HEADERS, WITH_TRAILERS);
    }
    return this.stream.write(frame(this.impl!.serialize(msg)));
  }

  end(): void {
    this.finish(undefined);
  }

  // --- the HTTP/2 side
  /** The client half-closed its side. */
  clientEnd(): void {
    if (this.done || this.stopped) return;
    if (this.partial !== 0) return this.fail(errors.malformed(`malformed gRPC framing: the stream ended inside a message`));
    for (const fn of this.ended) fn();
  }

  /** The stream closed (client cancelled, or the server is going away). */
  closed(): void {
    this.done = true;
    this.stopped = true;
  }

  protected frameReceived(compressed: number, body: Buffer): void {
    if (this.done) return;
    if (compressed !== 0 && !canInflate(this.encoding)) return this.fail(compressedRefusal(this.encoding));
    let msg: unknown;
    try {
      const bytes = compressed !== 0 ? inflateMessageSync(this.encoding!, body, this.maxMessageBytes, "grpc.reflection request") : body;
      msg = this.impl!.deserialize(bytes);
    } catch (e) {
      if (e instanceof PrismError) return this.fail(e);
      return this.fail(errors.malformed(`malformed grpc.reflection request: ${(e as Error).message}`));
    }
    for (const fn of this.data) fn(msg);
  }

  protected framingFailed(e: PrismError): void {
    this.fail(e);
  }

  private fail(e: PrismError): void {
    this.stopped = true;
    this.finish(e);
  }

  /** Ends the stream: OK trailers, or the error's status (trailers-only when nothing was sent yet). */
  private finish(e: PrismError | undefined): void {
    if (this.done) return;
    this.done = true;
    const s = this.stream;
    if (s.destroyed || s.closed) return;
    if (!this.headersSent) {
      this.headersSent = true;
      s.respond(e ? statusTrailers(e, true) : { ...RESPONSE_HEADERS, ...OK_TRAILERS }, TRAILERS_ONLY);
      return;
    }
    if (e) (s as TrailerStream)[TRAILERS] = statusTrailers(e, false);
    s.end();
  }
}
