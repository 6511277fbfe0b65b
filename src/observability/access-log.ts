/**
 * The access log: one JSON line per (sampled) call, written after the
 * response left (so it carries the response size).
 *
 * Fields: msg "access", ns, method, code (gRPC code name), latency_ms,
 * backend_ms (when the call reached a backend), ingress, peer, trace_id,
 * bytes_in, bytes_out and key (single-key calls, unless the namespace sets
 * `observability.log_keys: false`). Values are never logged: only these
 * fields are read from the request.
 */
import type { Logger } from "pino";
import { codeName } from "../core/errors.js";

/** Longest key written (longer ones are cut and marked with "…"). */
const MAX_KEY_CHARS = 256;

export interface AccessRecord {
  namespace: string;
  method: string;
  code: number;
  latencyMs: number;
  /** -1: no backend call. */
  backendMs: number;
  ingress: string;
  peer: string;
  traceId: string | undefined;
  bytesIn: number;
  bytesOut: number;
  key: string | undefined;
}

export class AccessLog {
  constructor(
    private readonly logger: Logger,
    /** 0..1 */
    private readonly sample: number,
    private readonly flushFn: () => void = () => {},
  ) {}

  /** Whether this call is logged (decided once per call). */
  sampled(): boolean {
    return this.sample >= 1 || (this.sample > 0 && Math.random() < this.sample);
  }

  write(r: AccessRecord): void {
    const line: Record<string, unknown> = {
      ns: r.namespace,
      method: r.method,
      code: codeName[r.code] ?? r.code,
      latency_ms: Math.round(r.latencyMs * 1000) / 1000,
      ingress: r.ingress,
      peer: r.peer,
      bytes_in: r.bytesIn,
      bytes_out: r.bytesOut,
    };
    if (r.backendMs >= 0) line.backend_ms = Math.round(r.backendMs * 1000) / 1000;
    if (r.traceId !== undefined) line.trace_id = r.traceId;
    if (r.key !== undefined) line.key = r.key.length > MAX_KEY_CHARS ? `${r.key.slice(0, MAX_KEY_CHARS)}…` : r.key;
    this.logger.info(line, "access");
  }

  flush(): void {
    this.flushFn();
  }
}
