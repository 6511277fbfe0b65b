/**
 * `pii: mask`: how a key shows in the access log and audit records.
 *
 *   "user:alice@example.com" → "***3f9a1c0d"
 *
 * Nothing of the key itself is shown (a prefix of an e-mail address or a
 * name is PII already); the 8 hex digits are HMAC-SHA256 of the key, so
 * lines about one key can be correlated without revealing it. The HMAC key
 * derives from the KEK (security.kek) when one is configured, so every
 * process sharing the KEK masks alike and a dictionary of likely keys cannot
 * be checked without the KEK; without a KEK it is a fixed label (then a
 * guessed key CAN be confirmed: configure a KEK for PII keys).
 */
import { createHmac, hkdfSync } from "node:crypto";

let maskKeyBytes: Buffer = Buffer.from("prism pii mask (no KEK configured)");

/** Derives the masking key from the KEK (src/pii/keyring.ts calls it at start). */
export function setMaskSecret(kek: Buffer): void {
  maskKeyBytes = Buffer.from(hkdfSync("sha256", kek, Buffer.alloc(0), "prism pii key mask", 32));
}

export function maskKey(key: string): string {
  return `***${createHmac("sha256", maskKeyBytes).update(key).digest("hex").slice(0, 8)}`;
}
