/**
 * sqlite durability through the whole gateway: every write the SDK saw
 * acknowledged survives a SIGKILL of `prism serve` taken while writes are in
 * flight, and is there after a restart on the same file.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { connect } from "@prism/client";
import { startPrism } from "./serve-process.js";

const KEYS = 500;
const MESSAGES = 100;
const IN_FLIGHT = 16;

test("acknowledged keys and queue messages survive SIGKILL mid-stream", async () => {
  const dir = mkdtempSync(join(tmpdir(), "prism-durability-"));
  const ns = `dur-${randomUUID().slice(0, 8)}`;
  const queue = "jobs";
  const cfg = join(dir, "prism.yaml");
  writeFileSync(cfg, `server:\n  data_dir: ${JSON.stringify(dir)}\nnamespaces:\n  - name: ${ns}\n    backend: { type: sqlite, path: data.db }\n`);
  const args = ["--workers", "1", "--config", cfg, "--grpc-port", "0", "--http-port", "0"];
  try {
    const first = await startPrism(args);
    const client = await connect(`ws://127.0.0.1:${first.httpPort}`);
    const ackedKeys = new Map<string, string>();
    const ackedMessages = new Map<string, string>();
    let failed = 0;
    let killed: Promise<number | string> | undefined;
    // Kill once about half the keys are acknowledged, with IN_FLIGHT calls still outstanding.
    const maybeKill = () => {
      if (!killed && ackedKeys.size >= KEYS / 2) killed = first.stop("SIGKILL");
    };
    let next = 0;
    const total = KEYS + MESSAGES;
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < total) {
          const i = next++;
          try {
            // Interleave: one enqueue after every fifth key.
            if (i % 6 === 5 && i / 6 < MESSAGES) {
              const body = `msg-${i}`;
              const id = await client.queue(ns).enqueue(queue, body);
              ackedMessages.set(id, body);
            } else {
              const key = `key-${i}`;
              const value = `value-${i}-${"x".repeat(i % 50)}`;
              await client.kv(ns).set(key, value);
              ackedKeys.set(key, value);
              maybeKill();
            }
          } catch {
            failed++;
          }
        }
      }),
    );
    assert.ok(killed, "the server was killed during the run");
    assert.equal(await killed, "SIGKILL");
    assert.ok(failed > 0, "some calls were in flight (or not yet sent) when the server died");
    assert.ok(ackedKeys.size >= KEYS / 2 && ackedMessages.size > 0);
    await client.close().catch(() => {});

    const second = await startPrism(args);
    const again = await connect(`ws://127.0.0.1:${second.httpPort}`);
    try {
      const keys = [...ackedKeys.keys()];
      const values = await again.kv(ns).batchGet(keys);
      for (const [i, k] of keys.entries()) {
        assert.ok(values[i], `acknowledged key ${k} survived`);
        assert.equal(Buffer.from(values[i]!).toString(), ackedKeys.get(k));
      }
      const found = new Map<string, string>();
      for (let round = 0; round < 20; round++) {
        const msgs = await again.queue(ns).dequeue(queue, { max: 100 });
        if (msgs.length === 0) break;
        for (const m of msgs) {
          found.set(m.messageId, Buffer.from(m.payload).toString());
          await again.queue(ns).ack(queue, m.receipt);
        }
      }
      for (const [id, body] of ackedMessages) assert.equal(found.get(id), body, `acknowledged message ${id} survived`);
    } finally {
      await again.close();
      assert.equal(await second.stop("SIGTERM"), 0);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
