/**
 * One dedicated connection per instance for LISTEN, shared by every
 * subscription and long poll of that instance. Connected on first use;
 * when it drops, every registration's onLost runs (PubSub subscriptions end
 * with UNAVAILABLE, long polls fall back to polling) and the next listen()
 * reconnects. Connection attempts are spaced at least a second apart while
 * the server is down, so a burst of calls does not storm it.
 */
import pg from "pg";
import { errors } from "../../core/errors.js";
import { mapError } from "./sql.js";

export type NotifyHandler = (payload: string) => void;
export type LostHandler = (err: Error) => void;

interface Channel {
  handlers: Map<NotifyHandler, LostHandler>;
  /** The connection this channel is LISTENed on, and that LISTEN. */
  on: pg.Client | undefined;
  live: Promise<unknown> | undefined;
}

const RETRY_AFTER_MS = 1_000;

export class Listener {
  private client: pg.Client | undefined;
  private connecting: Promise<pg.Client> | undefined;
  private lastFailure = 0;
  private failure: Error | undefined;
  private closed = false;
  private readonly channels = new Map<string, Channel>();

  constructor(
    private readonly config: pg.ClientConfig,
    private readonly label: string,
    private readonly log: (level: "info" | "warn" | "error", msg: string) => void,
  ) {}

  /**
   * Registers handler for notifications on channel (a valid unquoted
   * identifier) and resolves once LISTEN has completed on the server.
   * onLost runs at most once, when the connection drops; the registration
   * is then gone.
   */
  async listen(channel: string, handler: NotifyHandler, onLost: LostHandler): Promise<void> {
    let ch = this.channels.get(channel);
    if (!ch) this.channels.set(channel, (ch = { handlers: new Map(), on: undefined, live: undefined }));
    ch.handlers.set(handler, onLost);
    try {
      const c = await this.connect();
      if (ch.on !== c) {
        ch.on = c;
        ch.live = c.query(`LISTEN ${channel}`);
      }
      await ch.live;
    } catch (e) {
      this.unlisten(channel, handler);
      throw mapError(e, this.label);
    }
  }

  /** Removes a registration; the last one of a channel UNLISTENs it. */
  unlisten(channel: string, handler: NotifyHandler): void {
    const ch = this.channels.get(channel);
    if (!ch || !ch.handlers.delete(handler) || ch.handlers.size) return;
    this.channels.delete(channel);
    // Queued on the same connection: a later LISTEN of this channel runs after it.
    if (ch.on && ch.on === this.client) ch.on.query(`UNLISTEN ${channel}`).catch(() => {});
  }

  private connect(): Promise<pg.Client> {
    if (this.client) return Promise.resolve(this.client);
    if (this.closed) return Promise.reject(errors.unavailable(`${this.label}: closed`));
    if (this.connecting) return this.connecting;
    if (this.failure && Date.now() - this.lastFailure < RETRY_AFTER_MS) {
      return Promise.reject(errors.unavailable(this.label, this.failure));
    }
    this.connecting = this.open().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async open(): Promise<pg.Client> {
    const c = new pg.Client(this.config);
    c.on("notification", (n) => this.dispatch(n.channel, n.payload ?? ""));
    c.on("error", (e) => this.lost(c, e));
    c.on("end", () => this.lost(c, new Error("listen connection ended")));
    try {
      await c.connect();
    } catch (e) {
      this.lastFailure = Date.now();
      this.failure = e as Error;
      c.removeAllListeners();
      c.on("error", () => {});
      void c.end().catch(() => {});
      throw e;
    }
    if (this.closed) {
      void c.end().catch(() => {});
      throw errors.unavailable(`${this.label}: closed`);
    }
    if (this.failure) this.log("info", `${this.label}: listen connection restored`);
    this.failure = undefined;
    this.client = c;
    return c;
  }

  private dispatch(channel: string, payload: string): void {
    const ch = this.channels.get(channel);
    if (!ch) return;
    for (const h of ch.handlers.keys()) h(payload);
  }

  private lost(c: pg.Client, err: Error): void {
    if (this.client !== c) return;
    this.client = undefined;
    this.lastFailure = Date.now();
    this.failure = err;
    if (!this.closed) this.log("warn", `${this.label}: listen connection lost: ${err.message}`);
    c.removeAllListeners();
    c.on("error", () => {});
    void c.end().catch(() => {});
    const dropped = [...this.channels.values()];
    this.channels.clear();
    const cause = errors.unavailable(`${this.label}: notification connection lost`, err);
    for (const ch of dropped) for (const onLost of ch.handlers.values()) onLost(cause);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const c = this.client ?? (await this.connecting?.catch(() => undefined));
    if (c) {
      this.lost(c, errors.unavailable(`${this.label}: closed`));
    }
  }
}
