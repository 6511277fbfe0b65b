/**
 * HTTP/JSON transport: `POST /v1/{Service}/{Method}` with proto3 JSON for
 * unary calls (global fetch), Server-Sent Events
 * (`GET /v1/ns/{ns}/subscribe?pattern=`) for subscriptions.
 */
import { prism } from "./gen/prism.js";
import { Code, PrismError, cancelled, codeFromHttpStatus, connectionLost, deadlineExceeded, unavailable } from "./errors.js";
import type { MethodInfo } from "./methods.js";
import { type Attempt, type Auth, type OpenOptions, type StreamHandle, type StreamSink, type Transport } from "./transport.js";
import { fromStruct } from "./convert.js";

/** Request fields of type google.protobuf.Struct, by method name. */
const STRUCT_FIELDS: Record<string, string> = { ApplyNamespace: "namespace", ApplyBackend: "backend" };

/** proto3 JSON for requests: base64 bytes, numbers for 64-bit ints. */
const TO_JSON = { longs: Number, bytes: String } as const;
/** Header carrying the per-call deadline to the server (the client enforces it too). */
const TIMEOUT_HEADER = "x-prism-timeout-ms";
/** Header carrying the call priority (gRPC uses `prism-priority` metadata). */
const PRIORITY_HEADER = "x-prism-priority";
/** Header carrying a write's idempotency key (gRPC and WebSocket use the request field). */
const IDEMPOTENCY_HEADER = "idempotency-key";

/** An error response body `{"error":{code,status,reason,message}}` → PrismError. */
export function httpError(status: number, text: string): PrismError {
  try {
    const e = (JSON.parse(text) as { error?: { code?: number; reason?: string; message?: string } }).error;
    if (e && typeof e === "object") {
      return new PrismError(typeof e.code === "number" ? e.code : codeFromHttpStatus(status), e.message ?? `HTTP ${status}`, e.reason ?? "");
    }
  } catch {
    // not JSON: fall through
  }
  return new PrismError(codeFromHttpStatus(status), `HTTP ${status}${text ? `: ${text.slice(0, 200)}` : ""}`);
}

class DeadlineError extends Error {}
class CancelError extends Error {}

/**
 * @internal The HTTP/JSON transport. HTTP has no connection of its own: a
 * request failing at the network level (refused, reset) counts as the
 * connection being lost: the transport then fails its other requests the
 * same way and the Channel probes `/healthz` until the server is back.
 */
export class HttpTransport implements Transport {
  private readonly base: string;
  private readonly headers: Record<string, string>;
  private readonly auth: Auth;
  private readonly lost: (err: PrismError) => void;
  /** In-flight requests, so close() can abort them. */
  private readonly inflight = new Set<AbortController>();
  private closedError: PrismError | undefined;

  private constructor(base: string, opts: OpenOptions) {
    this.base = base.replace(/\/+$/, "");
    this.headers = { "content-type": "application/json", accept: "application/json" };
    if (opts.priority) this.headers[PRIORITY_HEADER] = opts.priority;
    Object.assign(this.headers, opts.auth.fixed);
    this.auth = opts.auth;
    this.lost = opts.lost;
  }

  /** Checks that the server answers (`GET /healthz`); rejects with UNAVAILABLE when it does not. */
  static async open(base: string, opts: OpenOptions): Promise<HttpTransport> {
    const t = new HttpTransport(base, opts);
    try {
      const res = await fetch(`${t.base}/healthz`, { signal: AbortSignal.timeout(opts.connectTimeoutMs) });
      await res.arrayBuffer(); // any HTTP answer means reachable (503 while degraded too)
    } catch (e) {
      throw unavailable(`connect ${t.base}`, e);
    }
    return t;
  }

  /** The headers of one request: fixed ones, or with a fresh token. */
  private async requestHeaders(): Promise<Record<string, string>> {
    return this.auth.dynamic ? { ...this.headers, ...(await this.auth.dynamic()) } : this.headers;
  }

  /** A network failure: this "connection" is gone; everything in flight fails as lost. */
  private markLost(what: string, cause: unknown): PrismError {
    if (this.closedError) return this.closedError;
    const err = connectionLost(what, cause);
    this.closedError = err;
    for (const ac of this.inflight) ac.abort();
    this.inflight.clear();
    this.lost(err);
    return err;
  }

  async unary(method: MethodInfo, request: object, attempt: Attempt): Promise<any> {
    if (this.closedError) throw this.closedError;
    const signal = attempt.signal;
    if (signal?.aborted) throw cancelled(signal);
    const type = method.requestType;
    let body: string;
    let key = "";
    try {
      const json = type.toObject(type.fromObject(request as Record<string, unknown>), TO_JSON);
      // proto3 JSON writes a google.protobuf.Struct as the plain object (Admin entries).
      const structField = STRUCT_FIELDS[method.name];
      if (structField && json[structField]) json[structField] = fromStruct(json[structField]);
      if (typeof json.idempotencyKey === "string") {
        key = json.idempotencyKey;
        delete json.idempotencyKey;
      }
      body = JSON.stringify(json);
    } catch (e) {
      throw new PrismError(Code.INVALID_ARGUMENT, `${method.service}/${method.name}: cannot encode request: ${(e as Error).message}`);
    }
    let timeout = 0;
    if (attempt.deadline > 0) {
      timeout = attempt.deadline - Date.now();
      if (timeout <= 0) throw deadlineExceeded();
    }
    let headers = await this.requestHeaders();
    if (timeout > 0 || key) {
      headers = { ...headers };
      if (timeout > 0) headers[TIMEOUT_HEADER] = String(timeout);
      if (key) headers[IDEMPOTENCY_HEADER] = key;
    }
    const ac = new AbortController();
    const timer = timeout > 0 ? setTimeout(() => ac.abort(new DeadlineError()), timeout) : undefined;
    const onAbort = () => ac.abort(new CancelError()); // closing the request: the server cancels the call
    signal?.addEventListener("abort", onAbort, { once: true });
    this.inflight.add(ac);
    let status: number;
    let text: string;
    try {
      const res = await fetch(`${this.base}/v1/${method.service}/${method.name}`, { method: "POST", headers, body, signal: ac.signal });
      status = res.status;
      text = await res.text();
    } catch (e) {
      if (ac.signal.reason instanceof CancelError) throw cancelled(signal);
      if (ac.signal.reason instanceof DeadlineError) throw deadlineExceeded();
      if (this.closedError) throw this.closedError;
      throw this.markLost(`${method.service}/${method.name}`, e);
    } finally {
      if (timer) clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      this.inflight.delete(ac);
    }
    if (status < 200 || status >= 300) throw httpError(status, text);
    try {
      return method.responseType.fromObject(JSON.parse(text) as Record<string, unknown>);
    } catch (e) {
      throw new PrismError(Code.INTERNAL, `${method.service}/${method.name}: malformed response: ${(e as Error).message}`);
    }
  }

  serverStream(method: MethodInfo, request: object, sink: StreamSink): StreamHandle {
    const handle = { cancelled: false, ac: new AbortController(), cancel() {} };
    handle.cancel = () => {
      handle.cancelled = true;
      handle.ac.abort();
    };
    if (this.closedError || method.name !== "Subscribe") {
      const err = this.closedError ?? new PrismError(Code.UNIMPLEMENTED, `${method.service}/${method.name}: not a streaming method over HTTP`);
      queueMicrotask(() => sink.onError(err));
      return handle;
    }
    const r = request as { namespace?: string; pattern?: string; identity?: string };
    const ns = encodeURIComponent(r.namespace ?? "");
    const url =
      method.service === "PubSub"
        ? `${this.base}/v1/ns/${ns}/subscribe?pattern=${encodeURIComponent(r.pattern ?? "")}`
        : `${this.base}/v1/ns/${ns}/members/${encodeURIComponent(r.identity ?? "")}/subscribe`;
    void this.runSse(url, sink, handle);
    return handle;
  }

  private async runSse(url: string, sink: StreamSink, h: { cancelled: boolean; ac: AbortController }): Promise<void> {
    this.inflight.add(h.ac);
    try {
      const headers: Record<string, string> = { ...(await this.requestHeaders()), accept: "text/event-stream" };
      delete headers["content-type"];
      if (h.cancelled) return;
      const res = await fetch(url, { headers, signal: h.ac.signal });
      if (!res.ok || !res.body) {
        const text = await res.text();
        if (!h.cancelled) sink.onError(httpError(res.status, text));
        return;
      }
      const ended = await readSse(res.body, (event, data) => {
        if (h.cancelled) return false;
        switch (event) {
          case "ready":
            sink.onReady();
            return true;
          case "message": {
            let msg: unknown;
            try {
              msg = prism.v1.PubSubMessage.fromObject(JSON.parse(data) as Record<string, unknown>);
            } catch (e) {
              sink.onError(new PrismError(Code.INTERNAL, `malformed SSE message: ${(e as Error).message}`));
              return false;
            }
            sink.onMessage(msg);
            return true;
          }
          case "error":
            sink.onError(httpError(500, data));
            return false;
          default:
            return true; // unknown events (keep-alives) are ignored
        }
      });
      if (ended) h.ac.abort(); // stop reading after an error event
      else if (!h.cancelled) sink.onEnd();
    } catch (e) {
      if (!h.cancelled) sink.onError(this.closedError ?? this.markLost("subscribe", e));
    } finally {
      this.inflight.delete(h.ac);
    }
  }

  idle(): boolean {
    return this.inflight.size === 0;
  }

  async close(): Promise<void> {
    if (this.closedError) return;
    this.closedError = unavailable("connection closed by the client");
    for (const ac of this.inflight) ac.abort();
    this.inflight.clear();
  }
}

/**
 * Reads an SSE body, calling `onEvent(event, data)` per event until it returns
 * false (→ resolves true) or the body ends (→ resolves false).
 */
async function readSse(body: ReadableStream<Uint8Array>, onEvent: (event: string, data: string) => boolean): Promise<boolean> {
  const decoder = new TextDecoder();
  let buf = "";
  let event = "";
  let data: string[] = [];
  for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let start = 0;
    for (;;) {
      const nl = buf.indexOf("\n", start);
      if (nl < 0) break;
      let line = buf.slice(start, nl);
      start = nl + 1;
      if (line.endsWith("\r")) line = line.slice(0, -1);
      if (line === "") {
        if (data.length || event) {
          const keep = onEvent(event || "message", data.join("\n"));
          event = "";
          data = [];
          if (!keep) return true;
        }
        continue;
      }
      if (line.startsWith(":")) continue; // comment / keep-alive
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    buf = buf.slice(start);
  }
  return false;
}
