/**
 * A writer that dies with write-behind copies pending (src/migrations/reconcile.ts):
 * a child process serves a KeyValue migration (SQLite `from` → SQLite `to`,
 * cutover at 50%, so both sides are some keys' primary) with the other side's
 * writes held forever by a gate; its writes are acknowledged on their primary,
 * then it is SIGKILLed with every copy pending. This process, on the same
 * SQLite config store, sees its writer lease expire, requests a reconcile,
 * refuses finish and cutover advance meanwhile (naming it), runs the
 * reconcile (held by a gate until the refusals were checked), and afterwards
 * every key has the same value on both sides (changed values and deletes
 * alike); then the migration advances and finishes.
 *
 * Without the lease + reconcile, `to` keeps the older values of the keys
 * whose copy was lost (the backfill copies absent keys only): the wait for
 * the reconcile request times out.
 */
import { describe, it, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { validateConfig } from "../../src/config/load.js";
import { ControlAgent, WRITER_KIND } from "../../src/control/agent.js";
import { SqliteConfigStore } from "../../src/control/store-sqlite.js";
import { systemClock } from "../../src/core/clock.js";
import { DEFAULT_LIMITS } from "../../src/config/schema.js";
import type { KeyValueStore, KvRecord } from "../../src/backends/driver.js";
import { driver as sqlite } from "../../src/backends/sqlite/index.js";
import { optionsSchema as sqliteOptions } from "../../src/backends/sqlite/options.js";
import { MigratingKeyValueStore } from "../../src/migrations/keyvalue.js";
import { WRITER_LEASE, keyBucket } from "../../src/migrations/types.js";

const dir = mkdtempSync(join(tmpdir(), "prism-reconcile-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const NS = "rc";
const text = (r: KvRecord | null) => (r === null ? null : Buffer.from(r.value).toString());

async function until<T>(what: string, ms: number, f: () => Promise<T | undefined | false> | T | undefined | false): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Writes wait until open() (reads and scans pass). */
function gated(inner: KeyValueStore): KeyValueStore & { open(): void } {
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  return {
    open,
    get: (k) => inner.get(k),
    exists: (k) => inner.exists(k),
    scan: (p, c, l, k) => inner.scan!(p, c, l, k),
    set: async (k, v, o) => (await gate, inner.set(k, v, o)),
    delete: async (k) => (await gate, inner.delete(k)),
  };
}

/** The dying writer: a process of its own (its own write-behind queue and instance id). */
const CHILD = (mod: (p: string) => string) => `
import { validateConfig } from ${JSON.stringify(mod("config/load.js"))};
import { ControlAgent } from ${JSON.stringify(mod("control/agent.js"))};
import { SqliteConfigStore } from ${JSON.stringify(mod("control/store-sqlite.js"))};
import { systemClock } from ${JSON.stringify(mod("core/clock.js"))};
import { DEFAULT_LIMITS } from ${JSON.stringify(mod("config/schema.js"))};
import { driver as sqlite } from ${JSON.stringify(mod("backends/sqlite/index.js"))};
import { optionsSchema as sqliteOptions } from ${JSON.stringify(mod("backends/sqlite/options.js"))};
import { MigratingKeyValueStore } from ${JSON.stringify(mod("migrations/keyvalue.js"))};
import { WRITER_LEASE, keyBucket } from ${JSON.stringify(mod("migrations/types.js"))};
const [dir, raw, ns] = process.argv.slice(2);
WRITER_LEASE.refreshMs = 200;
const config = await validateConfig(JSON.parse(raw), "reconcile-child");
const agent = new ControlAgent({ store: new SqliteConfigStore({ path: dir + "/config.db" }), sink: { apply: async () => {}, delete: async () => {} }, log: () => {}, pollMs: 50 });
await agent.start(config);
const st = await agent.migrationStatus(ns);
const open = (f) => sqlite.create(sqliteOptions.parse({ path: dir + "/" + f }), { clock: systemClock, log: () => {} }).namespace(ns, DEFAULT_LIMITS).keyvalue;
// The copies (to the side that is not the key's primary at 50%) never land.
const never = new Promise(() => {});
const hold = (inner, primaryHere) => ({
  get: (k) => inner.get(k), exists: (k) => inner.exists(k), scan: (p, c, l, k) => inner.scan(p, c, l, k),
  set: (k, v, o) => (primaryHere(k) ? inner.set(k, v, o) : never),
  delete: (k) => (primaryHere(k) ? inner.delete(k) : never),
});
const from = hold(open("from.db"), (k) => keyBucket(k) >= 50);
const to = hold(open("to.db"), (k) => keyBucket(k) < 50);
const kv = new MigratingKeyValueStore(ns, from, to, st.settings, st.state, agent, systemClock, () => {});
for (let i = 0; i < 20; i++) await kv.set("k" + i, Buffer.from("new" + i), {});
for (let i = 0; i < 4; i++) await kv.delete("gone" + i);
await new Promise((r) => setTimeout(r, 600)); // the lease written and refreshed
process.stdout.write(JSON.stringify({ pending: kv.snapshot().writeBehindPending }) + "\\n");
setInterval(() => {}, 1000);
`;

describe("KeyValue migration: a writer killed with copies pending", () => {
  it("its lease expires, a reconcile brings every key's other side up to date, finish and advance wait for it", { timeout: 60_000 }, async () => {
    WRITER_LEASE.refreshMs = 200;
    WRITER_LEASE.expiryMs = 1500;
    const raw = {
      server: { data_dir: dir },
      backends: { old: { type: "sqlite", path: "from.db" }, new: { type: "sqlite", path: "to.db" } },
      namespaces: [{ name: NS, pattern: "keyvalue", backend: "old", migration: { to: "new", cutover_steps: [50, 100] } }],
    };
    const config = await validateConfig(raw, "reconcile-test");
    const cfgPath = join(dir, "config.db");
    const agent = new ControlAgent({ store: new SqliteConfigStore({ path: cfgPath }), sink: { apply: async () => {}, delete: async () => {} }, log: () => {}, pollMs: 50 });
    const probe = new SqliteConfigStore({ path: cfgPath });
    const open = (f: string) => sqlite.create(sqliteOptions.parse({ path: join(dir, f) }), { clock: systemClock, log: () => {} });
    const fromInst = open("from.db");
    const toInst = open("to.db");
    const fromRaw = fromInst.namespace(NS, DEFAULT_LIMITS).keyvalue!;
    const toRaw = toInst.namespace(NS, DEFAULT_LIMITS).keyvalue!;
    let kv: MigratingKeyValueStore | undefined;
    let gates: { open(): void }[] = [];
    let child: ReturnType<typeof spawn> | undefined;
    try {
      await agent.start(config);
      await agent.startMigration(NS);
      await agent.advanceMigration(NS); // backfill
      await agent.saveCursor(NS, { cursor: "", copied: 0, skipped: 0, done: true, owner: "test", heartbeatMs: Date.now() });
      await agent.advanceMigration(NS); // shadow
      const st = await agent.advanceMigration(NS); // cutover 50%
      assert.equal(st.state?.phase, "cutover");
      // Both sides in step before the writer starts.
      const keys = [...Array.from({ length: 20 }, (_, i) => `k${i}`), ...Array.from({ length: 4 }, (_, i) => `gone${i}`)];
      for (const k of keys) {
        await fromRaw.set(k, Buffer.from("old"), {});
        await toRaw.set(k, Buffer.from("old"), {});
      }
      assert.ok(keys.some((k) => keyBucket(k) < 50) && keys.some((k) => keyBucket(k) >= 50), "keys of both primaries");

      // The writer: acknowledged writes on each key's primary, every copy pending; then SIGKILL.
      const script = join(dir, "writer.mjs");
      writeFileSync(script, CHILD((p) => new URL(`../../src/${p}`, import.meta.url).href));
      const c = spawn(process.execPath, [script, dir, JSON.stringify(raw), NS], { stdio: ["ignore", "pipe", "inherit"] });
      child = c;
      let out = "";
      c.stdout!.on("data", (d: Buffer) => (out += d.toString()));
      const line = await until("the writer's writes acknowledged", 20_000, () => (out.includes("\n") ? out.split("\n")[0]! : c.exitCode !== null ? assert.fail(`writer exited ${c.exitCode}`) : undefined));
      assert.equal(JSON.parse(line).pending, keys.length, "every copy still pending in the writer");
      const leases = (await probe.snapshot()).entries.filter((e) => e.kind === WRITER_KIND && e.spec !== null);
      assert.equal(leases.length, 1, "the writer holds a lease");
      c.kill("SIGKILL");
      await new Promise((r) => c.once("exit", r));
      // The lost-write state: the non-primary side still has the older value (or the deleted key).
      for (const k of keys) {
        const primary = keyBucket(k) < 50 ? toRaw : fromRaw;
        const other = keyBucket(k) < 50 ? fromRaw : toRaw;
        assert.equal(text(await primary.get(k)), k.startsWith("gone") ? null : `new${k.slice(1)}`, k);
        assert.equal(text(await other.get(k)), "old", k);
      }

      // This process serves the namespace too; its reconcile's writes are held until the refusals are checked.
      const from = gated(fromRaw);
      const to = gated(toRaw);
      gates = [from, to];
      kv = new MigratingKeyValueStore(NS, from, to, st.settings, st.state!, agent, systemClock, () => {});
      const status = await until("the reconcile requested", 20_000, async () => (await agent.migrationStatus(NS)).reconcile ?? undefined);
      assert.match(status.request.reason, /stopped refreshing its lease/);
      assert.equal(status.done, false);
      const live = (await probe.snapshot()).entries.filter((e) => e.kind === WRITER_KIND && e.spec !== null).map((e) => e.name);
      assert.ok(!live.includes(leases[0]!.name), "the dead writer's lease deleted");
      assert.equal(live.length, 1, "this process's own lease");
      await assert.rejects(agent.finishMigration(NS), (e: Error & { code?: number }) => e.code === 9 && /"rc" needs a reconcile/.test(e.message));
      await assert.rejects(agent.advanceMigration(NS), (e: Error & { code?: number }) => e.code === 9 && /"rc" needs a reconcile/.test(e.message));

      from.open();
      to.open();
      await until("the reconcile done", 20_000, async () => (await agent.migrationStatus(NS)).reconcile?.done);
      for (const k of keys) assert.equal(text(await toRaw.get(k)), text(await fromRaw.get(k)), `${k}: to equals from`);
      for (const k of keys) assert.equal(text(await toRaw.get(k)), k.startsWith("gone") ? null : `new${k.slice(1)}`, `${k}: the last acknowledged write`);
      const rc = (await agent.migrationStatus(NS)).reconcile!;
      assert.equal(rc.cursor!.copied, keys.length, "every divergent key copied once");

      assert.equal((await agent.advanceMigration(NS)).state?.step, 1);
      await kv.close();
      kv = undefined;
      assert.ok(!(await probe.snapshot()).entries.some((e) => e.kind === WRITER_KIND && e.spec !== null), "a clean close deletes its lease");
      await agent.finishMigration(NS);
      assert.ok(!(await probe.snapshot()).entries.some((e) => e.kind.startsWith("migration-") && e.spec !== null), "finish leaves no migration entry");
    } finally {
      if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      for (const g of gates) g.open();
      await kv?.close();
      await probe.close();
      await agent.close();
      await fromInst.close();
      await toInst.close();
    }
  });
});
