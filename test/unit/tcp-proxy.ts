/**
 * A TCP proxy on an ephemeral port, for outage tests: `cut()` drops every
 * connection and refuses new ones (the backend looks down), `restore()`
 * accepts again. `holdReplies()` stops forwarding the server's bytes (a slow
 * backend) until `releaseReplies()`; `holdRepliesFrom(match)` does so on each
 * connection from the first reply chunk that matches (that chunk included);
 * `sent` counts what clients sent. The real server keeps running, so nothing
 * else is disturbed.
 */
import { createServer, connect, type Server, type Socket } from "node:net";
import { Transform, type TransformCallback } from "node:stream";

/** The server → client direction of one connection: passes chunks through, or holds them from a matching one on. */
class ReplyGate extends Transform {
  private stopped = false;
  private held: (() => void) | undefined;

  constructor(private readonly match: () => ((chunk: Buffer) => boolean) | undefined) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (!this.stopped && this.match()?.(chunk)) this.stopped = true;
    // Not calling back holds this chunk and, through backpressure, everything after it.
    if (this.stopped) this.held = () => cb(null, chunk);
    else cb(null, chunk);
  }

  release(): void {
    this.stopped = false;
    const h = this.held;
    this.held = undefined;
    h?.();
  }
}

export class TcpProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly upstreams = new Set<Socket>();
  private holding = false;
  private holdFrom: ((chunk: Buffer) => boolean) | undefined;
  private readonly gates = new Set<ReplyGate>();
  /** Everything clients sent through the proxy, as latin1 text (for counting commands). */
  sent = "";
  port = 0;

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  async start(port = 0): Promise<number> {
    const server = createServer((client) => {
      const upstream = connect(this.targetPort, this.targetHost);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
        s.on("error", () => {});
      }
      this.upstreams.add(upstream);
      upstream.on("close", () => this.upstreams.delete(upstream));
      if (this.holding) upstream.pause();
      const gate = new ReplyGate(() => this.holdFrom);
      this.gates.add(gate);
      upstream.on("close", () => this.gates.delete(gate));
      client.on("data", (c: Buffer) => (this.sent += c.toString("latin1")));
      client.pipe(upstream).pipe(gate).pipe(client);
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
    this.server = server;
    this.port = (server.address() as { port: number }).port;
    return this.port;
  }

  /** Drops every connection and stops listening. */
  async cut(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    for (const sock of this.sockets) sock.destroy();
    this.sockets.clear();
    if (s) await new Promise((r) => s.close(r));
  }

  /** The server's replies stay in the proxy until releaseReplies(). */
  holdReplies(): void {
    this.holding = true;
    for (const u of this.upstreams) u.pause();
  }

  /**
   * Each connection's replies flow until one chunk matches `match`; that chunk and the rest stay in the
   * proxy until releaseReplies() (e.g. a PostgreSQL connection held at its next COMMIT's answer: the
   * transaction is committed, the client does not know).
   */
  holdRepliesFrom(match: (chunk: Buffer) => boolean): void {
    this.holdFrom = match;
  }

  releaseReplies(): void {
    this.holding = false;
    this.holdFrom = undefined;
    for (const u of this.upstreams) u.resume();
    for (const g of this.gates) g.release();
  }

  /** Listens again on the same port. */
  restore(): Promise<number> {
    return this.start(this.port);
  }

  close(): Promise<void> {
    return this.cut();
  }
}
