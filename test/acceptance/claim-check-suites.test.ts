/**
 * The primitives' own acceptance suites, unchanged, on claim-check namespaces
 * with threshold_bytes 0, so every non-empty value and message the suites write
 * travels as a claim: KeyValue fronted on redis (payloads on filesystem) and
 * Queue fronted on memstore (payloads on s3, against s3rver). What the
 * namespace claims is what the pattern derives from the messages slot (no
 * batches, idempotency or outbox: the claim stores do not forward them).
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, after } from "node:test";
import { Redis } from "ioredis";
import { runAcceptance } from "./harness.js";
import { startS3rver, type S3rverHandle } from "../helpers/s3rver.js";
import { deleteRedisPrefix } from "../helpers/redis-cleanup.js";

const tag = `${process.pid}-${randomBytes(3).toString("hex")}`;
const REDIS = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
// Inside the harness's allowed_paths (tmpdir), so Admin may name it.
const root = mkdtempSync(join(tmpdir(), "prism-acc-ccs-"));
const redis = { type: "redis", url: REDIS, key_prefix: `prism-acc-ccs-${tag}` };
let s3: S3rverHandle | undefined;

before(async () => {
  s3 = await startS3rver();
});
after(async () => {
  await s3?.close();
  rmSync(root, { recursive: true, force: true });
  const r = new Redis(REDIS);
  await deleteRedisPrefix(r, redis.key_prefix).catch(() => {});
  r.disconnect();
});

runAcceptance(
  {
    name: "claim-check(keyvalue on redis, payloads filesystem)",
    backend: () => redis,
    clock: "real",
    pattern: {
      name: "claim-check",
      slotTypes: { payloads: "filesystem", messages: "redis" },
      entry: () => ({ pattern: "claim-check", slots: { payloads: { type: "filesystem", root, fsync: false }, messages: redis }, options: { fronts: "keyvalue", threshold_bytes: 0 } }),
    },
  },
  { transports: ["ws"] },
);

runAcceptance(
  {
    name: "claim-check(queue on memstore, payloads s3)",
    backend: () => ({ type: "memstore" }),
    // memstore runs on Prism's clock: the suites advance it (leases, delays) instead of waiting.
    clock: "manual",
    pattern: {
      name: "claim-check",
      slotTypes: { payloads: "s3", messages: "memstore" },
      entry: () => ({
        pattern: "claim-check",
        slots: { payloads: s3 ? s3.options(`ccs-${tag}/`) : { type: "s3", bucket: "probe" }, messages: { type: "memstore" } },
        options: { fronts: "queue", threshold_bytes: 0 },
      }),
    },
  },
  { transports: ["ws"] },
);
