/**
 * Keyed writes on JetStream (queue_idempotent, stream_idempotent): the
 * idempotency key becomes the message's Nats-Msg-Id, and the stream's
 * duplicate_window (provision.ts) is the namespace's idempotency window.
 * JetStream stores one message per id within the window, atomically however
 * many duplicates race, and answers a duplicate with the first message's
 * sequence. The request hash rides in a header; a duplicate reads it back
 * from the stored message to refuse a reused key. A message no longer stored
 * (a work-queue message consumed and acked, or trimmed) cannot be compared:
 * the duplicate then answers the first result without the check.
 */
import { createHash } from "node:crypto";
import { headers, type MsgHdrs } from "@nats-io/transport-node";
import type { IdempotencyToken } from "../driver.js";
import { H_IDEM } from "./codec.js";
import type { Conn } from "./connection.js";

/** Nats-Msg-Id for a token: short and header-safe (the token's key may hold any UTF-8). */
export function msgIdOf(token: IdempotencyToken): string {
  return "prism-" + createHash("sha256").update(token.key).digest("base64url");
}

/** The headers of a keyed message: `h` (may be undefined) plus the request hash. */
export function withHash(h: MsgHdrs | undefined, token: IdempotencyToken): MsgHdrs {
  const out = h ?? headers();
  out.set(H_IDEM, token.requestHash);
  return out;
}

/** The request hash stored with message `seq`, or the token's own when the message is gone (see the header). */
export async function storedHash(c: Conn, stream: string, seq: number, token: IdempotencyToken): Promise<string> {
  const m = await c.jsm.streams.getMessage(stream, { seq }).catch(() => null);
  return m?.header?.get(H_IDEM) || token.requestHash;
}
