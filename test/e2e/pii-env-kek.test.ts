// pii: encrypt with the key-encryption key from an environment variable
// (security.kek: { id, env }), in a `prism serve` process, against Redis and
// PostgreSQL: values set through Prism are ciphertext when read straight from
// Redis (ioredis) and PostgreSQL (pg) and plaintext through Prism; the same
// data directory (whose config store holds the wrapped data keys) with
// another key in the variable does not start (the data keys do not unwrap),
// nor does it without the variable (naming security.kek.env), and the right
// key reads the values again. So the variable's value is the KEK.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import pg from "pg";
import { deleteRedisPrefix } from "../helpers/redis-cleanup.js";
import { startPrism } from "./serve-process.js";

const PG = "postgres://postgres@127.0.0.1:5432/test";
const tag = randomUUID().replace(/-/g, "").slice(0, 10);
const PLAIN = `ssn 078-05-1120 of bob ${tag}`;
const VAR = `PRISM_TEST_KEK_${tag}`;

test("security.kek from an env var: ciphertext in Redis and PostgreSQL, plaintext through prism serve; another key or none in the variable refuses to start", { timeout: 90_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "prism-pii-env-"));
  const prefix = `piienv${tag}`;
  const schema = `piienv_${tag}`;
  const RKV = `pii-env-redis-${tag}`;
  const PKV = `pii-env-pg-${tag}`;
  const yaml = join(dir, "prism.yaml");
  writeFileSync(
    yaml,
    JSON.stringify({
      server: { data_dir: dir, access_log_sample: 0, metrics: false },
      security: { kek: { id: "env1", env: VAR } },
      backends: {
        cache: { type: "redis", url: "redis://127.0.0.1:6379", key_prefix: prefix },
        main: { type: "postgres", url: PG, schema },
      },
      namespaces: [
        { name: RKV, primitives: ["keyvalue"], backend: "cache", pii: "encrypt" },
        { name: PKV, primitives: ["keyvalue"], backend: "main", pii: "encrypt" },
      ],
    }),
  );
  const args = ["--config", yaml, "--workers", "1", "--grpc-port", "0", "--http-port", "0"];
  const kek = randomBytes(32).toString("base64");
  const redis = new Redis("redis://127.0.0.1:6379");
  const db = new pg.Client({ connectionString: PG });
  await db.connect();
  /** Starts prism serve with `env`, expecting it to exit before listening; its error output. */
  const refusedStart = async (env: NodeJS.ProcessEnv): Promise<string> => {
    const r = await startPrism(args, { env, timeoutMs: 20_000 }).then(
      async (p) => {
        await p.stop();
        return undefined;
      },
      (e: Error) => e.message,
    );
    assert.ok(r !== undefined, "prism serve started");
    assert.match(r, /exited \(1\) before listening/);
    return r;
  };
  const url = (port: number, ns: string, key: string) => `http://127.0.0.1:${port}/v1/ns/${ns}/kv/${key}`;
  try {
    // 1. Through Prism, with the KEK only in the environment.
    const a = await startPrism(args, { env: { [VAR]: kek } });
    try {
      for (const ns of [RKV, PKV]) {
        const put = await fetch(url(a.httpPort, ns, "id"), { method: "PUT", body: PLAIN });
        assert.equal(put.status, 200, await put.text());
        const got = await fetch(url(a.httpPort, ns, "id"));
        assert.equal(got.status, 200);
        assert.equal(await got.text(), PLAIN, "plaintext through Prism");
      }
    } finally {
      assert.equal(await a.stop(), 0);
    }

    // 2. Straight from the backends: the envelope (version byte 1, +37 bytes), never the plaintext.
    const plainBytes = Buffer.from(PLAIN);
    // The value's hash (src/backends/redis/keys.ts: kv:<key> → { v, ver }) holds the envelope…
    const redisValue = await redis.hgetBuffer(`${prefix}:{${RKV}}:kv:id`, "v");
    assert.ok(redisValue, "the value is in Redis");
    assert.equal(redisValue[0], 1);
    assert.equal(redisValue.length, plainBytes.length + 37);
    // …and no key of the namespace holds the plaintext anywhere.
    const keys = await redis.keys(`${prefix}:*`);
    assert.ok(keys.length > 0);
    for (const k of keys) {
      const type = await redis.type(k);
      const blobs = type === "string" ? [(await redis.getBuffer(k))!] : type === "hash" ? Object.values(await redis.hgetallBuffer(k)) : type === "zset" ? await redis.zrangeBuffer(k, "0", "-1") : [];
      for (const blob of blobs) assert.equal(blob.includes(plainBytes), false, `no plaintext in Redis key ${k}`);
    }
    const rows = await db.query(`SELECT value FROM "${schema}".kv WHERE ns = $1 AND key = 'id'`, [PKV]);
    assert.equal(rows.rows.length, 1);
    const pgValue = rows.rows[0].value as Buffer;
    assert.equal(pgValue[0], 1);
    assert.equal(pgValue.length, plainBytes.length + 37);
    assert.equal(pgValue.includes(plainBytes), false, "no plaintext in PostgreSQL");

    // 3. Same data directory (same wrapped data keys), another 32-byte key in the variable: the data keys do
    //    not unwrap, so Prism refuses to start rather than serve undecryptable namespaces.
    const wrong = await refusedStart({ [VAR]: randomBytes(32).toString("hex") });
    assert.match(wrong, /data key [0-9a-f]{16} does not unwrap with KEK "env1"/);

    // 4. The variable unset: refused at start, naming the field and the variable (never a key).
    const none = await refusedStart({ [VAR]: "" });
    assert.match(none, new RegExp(`security\\.kek\\.env: environment variable ${VAR} is not set`));
    assert.ok(!none.includes(kek) && !wrong.includes(kek));

    // 5. The right key again: the values read back.
    const c = await startPrism(args, { env: { [VAR]: kek } });
    try {
      for (const ns of [RKV, PKV]) assert.equal(await (await fetch(url(c.httpPort, ns, "id"))).text(), PLAIN);
    } finally {
      assert.equal(await c.stop(), 0);
    }
  } finally {
    await deleteRedisPrefix(redis, prefix).catch(() => {});
    redis.disconnect();
    await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => {});
    await db.end();
    rmSync(dir, { recursive: true, force: true });
  }
});
