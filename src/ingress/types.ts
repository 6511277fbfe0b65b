/** What every ingress gets and returns. */
export interface IngressOptions {
  host: string;
  /** 0: an ephemeral port (tests). */
  port: number;
  /** Largest frame / gRPC message / HTTP body accepted, in bytes. */
  maxMessageBytes: number;
  log: (level: "info" | "warn" | "error", msg: string) => void;
}

export interface Listening {
  /** The bound port (useful when 0 was asked). */
  readonly port: number;
  /** Stop accepting, end open streams, close connections. */
  close(): Promise<void>;
}
