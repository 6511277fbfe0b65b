/**
 * Reading one partition at an exact offset with a Fetch request to its
 * leader (see link.ts for why not the group consumer). Partition 0: every
 * Prism topic has exactly one partition.
 */
import type { FetchedMessage, KafkaLink } from "./link.js";

const READ_COMMITTED = 1;
const MAX_BYTES = 1024 * 1024;
/** Errors after which fresh metadata (a new leader, a new topic) makes the retry succeed. */
const STALE = new Set(["NOT_LEADER_FOR_PARTITION", "LEADER_NOT_AVAILABLE", "UNKNOWN_TOPIC_OR_PARTITION", "BROKER_NOT_AVAILABLE", "REPLICA_NOT_AVAILABLE", "FENCED_LEADER_EPOCH", "NOT_LEADER_OR_FOLLOWER"]);

export interface Fetched {
  /** Records at offsets >= the requested one, data records only. */
  messages: FetchedMessage[];
  /** The offset the next record will get (-1 when unknown). */
  highWatermark: number;
  /** The requested offset is below the log start (retention removed it) or past the end. */
  outOfRange: boolean;
}

function isStale(e: unknown): boolean {
  const err = e as { type?: string; name?: string };
  return (err.type !== undefined && STALE.has(err.type)) || err.name === "KafkaJSBrokerNotFound" || err.name === "KafkaJSTopicMetadataNotLoaded";
}

async function once(link: KafkaLink, topic: string, offset: number, maxWaitMs: number): Promise<Fetched> {
  const leaders = link.cluster.findLeaderForPartitions(topic, [0]);
  const nodeId = Object.keys(leaders)[0];
  if (nodeId === undefined) throw Object.assign(new Error(`no leader for ${topic}`), { type: "LEADER_NOT_AVAILABLE" });
  const broker = await link.cluster.findBroker({ nodeId });
  const { responses } = await broker.fetch({
    maxWaitTime: maxWaitMs,
    minBytes: 1,
    maxBytes: MAX_BYTES,
    isolationLevel: READ_COMMITTED,
    topics: [{ topic, partitions: [{ partition: 0, fetchOffset: String(offset), maxBytes: MAX_BYTES }] }],
  });
  const part = responses[0]?.partitions.find((p) => p.partition === 0);
  if (!part) return { messages: [], highWatermark: -1, outOfRange: false };
  // A compressed batch may start before the requested offset; control records are not data.
  const messages = part.messages.filter((m) => !m.isControlRecord && Number(m.offset) >= offset);
  return { messages, highWatermark: Number(part.highWatermark), outOfRange: false };
}

export async function fetchAt(link: KafkaLink, topic: string, offset: number, maxWaitMs: number): Promise<Fetched> {
  try {
    return await once(link, topic, offset, maxWaitMs);
  } catch (e) {
    if ((e as { type?: string }).type === "OFFSET_OUT_OF_RANGE") return { messages: [], highWatermark: -1, outOfRange: true };
    if (!isStale(e)) throw link.noteFailure(e);
  }
  try {
    await link.cluster.refreshMetadata();
    return await once(link, topic, offset, maxWaitMs);
  } catch (e) {
    if ((e as { type?: string }).type === "OFFSET_OUT_OF_RANGE") return { messages: [], highWatermark: -1, outOfRange: true };
    throw link.noteFailure(e);
  }
}

/** [log start, high watermark) of partition 0. */
export async function bounds(link: KafkaLink, topic: string): Promise<{ low: number; high: number }> {
  const offsets = await link.admin.fetchTopicOffsets(topic).catch((e) => {
    throw link.noteFailure(e);
  });
  const p = offsets.find((o) => o.partition === 0);
  return { low: Number(p?.low ?? 0), high: Number(p?.high ?? 0) };
}
