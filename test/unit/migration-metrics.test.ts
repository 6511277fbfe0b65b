/**
 * A KeyValue migration's numbers that must outlive a runtime or were missing
 * (src/migrations/keyvalue.ts snapshot, monitor.ts): `from`'s error rate over
 * the window (calls timed in shadow and cutover), and the rollback count,
 * which a rollback's re-apply (a new runtime, new stats) must not reset: it
 * is read from the stored phase (MigrationState.rollbacks).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { ManualClock } from "../../src/core/clock.js";
import { errors } from "../../src/core/errors.js";
import { DEFAULT_LIMITS } from "../../src/config/schema.js";
import type { KeyValueStore } from "../../src/backends/driver.js";
import { driver as memstore } from "../../src/backends/memstore/index.js";
import { MigratingKeyValueStore } from "../../src/migrations/keyvalue.js";
import type { MigrationSettings, MigrationState } from "../../src/migrations/types.js";

const settings: MigrationSettings = { slot: "keyvalue", from: "old", to: "new", backfillRps: 1000, shadowReadPct: 0, cutoverSteps: [50, 100], rollbackOn: { errorRate: 1, p99Ms: 1e9, diffPct: 100 }, windowSeconds: 30, dryRun: false };

function stores(t: { after(f: () => Promise<void>): void }) {
  const clock = new ManualClock(Date.now());
  const ns = `mm-${randomUUID()}`;
  const a = memstore.create({}, { clock, log: () => {} });
  const b = memstore.create({}, { clock, log: () => {} });
  const open: MigratingKeyValueStore[] = [];
  t.after(async () => {
    for (const s of open) await s.close();
    await a.close();
    await b.close();
  });
  return { clock, ns, from: a.namespace(ns, DEFAULT_LIMITS).keyvalue!, to: b.namespace(ns, DEFAULT_LIMITS).keyvalue!, open };
}

describe("migration metrics", () => {
  test("`from`'s error rate over the window: failed calls / calls (shadow phase)", async (t) => {
    const { clock, ns, from, to, open } = stores(t);
    // `from` fails the reads of "bad" as an unreachable backend would.
    const failing: KeyValueStore = { ...from, get: (k) => (k === "bad" ? Promise.reject(errors.unavailable("from: down on purpose")) : from.get(k)), exists: (k) => from.exists(k), set: (k, v, o) => from.set(k, v, o), delete: (k) => from.delete(k) };
    const mig = new MigratingKeyValueStore(ns, failing, to, settings, { phase: "shadow", step: 0, startedAtMs: clock.now() }, undefined, clock, () => {});
    open.push(mig);
    for (let i = 0; i < 3; i++) await mig.get("good");
    await assert.rejects(mig.get("bad"), /down on purpose/);
    assert.equal(mig.snapshot().fromErrorRate, 0.25);
  });

  test("the rollback count comes from the stored phase, so a rollback's re-apply does not reset it", async (t) => {
    const { clock, ns, from, to, open } = stores(t);
    const state: MigrationState = { phase: "cutover", step: 0, startedAtMs: clock.now(), rolledBack: { reason: "test", atMs: clock.now(), automatic: true }, rollbacks: 2 };
    // The runtime applied after the second rollback: fresh stats, the count still 2.
    const mig = new MigratingKeyValueStore(ns, from, to, settings, state, undefined, clock, () => {});
    open.push(mig);
    assert.equal(mig.snapshot().rollbacks, 2);
    assert.equal(mig.isRolledBack, true);
  });
});
