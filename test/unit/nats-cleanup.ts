/** Test helper: deletes every JetStream stream (queues, streams, KV buckets) a test run created under its prefix. */
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";

export async function cleanupPrefix(servers: string, prefix: string): Promise<number> {
  const nc = await connect({ servers, timeout: 2000 });
  try {
    const jsm = await jetstreamManager(nc);
    const mine: string[] = [];
    for await (const name of jsm.streams.names()) {
      if (name.startsWith(`${prefix}_`) || name.startsWith(`KV_${prefix}_`)) mine.push(name);
    }
    await Promise.all(mine.map((n) => jsm.streams.delete(n).catch(() => false)));
    return mine.length;
  } finally {
    await nc.close();
  }
}
