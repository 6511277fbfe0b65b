/**
 * The TypeScript SDK's per-turn coalescing of queue calls
 * (clients/typescript/src/coalesce.ts): which calls of one turn go together,
 * how each caller gets its own answer, the item and byte caps, the lone call
 * sent as a single call, a failed batch call failing each caller, and the
 * fallback to single calls when the server does not know the batch method
 * (an older Prism answers UNIMPLEMENTED). The batch and single calls here are
 * plain functions recording what they were given: the logic under test sits
 * above any transport (the e2e test, test/e2e/queue-batch-rpc.test.ts, runs it
 * against a real gateway).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Code, PrismError } from "@prism/client";
import type * as CoalesceModule from "../../clients/typescript/src/coalesce.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const { Coalescer } = (await import(pathToFileURL(join(ROOT, "clients/typescript/dist/coalesce.js")).href)) as typeof CoalesceModule;

interface Log {
  batches: { key: string; items: string[] }[];
  singles: { key: string; item: string }[];
}

function recorder(opts: { maxItems?: number; maxBytes?: number; batchFails?: PrismError; failItem?: string } = {}) {
  const log: Log = { batches: [], singles: [] };
  const c = new Coalescer<string, string>({
    maxItems: opts.maxItems ?? 1000,
    maxBytes: opts.maxBytes ?? 1 << 20,
    single: async (key, item) => {
      log.singles.push({ key, item });
      if (item === opts.failItem) throw new PrismError(Code.INVALID_ARGUMENT, `payload: ${item} refused`);
      return `single:${key}:${item}`;
    },
    batch: async (key, items) => {
      log.batches.push({ key, items: [...items] });
      if (opts.batchFails) throw opts.batchFails;
      return items.map((it) => (it === opts.failItem ? { ok: false as const, error: new PrismError(Code.INVALID_ARGUMENT, `payload: ${it} refused`) } : { ok: true as const, value: `batch:${key}:${it}` }));
    },
  });
  return { c, log };
}

test("calls of one turn for one key go as one batch, in call order, each caller answered", async () => {
  const { c, log } = recorder();
  const answers = await Promise.all(["a", "b", "c"].map((x) => c.add("q1", x, 1)));
  assert.deepEqual(answers, ["batch:q1:a", "batch:q1:b", "batch:q1:c"]);
  assert.deepEqual(log.batches, [{ key: "q1", items: ["a", "b", "c"] }]);
  assert.equal(log.singles.length, 0);
});

test("different keys make different batches; a lone call goes as the single call", async () => {
  const { c, log } = recorder();
  const answers = await Promise.all([c.add("q1", "a", 1), c.add("q2", "x", 1), c.add("q1", "b", 1)]);
  assert.deepEqual(answers, ["batch:q1:a", "single:q2:x", "batch:q1:b"]);
  assert.deepEqual(log.batches, [{ key: "q1", items: ["a", "b"] }]);
  assert.deepEqual(log.singles, [{ key: "q2", item: "x" }]);
});

test("calls of later turns make new batches", async () => {
  const { c, log } = recorder();
  await Promise.all([c.add("q", "a", 1), c.add("q", "b", 1)]);
  await Promise.all([c.add("q", "c", 1), c.add("q", "d", 1)]);
  assert.deepEqual(log.batches.map((b) => b.items), [["a", "b"], ["c", "d"]]);
});

test("a batch holds at most maxItems items and maxBytes bytes", async () => {
  const { c, log } = recorder({ maxItems: 3 });
  await Promise.all(["1", "2", "3", "4", "5", "6", "7"].map((x) => c.add("q", x, 1)));
  assert.deepEqual(log.batches.map((b) => b.items), [["1", "2", "3"], ["4", "5", "6"]]);
  assert.deepEqual(log.singles.map((s) => s.item), ["7"]);
  const bytes = recorder({ maxBytes: 10 });
  await Promise.all(["a", "b", "c"].map((x) => bytes.c.add("q", x, 4)));
  assert.deepEqual(bytes.log.batches.map((b) => b.items), [["a", "b"]]);
  assert.deepEqual(bytes.log.singles.map((s) => s.item), ["c"]);
});

test("an entry's error goes to its caller alone", async () => {
  const { c } = recorder({ failItem: "b" });
  const out = await Promise.allSettled(["a", "b", "c"].map((x) => c.add("q", x, 1)));
  assert.deepEqual(out.map((o) => o.status), ["fulfilled", "rejected", "fulfilled"]);
  assert.match(((out[1] as PromiseRejectedResult).reason as Error).message, /^payload: b refused/);
});

test("a failed batch call fails every caller of that batch with its error", async () => {
  const err = new PrismError(Code.UNAVAILABLE, "backend down");
  const { c, log } = recorder({ batchFails: err });
  const out = await Promise.allSettled(["a", "b"].map((x) => c.add("q", x, 1)));
  assert.deepEqual(out.map((o) => (o as PromiseRejectedResult).reason), [err, err]);
  assert.equal(log.singles.length, 0, "UNAVAILABLE is not a reason to resend");
});

test("a server without the batch method: the batch's calls are resent one by one, and later calls go single", async () => {
  const { c, log } = recorder({ batchFails: new PrismError(Code.UNIMPLEMENTED, "unknown method id 35 (see prism.v1.Method)") });
  const first = await Promise.all(["a", "b"].map((x) => c.add("q", x, 1)));
  assert.deepEqual(first, ["single:q:a", "single:q:b"]);
  const later = await Promise.all(["c", "d"].map((x) => c.add("q", x, 1)));
  assert.deepEqual(later, ["single:q:c", "single:q:d"]);
  assert.equal(log.batches.length, 1, "one batch call tried, none after");
  assert.deepEqual(log.singles.map((s) => s.item), ["a", "b", "c", "d"]);
});

test("UNIMPLEMENTED for another reason (a namespace without the interface) fails the callers, no resend", async () => {
  const err = new PrismError(Code.UNIMPLEMENTED, 'namespace "n" (kafka) does not serve queue_delayed', "PRISM_ERR_INTERFACE_MISSING");
  const { c, log } = recorder({ batchFails: err });
  const out = await Promise.allSettled(["a", "b"].map((x) => c.add("q", x, 1)));
  assert.deepEqual(out.map((o) => o.status), ["rejected", "rejected"]);
  assert.equal(log.singles.length, 0);
});
