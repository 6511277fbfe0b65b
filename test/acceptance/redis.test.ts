import { randomBytes } from "node:crypto";
import { connect } from "node:net";
import { Redis } from "ioredis";
import { after } from "node:test";
import { runAcceptance } from "./harness.js";
import { deleteRedisPrefix } from "../helpers/redis-cleanup.js";

const url = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
// One key prefix per run: parallel runs on the shared Redis never meet.
const keyPrefix = `prism-acc-${process.pid}-${randomBytes(3).toString("hex")}`;

function reachable(): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const s = connect(Number(u.port || 6379), u.hostname);
    s.once("connect", () => (s.destroy(), resolve(true)));
    s.once("error", () => resolve(false));
  });
}

after(async () => {
  if (!(await reachable())) return;
  const r = new Redis(url, { lazyConnect: true });
  await r.connect();
  await deleteRedisPrefix(r, keyPrefix);
  r.disconnect();
});

runAcceptance({
  name: "redis",
  backend: () => ({ type: "redis", url, key_prefix: keyPrefix }),
  clock: "real",
  skipReason: async () => ((await reachable()) ? undefined : `no Redis at ${url}`),
  limits: { visibility_timeout_seconds: 2, stream_claim_timeout_seconds: 2 },
});
