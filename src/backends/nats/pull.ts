/**
 * Raw JetStream pull requests (`$JS.API.CONSUMER.MSG.NEXT`), used by queues,
 * consumer groups and reads. The client library's fetch() always waits for its
 * whole batch or its expiry; Prism needs "what is there now" (no_wait) and
 * "the first record within block ms", so the request is made by hand.
 *
 * Delivered messages carry their metadata in the reply subject
 * `$JS.ACK.<stream>.<consumer>.<deliveries>.<stream seq>.<consumer seq>.<ts ns>.<pending>`
 * (or the v2 form with domain and account hash in front), parsed here.
 */
import { createInbox, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { errors } from "../../core/errors.js";

export interface Delivered {
  msg: Msg;
  /** Stream sequence. */
  seq: number;
  /** How many times the consumer delivered it (1 on first delivery). */
  deliveries: number;
  /** Server time the message was stored, ms. */
  timestampMs: number;
  /** The ack subject. */
  reply: string;
}

/** Parses a JetStream ack subject; null when it is not one. */
export function parseAckSubject(reply: string): { deliveries: number; seq: number; timestampMs: number } | null {
  const t = reply.split(".");
  if (t[0] !== "$JS" || t[1] !== "ACK") return null;
  // v1: $JS.ACK.stream.consumer.dc.sseq.cseq.ts.pending (9 tokens); v2 adds domain + account hash (and a token at the end).
  const base = t.length === 9 ? 4 : t.length >= 11 ? 6 : -1;
  if (base < 0) return null;
  return { deliveries: Number(t[base]), seq: Number(t[base + 1]), timestampMs: Math.floor(Number(t[base + 3]) / 1e6) };
}

/** The ack subject for a stream sequence, for acks from a process that did not receive the message (acks are keyed by stream sequence; consumer sequence 0 keeps the ack floor untouched). */
export function ackSubjectFor(stream: string, consumer: string, seq: number): string {
  return `$JS.ACK.${stream}.${consumer}.1.${seq}.0.0.0`;
}

/** Thrown when the consumer (or its stream) does not exist: the caller re-creates it and retries once. */
export class ConsumerMissing extends Error {}

const SAFETY_MS = 2000;

class PullRequest {
  readonly got: Delivered[] = [];
  private sub: Subscription | undefined;
  private timer: NodeJS.Timeout | undefined;
  private resolve!: (d: Delivered[]) => void;
  private reject!: (e: Error) => void;
  private done = false;
  readonly promise: Promise<Delivered[]>;

  constructor(
    private readonly batch: number,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.promise = new Promise((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
  }

  start(nc: NatsConnection, api: string, body: string, waitMs: number): void {
    const inbox = createInbox();
    this.sub = nc.subscribe(inbox, { callback: (err, msg) => this.onMsg(err, msg) });
    // The connection closed (instance closing): answer with what arrived.
    void this.sub.closed.then(() => this.finish());
    this.timer = setTimeout(() => this.finish(), waitMs + SAFETY_MS);
    if (this.signal) {
      if (this.signal.aborted) return this.finish();
      this.signal.addEventListener("abort", () => this.finish(), { once: true });
    }
    nc.publish(api, body, { reply: inbox });
  }

  private onMsg(err: Error | null, msg: Msg): void {
    if (this.done) return;
    if (err) return this.fail(errors.unavailable("nats pull", err));
    const info = msg.reply ? parseAckSubject(msg.reply) : null;
    if (!info) {
      // A status message ends the request: 404 no messages, 408 expired/no_wait done, 409 limits; 503 no such consumer.
      const code = msg.headers?.code ?? 0;
      if (code === 503) return this.fail(new ConsumerMissing("no responders"));
      if (code === 409 && /deleted/i.test(msg.headers?.description ?? "")) return this.fail(new ConsumerMissing("consumer deleted"));
      if (code === 100) return; // idle heartbeat
      return this.finish();
    }
    this.got.push({ msg, seq: info.seq, deliveries: info.deliveries, timestampMs: info.timestampMs, reply: msg.reply! });
    if (this.got.length >= this.batch) this.finish();
  }

  private cleanup(): void {
    this.done = true;
    clearTimeout(this.timer);
    this.sub?.unsubscribe();
  }

  private finish(): void {
    if (this.done) return;
    this.cleanup();
    this.resolve(this.got);
  }

  private fail(e: Error): void {
    if (this.done) return;
    this.cleanup();
    this.reject(e);
  }
}

/**
 * One pull request for up to `batch` messages. waitMs 0: only what is
 * available now (no_wait); otherwise the server holds the request up to
 * waitMs and answers as soon as the batch is full. Resolves early (with what
 * arrived) when `signal` aborts.
 */
export function pull(nc: NatsConnection, stream: string, consumer: string, batch: number, waitMs: number, signal?: AbortSignal): Promise<Delivered[]> {
  const req = new PullRequest(batch, signal);
  const body = waitMs > 0 ? `{"batch":${batch},"expires":${waitMs * 1e6}}` : `{"batch":${batch},"no_wait":true}`;
  req.start(nc, `$JS.API.CONSUMER.MSG.NEXT.${stream}.${consumer}`, body, waitMs);
  return req.promise;
}

/**
 * Up to `max` messages: what is available now; when none and waitMs > 0, the
 * first one to arrive within waitMs, topped up with what is available then.
 */
export async function pullUpTo(nc: NatsConnection, stream: string, consumer: string, max: number, waitMs: number, signal?: AbortSignal): Promise<Delivered[]> {
  const now = await pull(nc, stream, consumer, max, 0);
  if (now.length || waitMs <= 0 || signal?.aborted) return now;
  const first = await pull(nc, stream, consumer, 1, waitMs, signal);
  if (!first.length || max === 1) return first;
  return first.concat(await pull(nc, stream, consumer, max - 1, 0));
}
