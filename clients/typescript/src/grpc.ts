/**
 * gRPC transport (@grpc/grpc-js) on paths `/prism.v1.{Service}/{Method}` with
 * the static protobuf codecs. Errors map from the grpc status; the stable
 * reason comes from the `prism-reason` trailer.
 */
import * as grpc from "@grpc/grpc-js";
import { Code, PrismError, cancelled, connectionLost, deadlineExceeded, unavailable } from "./errors.js";
import type { MethodInfo } from "./methods.js";
import { PRIORITY_HEADER, type Attempt, type Auth, type OpenOptions, type StreamHandle, type StreamSink, type Transport } from "./transport.js";

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
  // Prism sends a reason with every error. Without one, the status came from grpc-js itself:
  // CANCELLED (we map our own cancels before this) or UNAVAILABLE is the connection dropping
  // the call (reset, GOAWAY, no connection), i.e. the connection went away.
  if (!reason && (err.code === Code.CANCELLED || err.code === Code.UNAVAILABLE)) {
    return connectionLost(`connection lost: ${err.details || err.message}`);
  }
  if (!reason && err.code === Code.DEADLINE_EXCEEDED) return deadlineExceeded();
  return new PrismError(err.code ?? Code.UNKNOWN, err.details || err.message, reason);
}

/** Resolves once the channel is READY; rejects at the first TRANSIENT_FAILURE or at the deadline (no waiting out grpc-js' own backoff). */
function whenReady(channel: ReturnType<grpc.Client["getChannel"]>, deadline: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      let state: grpc.connectivityState;
      try {
        state = channel.getConnectivityState(true);
      } catch (e) {
        return reject(e);
      }
      if (state === grpc.connectivityState.READY) return resolve();
      if (state === grpc.connectivityState.TRANSIENT_FAILURE) return reject(new Error("connection failed"));
      if (state === grpc.connectivityState.SHUTDOWN) return reject(new Error("channel closed"));
      channel.watchConnectivityState(state, deadline, (err) => (err ? reject(err) : check()));
    };
    check();
  });
}

/** @internal The gRPC transport. */
export class GrpcTransport implements Transport {
  private readonly client: grpc.Client;
  private readonly priority: string | undefined;
  private readonly auth: Auth;
  /** Calls in flight, so close() can end them (grpc-js lets them run past close). */
  private readonly calls = new Set<grpc.Call>();
  private closedError: PrismError | undefined;
  /** The channel is closed (by close(), or drained after the connection was lost). */
  private shut = false;

  private constructor(target: string, secure: boolean, opts: OpenOptions) {
    this.client = new grpc.Client(target, secure ? grpc.credentials.createSsl() : grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": -1,
      "grpc.max_send_message_length": -1,
      // An idle channel would go IDLE after 30 min, which reads as a lost connection: keep it (the setTimeout maximum).
      "grpc.client_idle_timeout_ms": 0x7fffffff,
    });
    this.priority = opts.priority;
    this.auth = opts.auth;
  }

  /** Connects (waits until the channel is ready); rejects with UNAVAILABLE when it cannot. */
  static async open(target: string, secure: boolean, opts: OpenOptions): Promise<GrpcTransport> {
    const t = new GrpcTransport(target, secure, opts);
    const channel = t.client.getChannel();
    try {
      await whenReady(channel, Date.now() + opts.connectTimeoutMs);
    } catch (e) {
      t.client.close();
      throw unavailable(`connect grpc://${target}`, e);
    }
    // Leaving READY (socket closed, GOAWAY) is losing the connection: the Channel above opens a new
    // one for new calls. Calls in flight are left to finish (after GOAWAY they do; on a dead socket
    // grpc-js fails them), then the channel closes.
    channel.watchConnectivityState(grpc.connectivityState.READY, Infinity, () => {
      if (t.closedError) return;
      t.closedError = connectionLost(`gRPC connection to ${target} lost`);
      t.closeWhenDrained();
      opts.lost(t.closedError);
    });
    return t;
  }

  private metadata(extra: Record<string, string>): grpc.Metadata {
    const md = new grpc.Metadata();
    if (this.priority) md.set(PRIORITY_HEADER, this.priority);
    for (const k in extra) md.set(k, extra[k]!);
    return md;
  }

  async unary(method: MethodInfo, request: object, attempt: Attempt): Promise<any> {
    if (this.closedError) throw this.closedError;
    const signal = attempt.signal;
    if (signal?.aborted) throw cancelled(signal);
    const headers = this.auth.dynamic ? await this.auth.dynamic() : this.auth.fixed;
    if (this.closedError) throw this.closedError;
    const c = codecs(method);
    const options: grpc.CallOptions = {};
    if (attempt.deadline > 0) {
      if (attempt.deadline <= Date.now()) throw deadlineExceeded();
      options.deadline = attempt.deadline;
    }
    return new Promise((resolve, reject) => {
      let aborted = false;
      const onAbort = () => {
        aborted = true;
        call.cancel(); // RST_STREAM CANCEL: the server cancels its side
      };
      const call = this.client.makeUnaryRequest(method.path, c.serialize, c.deserialize, request, this.metadata(headers), options, (err, res) => {
        this.calls.delete(call);
        this.closeWhenDrained();
        signal?.removeEventListener("abort", onAbort);
        if (aborted) reject(cancelled(signal));
        else if (err) reject(this.shut ? this.closedError! : toPrismError(err));
        else resolve(res);
      });
      this.calls.add(call);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  serverStream(method: MethodInfo, request: object, sink: StreamSink): StreamHandle {
    if (this.closedError) {
      const err = this.closedError;
      queueMicrotask(() => sink.onError(err));
      return { cancel() {} };
    }
    let cancelled = false;
    let call: grpc.ClientReadableStream<unknown> | undefined;
    const start = (headers: Record<string, string>) => {
      if (cancelled) return;
      if (this.closedError) return sink.onError(this.closedError);
      call = this.startStream(method, request, sink, headers, () => cancelled);
    };
    if (this.auth.dynamic) {
      this.auth.dynamic().then(start, (e: unknown) => {
        if (!cancelled) sink.onError(new PrismError(Code.UNAUTHENTICATED, `token: ${(e as Error).message ?? String(e)}`));
      });
    } else start(this.auth.fixed);
    return {
      cancel() {
        if (cancelled) return;
        cancelled = true;
        call?.cancel();
      },
    };
  }

  private startStream(method: MethodInfo, request: object, sink: StreamSink, headers: Record<string, string>, isCancelled: () => boolean): grpc.ClientReadableStream<unknown> {
    const c = codecs(method);
    const call = this.client.makeServerStreamRequest(method.path, c.serialize, c.deserialize, request, this.metadata(headers), {});
    this.calls.add(call);
    let finished = false;
    const finish = () => {
      finished = true;
      this.calls.delete(call);
      this.closeWhenDrained();
    };
    // The server sends response headers once the subscription is live.
    call.on("metadata", () => {
      if (!isCancelled()) sink.onReady();
    });
    call.on("data", (msg: unknown) => {
      if (!isCancelled()) sink.onMessage(msg);
    });
    call.on("error", (err: grpc.ServiceError) => {
      if (finished) return;
      finish();
      if (!isCancelled()) sink.onError(this.shut ? this.closedError! : toPrismError(err));
    });
    call.on("status", (status: grpc.StatusObject) => {
      if (finished) return;
      finish();
      if (isCancelled()) return;
      if (status.code === grpc.status.OK) sink.onEnd();
      else sink.onError(this.shut ? this.closedError! : toPrismError(Object.assign(new Error(status.details), status) as grpc.ServiceError));
    });
    return call;
  }

  idle(): boolean {
    return this.calls.size === 0;
  }

  /** Closes the channel; calls still in flight end with UNAVAILABLE (not with grpc-js' CANCELLED). */
  async close(): Promise<void> {
    if (this.shut) return;
    this.shut = true;
    this.closedError = unavailable("connection closed by the client");
    for (const call of this.calls) call.cancel();
    this.calls.clear();
    this.client.close();
  }

  /** After the connection was lost: close the channel once its last call is over. */
  private closeWhenDrained(): void {
    if (this.closedError && !this.shut && this.calls.size === 0) {
      this.shut = true;
      this.client.close();
    }
  }
}
