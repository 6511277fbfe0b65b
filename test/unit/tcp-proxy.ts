/**
 * A TCP proxy on an ephemeral port, for outage tests: `cut()` drops every
 * connection and refuses new ones (the backend looks down), `restore()`
 * accepts again. `holdReplies()` stops forwarding the server's bytes (a slow
 * backend) until `releaseReplies()`; `sent` counts what clients sent. The real
 * server keeps running, so nothing else is disturbed.
 */
import { createServer, connect, type Server, type Socket } from "node:net";

export class TcpProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly upstreams = new Set<Socket>();
  private holding = false;
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
      client.on("data", (c: Buffer) => (this.sent += c.toString("latin1")));
      client.pipe(upstream).pipe(client);
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

  releaseReplies(): void {
    this.holding = false;
    for (const u of this.upstreams) u.resume();
  }

  /** Listens again on the same port. */
  restore(): Promise<number> {
    return this.start(this.port);
  }

  close(): Promise<void> {
    return this.cut();
  }
}
