/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha, a bidirectional
 * stream) on the node:http2 gRPC server. The protocol and its answers are
 * grpc-reflection.ts's (the descriptor set protoc builds from proto/, shared
 * with the grpc-js ingress); this file only frames it on an HTTP/2 stream.
 */
import type { ServerHttp2Stream } from "node:http2";
import { Code, errors, PrismError } from "../core/errors.js";
import { newReflectionSession, REFLECTION_PATHS, type ReflectionSession } from "./grpc-reflection.js";
import { canInflate, compressedRefusal, Deframer, inflateMessageSync, frame, OK_TRAILERS, RESPONSE_HEADERS, statusTrailers, TRAILERS, TRAILERS_ONLY, WITH_TRAILERS, type TrailerStream } from "./grpc-h2-wire.js";

export { REFLECTION_PATHS };

/**
 * One ServerReflectionInfo call: each request is deframed (and inflated) and
 * answered at once; the client's half-close ends the stream with OK.
 */
export class ReflectionCall extends Deframer {
  private headersSent = false;
  private done = false;
  private readonly session: ReflectionSession | undefined;

  constructor(
    private readonly stream: ServerHttp2Stream,
    maxMessageBytes: number,
    private readonly encoding: string | undefined,
  ) {
    super(maxMessageBytes);
    try {
      this.session = newReflectionSession();
    } catch (e) {
      this.fail(new PrismError(Code.UNIMPLEMENTED, "PRISM_ERR_UNKNOWN_METHOD", `server reflection is unavailable: ${(e as Error).message}`));
    }
  }

  /** The client half-closed its side. */
  clientEnd(): void {
    if (this.done || this.stopped) return;
    if (this.partial !== 0) return this.fail(errors.malformed(`malformed gRPC framing: the stream ended inside a message`));
    this.finish(undefined);
  }

  /** The stream closed (client cancelled, or the server is going away). */
  closed(): void {
    this.done = true;
    this.stopped = true;
  }

  protected frameReceived(compressed: number, body: Buffer): void {
    if (this.done || !this.session) return;
    if (compressed !== 0 && !canInflate(this.encoding)) return this.fail(compressedRefusal(this.encoding));
    let answer: Buffer;
    try {
      const bytes = compressed !== 0 ? inflateMessageSync(this.encoding!, body, this.maxMessageBytes, "grpc.reflection request") : body;
      answer = this.session.answer(bytes);
    } catch (e) {
      if (e instanceof PrismError) return this.fail(e);
      return this.fail(errors.malformed(`malformed grpc.reflection request: ${(e as Error).message}`));
    }
    if (this.stream.destroyed) return;
    if (!this.headersSent) {
      this.headersSent = true;
      this.stream.respond(RESPONSE_HEADERS, WITH_TRAILERS);
    }
    this.stream.write(frame(answer));
  }

  protected framingFailed(e: PrismError): void {
    this.fail(e);
  }

  private fail(e: PrismError): void {
    this.stopped = true;
    this.finish(e);
  }

  /** Ends the call from outside (connection limits). */
  abort(e: PrismError): void {
    this.fail(e);
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
