/** Small helpers shared by the acceptance suites: bytes, error expectations, bounded waits. */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { PrismError, type PubSubMessage, type SubscriptionClient } from "./sdk.js";

export { sleep };

const enc = new TextEncoder();
const dec = new TextDecoder();

export const bytes = (s: string): Uint8Array => enc.encode(s);
export const text = (b: Uint8Array | null | undefined): string | null => (b == null ? null : dec.decode(b));
export const random = (n: number): Uint8Array => new Uint8Array(randomBytes(n));

/** Byte equality with a short, readable failure message (no multi-MiB diffs). */
export function assertBytes(actual: Uint8Array | null | undefined, expected: Uint8Array, what: string): void {
  assert.ok(actual != null, `${what}: expected ${expected.length} bytes, got ${actual === null ? "null" : "undefined"}`);
  assert.ok(actual instanceof Uint8Array, `${what}: expected a Uint8Array, got ${Object.prototype.toString.call(actual)}`);
  if (actual.length !== expected.length) assert.fail(`${what}: expected ${expected.length} bytes, got ${actual.length}`);
  const a = Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength);
  const e = Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength);
  if (!a.equals(e)) {
    let i = 0;
    while (a[i] === e[i]) i++;
    assert.fail(`${what}: bytes differ first at index ${i} (expected ${e[i]}, got ${a[i]})`);
  }
}

/** Awaits a call that must fail with a PrismError of one of the given codes; returns the error. */
export async function expectCode(p: Promise<unknown> | (() => Promise<unknown>), codes: number | number[], what: string): Promise<PrismError> {
  const want = Array.isArray(codes) ? codes : [codes];
  let result: unknown;
  try {
    result = await (typeof p === "function" ? p() : p);
  } catch (e) {
    if (!(e instanceof PrismError)) {
      assert.fail(`${what}: expected PrismError code ${want.join("|")}, got non-PrismError ${(e as Error)?.name}: ${(e as Error)?.message}`);
    }
    const err = e;
    assert.ok(want.includes(err.code), `${what}: expected code ${want.join("|")}, got ${err.code} ${err.codeName} (${err.reason}: ${err.message})`);
    return err;
  }
  assert.fail(`${what}: expected PrismError code ${want.join("|")}, but it succeeded with ${safeJson(result)}`);
}

export function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v, (_k, x) => (x instanceof Uint8Array ? `<${x.length} bytes>` : x))?.slice(0, 300) ?? String(v);
  } catch {
    return String(v);
  }
}

/** Real-time bound for anything that waits on delivery (pub/sub, long polls), whatever the clock. */
export const DELIVERY_TIMEOUT_MS = 5000;

/** Rejects after ms (real time) with a message; the timer does not keep the process alive. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/**
 * Collects exactly n messages from a subscription, or fails after `ms` real
 * time naming what did arrive. Extra messages stay in the subscription.
 */
export async function collect(sub: SubscriptionClient, n: number, what: string, ms = DELIVERY_TIMEOUT_MS): Promise<PubSubMessage[]> {
  const it = (sub as AsyncIterable<PubSubMessage>)[Symbol.asyncIterator]();
  const got: PubSubMessage[] = [];
  const deadline = Date.now() + ms;
  while (got.length < n) {
    const left = deadline - Date.now();
    let r: IteratorResult<PubSubMessage>;
    try {
      r = await within(it.next(), Math.max(1, left), what);
    } catch {
      assert.fail(`${what}: expected ${n} messages within ${ms} ms, got ${got.length}: ${got.map((m) => m.topic).join(", ")}`);
    }
    if (r.done) assert.fail(`${what}: subscription ended after ${got.length} of ${n} messages`);
    got.push(r.value);
  }
  return got;
}

/** A subscription that is live (its `ready` resolved, bounded). */
export async function subscribed(sub: SubscriptionClient, what: string): Promise<SubscriptionClient> {
  await within(Promise.resolve(sub.ready), DELIVERY_TIMEOUT_MS, `${what}: subscription ready`);
  return sub;
}

/** Sorts strings by their UTF-8 bytes (the order Scan promises). */
export function byteOrder(keys: string[]): string[] {
  return [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}
