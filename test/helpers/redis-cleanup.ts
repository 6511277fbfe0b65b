/** Test helper: deletes every Redis key a test run wrote under its key prefix. */
import type { Redis } from "ioredis";

/** Deletes the keys matching `${prefix}:*` (SCAN, so the server is not blocked); returns how many. The caller owns `r`. */
export async function deleteRedisPrefix(r: Redis, prefix: string): Promise<number> {
  let n = 0;
  let cursor = "0";
  do {
    const [next, keys] = await r.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
    if (keys.length) n += await r.del(...keys);
    cursor = next;
  } while (cursor !== "0");
  return n;
}
