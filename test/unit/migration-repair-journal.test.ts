/**
 * The repair journal of a KeyValue migration (src/migrations/repair-journal.ts)
 * between two control agents on one SQLite config store (two Prism
 * processes): keys recorded by one are loaded by the other, a batch is
 * deleted once the other repaired every key in it, nothing is written for a
 * key resolved before its batch was, and finish is refused while keys behind
 * on `to` are recorded.
 */
import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { validateConfig } from "../../src/config/load.js";
import { ControlAgent, REPAIR_KIND } from "../../src/control/agent.js";
import { SqliteConfigStore } from "../../src/control/store-sqlite.js";
import { RepairJournal } from "../../src/migrations/repair-journal.js";

const dir = mkdtempSync(join(tmpdir(), "prism-journal-"));
after(() => rmSync(dir, { recursive: true, force: true }));

async function until<T>(what: string, ms: number, f: () => Promise<T | undefined | false> | T | undefined | false): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe("repair journal across two processes' control agents", () => {
  it("records on failure, is loaded and worked off by the other, deletes repaired batches; finish waits for keys behind on to", { timeout: 30_000 }, async () => {
    const config = await validateConfig(
      {
        server: { data_dir: dir },
        backends: { old: { type: "memstore" }, new: { type: "sqlite", path: "to.db" } },
        namespaces: [{ name: "jr", pattern: "keyvalue", backend: "old", migration: { to: "new", cutover_steps: [100] } }],
      },
      "journal-test",
    );
    const path = join(dir, "config.db");
    const agent = (store: SqliteConfigStore) => new ControlAgent({ store, sink: { apply: async () => {}, delete: async () => {} }, log: () => {}, pollMs: 50 });
    const a = agent(new SqliteConfigStore({ path }));
    const b = agent(new SqliteConfigStore({ path }));
    const probe = new SqliteConfigStore({ path });
    const stored = async () => (await probe.snapshot()).entries.filter((e) => e.kind === REPAIR_KIND);
    const detach: (() => void)[] = [];
    try {
      await a.start(config);
      await b.start(config);
      assert.equal(await a.loadRepairs("jr"), null, "no migration running: nothing to load");
      await a.startMigration("jr");
      // Process A: its writes of k1 (to `to`) and k2 (to `from`) failed.
      const ja = new RepairJournal("jr");
      detach.push(ja.attach(a, () => {}));
      ja.set("k1", "to");
      ja.set("k2", "from");
      // k3 failed and was written to both sides again in the same turn: nothing to record.
      ja.set("k3", "to");
      ja.delete("k3");
      const [entry] = await until("the batch in the store", 5000, async () => ((await stored()).length ? await stored() : undefined));
      assert.deepEqual((entry!.spec as { keys: unknown }).keys, [["k1", "to"], ["k2", "from"]]);
      assert.equal(ja.unwritten, 0);
      // Process B loads it (its own sync, then its journal's next look) and would repair both keys.
      await until("B's agent sees the batch", 5000, async () => (await b.loadRepairs("jr"))?.length === 1);
      const jb = new RepairJournal("jr");
      detach.push(jb.attach(b, () => {}));
      await until("B's journal took the keys in", 5000, () => jb.get("k1") === "to" && jb.get("k2") === "from");
      // Cut every key over; finish is refused while k1 is behind on `to`.
      await a.advanceMigration("jr");
      await a.saveCursor("jr", { cursor: "", copied: 0, skipped: 0, done: true, owner: "test", heartbeatMs: Date.now() });
      await a.advanceMigration("jr");
      assert.equal((await a.advanceMigration("jr")).state?.phase, "cutover");
      await assert.rejects(a.finishMigration("jr"), /"jr" has 1 key recorded for repair on "new"/);
      // B repairs k1: the batch still lists k2.
      jb.delete("k1");
      await sleep(200);
      assert.equal((await stored()).length, 1);
      // ... then k2: the batch is deleted from the store.
      jb.delete("k2");
      await until("the batch deleted", 5000, async () => !(await stored()).some((e) => e.name === entry!.name));
      // A still holds both keys for repair (it has not repaired them itself): at its next look it records them again.
      const [again] = await until("A's keys recorded again", 5000, async () => {
        const now = await stored();
        return now.length === 1 && now[0]!.name !== entry!.name ? now : undefined;
      });
      assert.deepEqual((again!.spec as { keys: unknown }).keys, [["k1", "to"], ["k2", "from"]]);
      await assert.rejects(a.finishMigration("jr"), /"jr" has 1 key recorded for repair/);
      // A repairs them: the journal is empty, finish goes through.
      ja.delete("k1");
      ja.delete("k2");
      await until("the journal empty", 5000, async () => (await stored()).length === 0);
      await until("A's agent sees it empty", 5000, async () => (await a.loadRepairs("jr"))?.length === 0);
      assert.deepEqual(await a.finishMigration("jr").then(() => "finished"), "finished");
    } finally {
      for (const d of detach) d();
      await probe.close();
      await a.close();
      await b.close();
    }
  });
});
