/**
 * PubSub migration end to end (src/migrations/shadow.ts): memstore → Redis.
 * During shadow, publishes through Prism reach Prism's subscribers from
 * `from` (each once) and are copied to `to` (a second Prism on the same Redis
 * prefix watches the channel, and the copies are counted in MigrationStatus);
 * finish switches the namespace to `to`, where new subscribers get what is
 * published after it.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { connect, type Prism, type PubSubMessage, type Subscription } from "@prism/client";
import { startServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";

const REDIS = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const tag = `${process.pid}_${randomBytes(3).toString("hex")}`;
const text = (b: Uint8Array) => Buffer.from(b).toString();

/** Subscribes to `topic`, waits until the subscription is live, and notes every payload. */
async function listen(c: Prism, ns: string, topic: string): Promise<{ sub: Subscription<PubSubMessage>; got: string[] }> {
  const sub = c.pubsub(ns).subscribe(topic);
  await sub.ready;
  const got: string[] = [];
  void (async () => {
    for await (const m of sub as AsyncIterable<PubSubMessage>) got.push(text(m.payload));
  })().catch(() => {});
  return { sub, got };
}

async function until(what: string, ms: number, f: () => boolean | Promise<boolean>): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe("pubsub migration: shadow then finish, memstore → Redis", () => {
  it("delivers from `from` once while every publish is copied to `to` (seen there, counted); finish serves subscribers from `to`", { timeout: 60_000 }, async () => {
    const ns = `mig-ps-${tag}`;
    const prefix = `prism-mig-ps-${tag}`;
    const dir = mkdtempSync(join(tmpdir(), "prism-mig-ps-"));
    const config = await validateConfig(
      {
        server: { data_dir: dir },
        backends: { old: { type: "memstore" }, new: { type: "redis", url: REDIS, key_prefix: prefix } },
        namespaces: [{ name: ns, primitives: ["pubsub"], backend: "old", migration: { to: "new" } }],
      },
      "pubsub-migration-test",
    );
    const srv = await startServer({ config, grpcPort: 0, httpPort: 0, log: () => {} });
    // The observer: another Prism whose namespace of the same name is on Redis with the same prefix, i.e. on `to` itself.
    const observerConfig = await validateConfig({ server: { data_dir: mkdtempSync(join(tmpdir(), "prism-mig-ps-obs-")) }, namespaces: [{ name: ns, primitives: ["pubsub"], backend: { type: "redis", url: REDIS, key_prefix: prefix } }] }, "pubsub-migration-observer");
    const obs = await startServer({ config: observerConfig, grpcPort: 0, httpPort: 0, log: () => {} });
    const c = await connect(`ws://127.0.0.1:${srv.httpPort}`);
    const oc = await connect(`ws://127.0.0.1:${obs.httpPort}`);
    const producers = await Promise.all(Array.from({ length: 4 }, () => connect(`ws://127.0.0.1:${srv.httpPort}`)));
    try {
      const call = (m: string) => c.call("Admin", m, { namespace: ns }) as Promise<any>;
      assert.equal((await call("StartMigration")).phase, "shadow");
      const viaPrism = await listen(c, ns, "t");
      const onTo = await listen(oc, ns, "t");
      const sent: string[][] = producers.map(() => []);
      let stop = false;
      const produce = producers.map(async (p, i) => {
        for (let n = 0; !stop; n++) {
          const body = `p${i}-${n}`;
          await p.pubsub(ns).publish("t", body);
          sent[i]!.push(body);
        }
      });
      await sleep(1000);
      stop = true;
      await Promise.all(produce);
      const total = sent.reduce((n, s) => n + s.length, 0);
      assert.ok(total > 100, `${total} publishes`);
      await until("every message through Prism and on `to`", 10_000, () => viaPrism.got.length >= total && onTo.got.length >= total);
      await sleep(200); // a duplicate, if any, would arrive now
      // Through Prism: from `from`, each message once (the copy to `to` does not come back to Prism's subscribers), each producer's in order.
      assert.equal(viaPrism.got.length, total, "each message delivered once to Prism's subscriber");
      for (const [i, s] of sent.entries()) assert.deepEqual(viaPrism.got.filter((g) => g.startsWith(`p${i}-`)), s, `producer ${i}'s messages in order`);
      // On `to`: every message was copied there.
      assert.deepEqual([...onTo.got].sort(), sent.flat().sort(), "`to` got a copy of every publish");
      const shadow = JSON.parse((await call("MigrationStatus")).statsJson).shadow;
      assert.deepEqual(shadow, { copied: total, copyErrors: 0 });

      assert.equal((await call("FinishMigration")).phase, "finished");
      assert.deepEqual((await c.admin.getNamespace(ns)).slots.map((s) => s.instance), ["new"]);
      // After finish Prism serves the namespace from Redis: a new subscriber gets the next publish, and the observer on Redis sees it too.
      const after = await listen(c, ns, "t");
      await producers[0]!.pubsub(ns).publish("t", "after-finish");
      await until("the publish after finish", 10_000, () => after.got.includes("after-finish") && onTo.got.includes("after-finish"));
      assert.deepEqual(after.got, ["after-finish"]);
      await viaPrism.sub.close();
      await after.sub.close();
      await onTo.sub.close();
    } finally {
      for (const x of [...producers, c, oc]) await x.close();
      await srv.close();
      await obs.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
