/**
 * The `nats` backend: PubSub on core NATS, Stream and Queue on JetStream,
 * KeyValue on JetStream KV (client: the maintained v3 line,
 * @nats-io/transport-node + @nats-io/jetstream + @nats-io/kv).
 *
 * One connection per backend instance (shared by the namespaces with the same
 * backend block), opened in the background; see connection.ts. Subject and
 * stream naming in names.ts; each primitive's mapping and limits in its file
 * and in README "NATS".
 */
import type { NatsOptions } from "./options.js";
import { displayUrl } from "../../core/redact.js";
import type { BackendDriver, BackendHealth, BackendInstance, DriverContext, NamespaceLimits, NamespaceStores } from "../driver.js";
import { Link } from "./connection.js";
import { NatsKeyValue } from "./keyvalue.js";
import { Names } from "./names.js";
import { Provisioner } from "./provision.js";
import { NatsPubSub } from "./pubsub.js";
import { LeaseTable, NatsQueue } from "./queue.js";
import { GroupTracker, NatsStream } from "./stream.js";

const MiB = 1024 * 1024;

export type { NatsOptions };

/** Server URLs without credentials, for logs. */
function display(servers: string[]): string {
  return servers.map(displayUrl).join(",");
}

class NatsInstance implements BackendInstance {
  private readonly link: Link;
  private readonly prov = new Provisioner();
  private readonly leases = new LeaseTable();
  private readonly groups = new GroupTracker();
  private closed: Promise<void> | undefined;

  constructor(
    private readonly opts: NatsOptions,
    private readonly ctx: DriverContext,
  ) {
    const servers = Array.isArray(opts.servers) ? opts.servers : [opts.servers];
    this.link = new Link(display(servers), { servers, user: opts.user, pass: opts.pass, token: opts.token }, ctx);
  }

  namespace(name: string, limits: NamespaceLimits): NamespaceStores {
    const names = new Names(this.opts.prefix, name);
    const pubsub = new NatsPubSub(this.link, names, this.ctx.clock);
    return {
      keyvalue: new NatsKeyValue(this.link, names),
      pubsub,
      queue: new NatsQueue(this.link, names, limits, this.prov, this.leases, this.ctx.clock),
      stream: new NatsStream(this.link, names, limits, this.prov, this.groups),
      close: () => pubsub.closeAll(),
    };
  }

  async health(): Promise<BackendHealth> {
    const t0 = performance.now();
    try {
      const rtt = await this.link.rtt();
      return { ok: true, latencyMs: rtt, message: "ok" };
    } catch (e) {
      return { ok: false, latencyMs: performance.now() - t0, message: (e as Error).message };
    }
  }

  close(): Promise<void> {
    return (this.closed ??= (async () => {
      this.leases.clear();
      await this.link.close();
    })());
  }
}

export const driver: BackendDriver<NatsOptions> = {
  type: "nats",
  description: "NATS (v3 client): PubSub with wildcards on core NATS, Stream with replay and consumer groups and Queue with visibility and dead-letter on JetStream, KeyValue with CAS/batch/scan on JetStream KV",
  interfaces: [
    "keyvalue_basic",
    "keyvalue_batch",
    "keyvalue_scan",
    "keyvalue_cas",
    "pubsub_basic",
    "pubsub_wildcards",
    "queue_basic",
    "queue_visibility",
    "queue_dead_letter",
    "queue_idempotent",
    "stream_basic",
    "stream_replay",
    "stream_consumer_groups",
    "stream_idempotent",
  ],
  properties: {
    // JetStream (file storage) for KeyValue, Queue and Stream; core NATS for PubSub. 1 MiB is the server's default max_payload.
    keyvalue: { durable: true, maxValueBytes: 1 * MiB },
    pubsub: { durable: false, ordering: true, delivery: ["at-most-once"], maxValueBytes: 1 * MiB },
    queue: { durable: true, delivery: ["at-least-once"], maxValueBytes: 1 * MiB },
    stream: { durable: true, ttl: true, ordering: true, delivery: ["at-least-once"], maxValueBytes: 1 * MiB },
  },
  create: (options, ctx) => new NatsInstance(options, ctx),
};
