// The audit log's tamper evidence end to end, through a `prism serve` process
// and the `prism audit verify` CLI: a keyed chain (audit.chain_key from an
// environment variable) verifies only with the key (PRISM_AUDIT_KEY or
// --key-file), and the head file beside the log finds records cut off the
// end, which the chain alone cannot see.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runPrism, startPrism } from "./serve-process.js";

test("keyed chain from env + head file: verify passes with the key, refuses without it or with another, and finds a cut end", { timeout: 60_000 }, async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "prism-audit-keyed-"));
  const ns = `aud-keyed-${randomUUID().slice(0, 8)}`;
  const key = randomBytes(32).toString("hex");
  const cfgFile = join(dataDir, "prism.yaml");
  writeFileSync(cfgFile, JSON.stringify({ server: { data_dir: dataDir }, audit: { file: "audit.jsonl", chain_key: { env: "TEST_AUDIT_KEY" } }, namespaces: [{ name: ns, backend: { type: "memstore" } }] }));
  const proc = await startPrism(["--config", cfgFile, "--workers", "1", "--grpc-port", "0", "--http-port", "0"], { env: { TEST_AUDIT_KEY: key } });
  const N = 8;
  try {
    for (let i = 0; i < N; i++) assert.equal((await fetch(`http://127.0.0.1:${proc.httpPort}/v1/ns/${ns}/kv/k${i}`, { method: "PUT", body: "v" })).status, 200);
  } finally {
    assert.equal(await proc.stop(), 0);
  }
  const file = join(dataDir, "audit.jsonl");
  const lines = readFileSync(file, "utf8").trimEnd().split("\n");
  assert.equal(lines.length, N);
  assert.ok(lines.every((l) => /,"mac":"[0-9a-f]{64}"\}$/.test(l) && !l.includes(key)), "every line keyed, the key itself nowhere");
  assert.equal(JSON.parse(readFileSync(`${file}.head`, "utf8")).seq, N);

  const withEnv = await runPrism(["audit", "verify", file], { env: { PRISM_AUDIT_KEY: key } });
  assert.equal(withEnv.code, 0, withEnv.stderr);
  assert.match(withEnv.stdout, new RegExp(`ok: ${N} record\\(s\\), seq 1\\.\\.${N}, keyed .*both ends match`));
  const keyFile = join(dataDir, "audit.key");
  writeFileSync(keyFile, `${key}\n`);
  assert.equal((await runPrism(["audit", "verify", "--key-file", keyFile, file])).code, 0);

  const noKey = await runPrism(["audit", "verify", file], { env: { PRISM_AUDIT_KEY: "" } });
  assert.equal(noKey.code, 1);
  assert.match(noKey.stderr, /keyed chain .*--key-file/);
  const other = await runPrism(["audit", "verify", file], { env: { PRISM_AUDIT_KEY: randomBytes(32).toString("hex") } });
  assert.equal(other.code, 1);
  assert.match(other.stderr, /BROKEN at .*audit\.jsonl:1: its mac does not match/);

  // The last two records cut off (the remaining chain is intact): the head file finds it; --no-head does not.
  const cutDir = mkdtempSync(join(tmpdir(), "prism-audit-cut-"));
  const cut = join(cutDir, "audit.jsonl");
  writeFileSync(cut, lines.slice(0, N - 2).join("\n") + "\n");
  copyFileSync(`${file}.head`, `${cut}.head`);
  const found = await runPrism(["audit", "verify", "--key-file", keyFile, cut]);
  assert.equal(found.code, 1);
  assert.match(found.stderr, new RegExp(`ends at seq ${N - 2} but the head file .* records ${N - 1}\\.\\.${N} were cut off the end`));
  const chainOnly = await runPrism(["audit", "verify", "--key-file", keyFile, "--no-head", cut]);
  assert.equal(chainOnly.code, 0, "the chain alone cannot see a cut end");
  assert.match(chainOnly.stdout, /no head file/);
});
