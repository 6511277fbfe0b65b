/**
 * gRPC transport (@grpc/grpc-js) on paths `/prism.v1.{Service}/{Method}` with
 * the static protobuf codecs. Errors map from the grpc status; the stable
 * reason comes from the `prism-reason` trailer.
 */
import * as grpc from "@grpc/grpc-js";
import { Code, PrismError, unavailable } from "./errors.js";
import type { MethodInfo } from "./methods.js";
import { PRIORITY_HEADER, type ConnectOptions, type StreamHandle, type StreamSink, type Transport } from "./transport.js";

/** Per-method serializers, made once (grpc-js wants functions). */
interface Codecs {
  serialize(req: object): Buffer;
  deserialize(buf: Buffer): unknown;
}
const CODECS = new WeakMap<MethodInfo, Codecs>();

function codecs(m: MethodInfo): Codecs {
  let c = CODECS.get(m);
  if (!c) {
    const req = m.requestType;
    const res = m.responseType;
    c = {
      serialize: (obj) => {
        const b = req.encode(obj).finish();
        return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
      },
      // A plain Uint8Array view: protobufjs then decodes bytes fields as Uint8Array, not Buffer.
      deserialize: (buf) => res.decode(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength)),
    };
    CODECS.set(m, c);
  }
  return c;
}

function toPrismError(err: grpc.ServiceError): PrismError {
  const r = err.metadata?.get("prism-reason")[0];
  const reason = typeof r === "string" ? r : "";
  // Only close() cancels our calls (and maps that itself): a CANCELLED without
  // a Prism reason is the server or the connection dropping the call (RST_STREAM
  // on shutdown), i.e. the connection went away.
  if (err.code === Code.CANCELLED && !reason) {
    return new PrismError(Code.UNAVAILABLE, `connection lost: ${err.details || err.message}`);
  }
  return new PrismError(err.code ?? Code.UNKNOWN, err.details || err.message, reason);
}

/** @internal The gRPC transport. */
export class GrpcTransport implements Transport {
  private readonly client: grpc.Client;
  private readonly timeoutMs: number;
  private readonly priority: string | undefined;
  /** Calls in flight, so close() can end them (grpc-js lets them run past close). */
  private readonly calls = new Set<grpc.Call>();
  private closedError: PrismError | undefined;

  private constructor(target: string, secure: boolean, opts: ConnectOptions) {
    this.client = new grpc.Client(target, secure ? grpc.credentials.createSsl() : grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": -1,
      "grpc.max_send_message_length": -1,
    });
    this.timeoutMs = opts.timeoutMs ?? 0;
    this.priority = opts.priority;
  }

  /** Connects (waits until the channel is ready); rejects with UNAVAILABLE when it cannot. */
  static async open(target: string, secure: boolean, opts: ConnectOptions): Promise<GrpcTransport> {
    const t = new GrpcTransport(target, secure, opts);
    const wait = opts.timeoutMs && opts.timeoutMs > 0 ? opts.timeoutMs : 10_000;
    try {
      await new Promise<void>((resolve, reject) =>
        t.client.waitForReady(Date.now() + wait, (err) => (err ? reject(err) : resolve())),
      );
    } catch (e) {
      t.client.close();
      throw unavailable(`connect grpc://${target}`, e);
    }
    return t;
  }

  private metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    if (this.priority) md.set(PRIORITY_HEADER, this.priority);
    return md;
  }

  unary(method: MethodInfo, request: object, extraMs = 0): Promise<any> {
    if (this.closedError) return Promise.reject(this.closedError);
    const c = codecs(method);
    const options: grpc.CallOptions = {};
    if (this.timeoutMs > 0) options.deadline = Date.now() + this.timeoutMs + extraMs;
    return new Promise((resolve, reject) => {
      const call = this.client.makeUnaryRequest(method.path, c.serialize, c.deserialize, request, this.metadata(), options, (err, res) => {
        this.calls.delete(call);
        if (err) reject(this.closedError ?? toPrismError(err));
        else resolve(res);
      });
      this.calls.add(call);
    });
  }

  serverStream(method: MethodInfo, request: object, sink: StreamSink): StreamHandle {
    if (this.closedError) {
      const err = this.closedError;
      queueMicrotask(() => sink.onError(err));
      return { cancel() {} };
    }
    const c = codecs(method);
    const call = this.client.makeServerStreamRequest(method.path, c.serialize, c.deserialize, request, this.metadata(), {});
    this.calls.add(call);
    let cancelled = false;
    let finished = false;
    const finish = () => {
      finished = true;
      this.calls.delete(call);
    };
    // The server sends response headers once the subscription is live.
    call.on("metadata", () => {
      if (!cancelled) sink.onReady();
    });
    call.on("data", (msg: unknown) => {
      if (!cancelled) sink.onMessage(msg);
    });
    call.on("error", (err: grpc.ServiceError) => {
      if (finished) return;
      finish();
      if (!cancelled) sink.onError(this.closedError ?? toPrismError(err));
    });
    call.on("status", (status: grpc.StatusObject) => {
      if (finished) return;
      finish();
      if (cancelled) return;
      if (status.code === grpc.status.OK) sink.onEnd();
      else sink.onError(toPrismError(Object.assign(new Error(status.details), status) as grpc.ServiceError));
    });
    return {
      cancel() {
        if (cancelled) return;
        cancelled = true;
        call.cancel();
      },
    };
  }

  async close(): Promise<void> {
    if (this.closedError) return;
    this.closedError = unavailable("connection closed by the client");
    for (const call of this.calls) call.cancel();
    this.calls.clear();
    this.client.close();
  }
}
