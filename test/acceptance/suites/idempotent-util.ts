/**
 * Keyed writes for the *_idempotent suites, through the SDK's generic `call`
 * (the request field `idempotency_key`), so the suites check the wire
 * contract whatever the SDK's option is named.
 */
import type { SuiteContext } from "../harness.js";
import { bytes } from "../util.js";

const b = (v: string | Uint8Array): Uint8Array => (typeof v === "string" ? bytes(v) : v);

export const keyed = {
  async set(ctx: SuiteContext, ns: string, key: string, value: string, idempotencyKey: string, extra: Record<string, unknown> = {}): Promise<number> {
    const r = await ctx.client.call("KeyValue", "Set", { namespace: ns, key, value: b(value), idempotencyKey, ...extra });
    return Number(r.version);
  },
  async delete(ctx: SuiteContext, ns: string, key: string, idempotencyKey: string): Promise<boolean> {
    const r = await ctx.client.call("KeyValue", "Delete", { namespace: ns, key, idempotencyKey });
    return Boolean(r.deleted);
  },
  async publish(ctx: SuiteContext, ns: string, topic: string, payload: string, idempotencyKey: string, attributes: Record<string, string> = {}): Promise<string> {
    const r = await ctx.client.call("PubSub", "Publish", { namespace: ns, topic, payload: b(payload), attributes, idempotencyKey });
    return String(r.messageId);
  },
  async enqueue(ctx: SuiteContext, ns: string, queue: string, payload: string, idempotencyKey: string, extra: Record<string, unknown> = {}): Promise<string> {
    const r = await ctx.client.call("Queue", "Enqueue", { namespace: ns, queue, payload: b(payload), idempotencyKey, ...extra });
    return String(r.messageId);
  },
  async append(ctx: SuiteContext, ns: string, stream: string, payload: string, idempotencyKey: string, attributes: Record<string, string> = {}): Promise<number> {
    const r = await ctx.client.call("Stream", "Append", { namespace: ns, stream, payload: b(payload), attributes, idempotencyKey });
    return Number(r.offset);
  },
};

/** The reason a reused key with another request is refused with (FAILED_PRECONDITION). */
export const REUSED = "PRISM_ERR_IDEMPOTENCY_KEY_REUSED";
export const FAILED_PRECONDITION = 9;
/** The window the expiry cases configure (seconds), and how long they move time past it (ms). */
export const SHORT_WINDOW_S = 1;
export const PAST_WINDOW_MS = 1200;

/**
 * After the window: calls `retry` until its result differs from `first` (the
 * backend forgot the key), with a generous bound, so a backend that forgets
 * a little late (JetStream purges its duplicate ids on a timer) does not make
 * the case depend on timing. A replay has no effect, so the polls add none.
 */
export async function untilForgotten<T>(first: T, retry: () => Promise<T>, boundMs = 10_000): Promise<T> {
  const end = Date.now() + boundMs;
  for (;;) {
    const r = await retry();
    if (r !== first || Date.now() > end) return r;
    await new Promise((res) => setTimeout(res, 100));
  }
}
