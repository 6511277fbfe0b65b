import type { Backpressure } from "../shedding/backpressure.js";
import type { ConnectionLimits } from "./limits.js";
import type { BrowserPolicy } from "./browser.js";
import type { TlsMaterial } from "./tls.js";

/** What every ingress gets and returns. */
export interface IngressOptions {
  host: string;
  /** 0: an ephemeral port (tests). */
  port: number;
  /** Largest frame / gRPC message / HTTP body accepted, in bytes. */
  maxMessageBytes: number;
  log: (level: "info" | "warn" | "error", msg: string) => void;
  /** What to do with a subscriber that does not keep up (default: disconnect it). src/shedding/backpressure.ts */
  backpressure?: Backpressure;
  /** GET /metrics (Prometheus text); absent: no such route. src/observability */
  metrics?: () => Promise<{ contentType: string; body: string }>;
  /** Timeouts, buffered-byte and per-connection limits (src/ingress/limits.ts); absent: the defaults. */
  limits?: ConnectionLimits;
  /** Origin / Host checks of the HTTP/WebSocket port (src/ingress/browser.ts); absent: nothing allowed but no Origin and localhost. */
  browser?: BrowserPolicy;
  /** server.tls (src/ingress/tls.ts): serve TLS (and verify client certificates) with it; absent: plaintext. */
  tls?: TlsMaterial;
}

export interface Listening {
  /** The bound port (useful when 0 was asked). */
  readonly port: number;
  /** Stop accepting, end open streams, close connections. */
  close(): Promise<void>;
}
