/**
 * The `mqtt` backend (mqtt.js, MQTT 5): PubSub only, with wildcards.
 * Topic mapping in topics.ts, delivery rules in pubsub.ts, limits in README.md.
 *
 * create() never throws: mqtt.js connects in the background and reconnects
 * every reconnect_period_ms; calls made while disconnected fail at once with
 * UNAVAILABLE (only the very first connect after start is awaited, bounded
 * by connect_timeout_ms).
 */
import { randomBytes } from "node:crypto";
import { connect, type MqttClient } from "mqtt";
import type { MqttOptions } from "./options.js";
import { displayUrl } from "../../core/redact.js";
import { errors } from "../../core/errors.js";
import type { BackendDriver, BackendHealth, BackendInstance, DriverContext, NamespaceLimits, NamespaceStores } from "../driver.js";
import { MqttHub, MqttPubSub } from "./pubsub.js";

const MiB = 1024 * 1024;

export type { MqttOptions };

function display(url: string): string {
  return displayUrl(url);
}

class MqttInstance implements BackendInstance {
  private readonly client: MqttClient;
  private readonly hub: MqttHub;
  private first: Promise<void> | null;
  private lastError = "";
  private closed: Promise<void> | undefined;

  constructor(
    private readonly opts: MqttOptions,
    private readonly ctx: DriverContext,
  ) {
    const name = display(opts.url);
    this.client = connect(opts.url, {
      protocolVersion: 5,
      clientId: `prism-${randomBytes(8).toString("hex")}`,
      clean: true,
      username: opts.username,
      password: opts.password,
      connectTimeout: opts.connect_timeout_ms,
      reconnectPeriod: opts.reconnect_period_ms,
      // Subscriptions end on disconnect (see pubsub.ts); nothing is replayed or queued offline.
      resubscribe: false,
      queueQoSZero: false,
    });
    this.first = new Promise<void>((resolve) => {
      const done = () => {
        this.first = null;
        this.client.off("connect", done).off("close", done).off("end", done);
        resolve();
      };
      this.client.on("connect", done).on("close", done).on("end", done);
    });
    this.client.on("error", (e: Error) => {
      if (e.message !== this.lastError) ctx.log("warn", `${name}: ${e.message}`);
      this.lastError = e.message;
    });
    this.client.on("connect", () => {
      if (this.lastError) ctx.log("info", `${name}: connected again`);
      this.lastError = "";
    });
    this.client.on("offline", () => {
      if (!this.lastError) this.lastError = "disconnected";
    });
    this.hub = new MqttHub(this.client, this.ensureConnected);
  }

  /** Resolves when connected; UNAVAILABLE otherwise (waits only for the very first connect). */
  private readonly ensureConnected = (): void | Promise<void> => {
    if (this.client.connected) return;
    return this.waitFirst();
  };

  private async waitFirst(): Promise<void> {
    if (this.first) await this.first;
    if (this.client.connected) return;
    throw errors.unavailable(`mqtt ${display(this.opts.url)} is not connected${this.lastError ? ` (${this.lastError})` : ""}`);
  }

  namespace(name: string, _limits: NamespaceLimits): NamespaceStores {
    const pubsub = new MqttPubSub(this.client, this.hub, this.ensureConnected, this.opts.prefix, name, this.ctx.clock);
    return { pubsub, close: () => pubsub.closeAll() };
  }

  async health(): Promise<BackendHealth> {
    const t0 = performance.now();
    try {
      await this.ensureConnected();
      return { ok: true, latencyMs: performance.now() - t0, message: "connected" };
    } catch (e) {
      return { ok: false, latencyMs: performance.now() - t0, message: (e as Error).message };
    }
  }

  close(): Promise<void> {
    return (this.closed ??= (async () => {
      this.hub.endAll(errors.unavailable("mqtt backend closed"));
      await this.client.endAsync(true).catch(() => {});
    })());
  }
}

export const driver: BackendDriver<MqttOptions> = {
  type: "mqtt",
  description: "MQTT 5 (mqtt.js, e.g. Mosquitto): PubSub with wildcards, QoS 1",
  interfaces: ["pubsub_basic", "pubsub_wildcards"],
  properties: {
    // QoS 1 to the broker; a subscriber that is not connected misses messages (no persistent session). 256 MB: the protocol's ceiling.
    pubsub: { durable: false, ordering: true, delivery: ["at-least-once"], maxValueBytes: 256 * MiB },
  },
  create: (options, ctx) => new MqttInstance(options, ctx),
};
