/** Queue: leases with receipts, visibility timeouts, delays and dead-letter, above any queue driver. */
import type { prism } from "../gen/prism.js";
import { errors, toPrismError, type PrismError } from "../core/errors.js";
import type { QueueStore } from "../backends/driver.js";
import type { NamespaceRuntime } from "../router/router.js";
import type { RequestContext } from "../core/context.js";
import { count, requireAttributes, requireInterface, requireName, requireValue } from "./validate.js";
import { withTraceAttributes } from "../observability/propagate.js";
import { idempotencyToken, onceMethod, onceResult } from "./idempotency.js";

const EMPTY = new Uint8Array(0);
const MAX_WAIT_SECONDS = 20;
const MAX_DELAY_SECONDS = 15 * 60 * 60 * 24; // 15 days
/** Entries per EnqueueBatch / AckBatch call. */
export const MAX_QUEUE_BATCH = 1000;

function store(ns: NamespaceRuntime): QueueStore {
  const s = ns.stores.queue;
  if (!s) throw errors.primitiveNotServed(ns.name, "queue");
  return s;
}

function receiptOf(r: string | null | undefined): string {
  if (!r) throw errors.invalidArgument("receipt", "must not be empty");
  if (r.length > 512) throw errors.invalidArgument("receipt", "is not a receipt Prism issued");
  return r;
}

function delay(ns: NamespaceRuntime, seconds: number | null | undefined, field: string): number {
  if (!seconds) return 0;
  if (seconds > MAX_DELAY_SECONDS) throw errors.invalidArgument(field, `${seconds} exceeds the maximum of ${MAX_DELAY_SECONDS}`);
  requireInterface(ns, "queue_delayed");
  return seconds * 1000;
}

export async function enqueue(ns: NamespaceRuntime, req: prism.v1.IEnqueueRequest): Promise<prism.v1.IEnqueueResponse> {
  const queue = req.queue ?? "";
  requireName(queue, "queue");
  const payload = req.payload ?? EMPTY;
  requireValue(ns, payload, "payload");
  const delayMs = delay(ns, req.delaySeconds, "delay_seconds");
  const attributes = requireAttributes(req.attributes);
  // Hashed as the caller sent them: trace attributes differ between retries.
  const token = idempotencyToken(ns, "queue_idempotent", "enqueue", queue, req.idempotencyKey, [payload, attributes, delayMs]);
  if (token) {
    const s = store(ns);
    const once = await onceMethod(ns, "queue_idempotent", s.enqueueOnce).call(s, queue, payload, withTraceAttributes(attributes), delayMs, token);
    return { messageId: onceResult(once, token) };
  }
  return { messageId: await store(ns).enqueue(queue, payload, withTraceAttributes(attributes), delayMs) };
}

export async function dequeue(ns: NamespaceRuntime, req: prism.v1.IDequeueRequest, ctx: RequestContext): Promise<prism.v1.IDequeueResponse> {
  const queue = req.queue ?? "";
  requireName(queue, "queue");
  const maxMessages = count(req.maxMessages, 1, 100, "max_messages");
  let visibility = ns.limits.visibilityTimeoutSeconds;
  if (req.visibilityTimeoutSeconds) {
    requireInterface(ns, "queue_visibility");
    if (req.visibilityTimeoutSeconds > 12 * 3600) throw errors.invalidArgument("visibility_timeout_seconds", "at most 43200 (12 hours)");
    visibility = req.visibilityTimeoutSeconds;
  }
  const wait = req.waitSeconds ?? 0;
  if (wait > MAX_WAIT_SECONDS) throw errors.invalidArgument("wait_seconds", `${wait} exceeds the maximum of ${MAX_WAIT_SECONDS}`);
  const messages = await store(ns).dequeue(queue, {
    maxMessages,
    visibilityTimeoutMs: visibility * 1000,
    waitMs: wait * 1000,
    signal: wait > 0 ? ctx.signal : undefined,
  });
  return { messages };
}

export async function ack(ns: NamespaceRuntime, req: prism.v1.IAckRequest): Promise<prism.v1.IAckResponse> {
  const queue = req.queue ?? "";
  requireName(queue, "queue");
  await store(ns).ack(queue, receiptOf(req.receipt));
  return {};
}

export async function nack(ns: NamespaceRuntime, req: prism.v1.INackRequest): Promise<prism.v1.INackResponse> {
  const queue = req.queue ?? "";
  requireName(queue, "queue");
  const receipt = receiptOf(req.receipt);
  await store(ns).nack(queue, receipt, delay(ns, req.requeueAfterSeconds, "requeue_after_seconds"));
  return {};
}

export async function extendVisibility(ns: NamespaceRuntime, req: prism.v1.IExtendVisibilityRequest): Promise<prism.v1.IExtendVisibilityResponse> {
  requireInterface(ns, "queue_visibility");
  const queue = req.queue ?? "";
  requireName(queue, "queue");
  const receipt = receiptOf(req.receipt);
  if (!req.seconds) throw errors.invalidArgument("seconds", "must be > 0");
  if (req.seconds > 12 * 3600) throw errors.invalidArgument("seconds", "at most 43200 (12 hours)");
  await store(ns).extendVisibility!(queue, receipt, req.seconds * 1000);
  return {};
}

// ---------------------------------------------------------------- batches
// Each entry goes through the same checks and the same store call as its
// single call (so a claim-check, migration or breaker wrapper of the store
// sees it as one): the batch saves the per-call work of the ingress, auth,
// shedding and routing, and the driver coalesces the store calls of one turn
// (Redis: one script call). An entry that fails is answered on its own; when
// every entry fails, the call fails with the first entry's error, so that a
// backend outage shows as the call's status (metrics, breaker, audit).

function entryError(index: number, e: unknown): prism.v1.IBatchEntryError {
  const p: PrismError = toPrismError(e);
  return { index, code: p.code, message: p.message, reason: p.reason };
}

function batchSize(n: number, field: string): void {
  if (n === 0) throw errors.invalidArgument(field, "must not be empty");
  if (n > MAX_QUEUE_BATCH) throw errors.invalidArgument(field, `${n} entries exceed the maximum of ${MAX_QUEUE_BATCH} per call`);
}

/**
 * Starts call i for every entry (all at once, so the driver can coalesce them), then waits for all:
 * `onValue` gets each result, the failures are returned by index; throws the first entry's error when all failed.
 */
async function runEntries<T>(n: number, start: (i: number) => Promise<T>, onValue: (i: number, v: T) => void): Promise<prism.v1.IBatchEntryError[]> {
  const errs: prism.v1.IBatchEntryError[] = [];
  let first = n;
  let firstCause: unknown;
  const fail = (i: number, e: unknown) => {
    errs.push(entryError(i, e));
    if (i < first) [first, firstCause] = [i, e];
  };
  const pending: Promise<void>[] = [];
  for (let i = 0; i < n; i++) {
    let p: Promise<T>;
    try {
      p = start(i);
    } catch (e) {
      fail(i, e);
      continue;
    }
    // A handler on each call at once: a call failing while an earlier one is pending is never an unhandled rejection.
    pending.push(p.then((v) => onValue(i, v), (e: unknown) => fail(i, e)));
  }
  await Promise.all(pending);
  if (errs.length === n) throw firstCause;
  errs.sort((a, b) => (a.index ?? 0) - (b.index ?? 0));
  return errs;
}

export async function enqueueBatch(ns: NamespaceRuntime, req: prism.v1.IEnqueueBatchRequest): Promise<prism.v1.IEnqueueBatchResponse> {
  const queue = req.queue ?? "";
  requireName(queue, "queue");
  const entries = req.entries ?? [];
  batchSize(entries.length, "entries");
  const s = store(ns);
  const messageIds: string[] = new Array(entries.length).fill("");
  const errs = await runEntries(
    entries.length,
    (i) => {
      const e = entries[i]!;
      const payload = e.payload ?? EMPTY;
      requireValue(ns, payload, "payload");
      const delayMs = delay(ns, e.delaySeconds, "delay_seconds");
      return s.enqueue(queue, payload, withTraceAttributes(requireAttributes(e.attributes)), delayMs);
    },
    (i, id) => (messageIds[i] = id),
  );
  return errs.length ? { messageIds, errors: errs } : { messageIds };
}

export async function ackBatch(ns: NamespaceRuntime, req: prism.v1.IAckBatchRequest): Promise<prism.v1.IAckBatchResponse> {
  const queue = req.queue ?? "";
  requireName(queue, "queue");
  const receipts = req.receipts ?? [];
  batchSize(receipts.length, "receipts");
  const s = store(ns);
  const errs = await runEntries(receipts.length, (i) => s.ack(queue, receiptOf(receipts[i])), noop);
  return errs.length ? { errors: errs } : {};
}

function noop(): void {}
