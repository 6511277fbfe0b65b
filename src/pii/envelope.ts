/**
 * The ciphertext of one value or payload (`pii: encrypt`), self-describing:
 *
 *   byte 0       version (1)
 *   bytes 1-8    data key id (which of the namespace's data keys)
 *   bytes 9-20   nonce (96 bits, random per value)
 *   …            AES-256-GCM ciphertext
 *   last 16      GCM tag
 *
 * 37 bytes over the plaintext. The additional authenticated data binds a
 * KeyValue value to its key ("kv\0<key>"): a value copied to another key in
 * the backend does not decrypt. Payloads use "msg" (a queue message moves to
 * `<queue>.dlq`, so its name cannot be bound). Random nonces: a data key
 * should encrypt fewer than 2^32 values (NIST SP 800-38D).
 */
import { createCipheriv, createDecipheriv, randomFillSync } from "node:crypto";
import { Code, PrismError } from "../core/errors.js";

export const VERSION = 1;
export const KEY_ID_BYTES = 8;
const NONCE = 12;
const TAG = 16;
export const OVERHEAD = 1 + KEY_ID_BYTES + NONCE + TAG;

export interface DataKey {
  /** 8 bytes. */
  id: Buffer;
  /** 32 bytes. */
  key: Buffer;
}

/** Encrypts and decrypts with a namespace's data keys (the first is the current one). */
export class Cipher {
  private readonly byId = new Map<string, Buffer>();
  private readonly current: DataKey;

  constructor(
    readonly namespace: string,
    keys: readonly DataKey[],
  ) {
    if (keys.length === 0) throw new Error(`namespace "${namespace}": no data key`);
    this.current = keys[0]!;
    for (const k of keys) this.byId.set(k.id.toString("hex"), k.key);
  }

  encrypt(plain: Uint8Array, aad: string): Buffer {
    const out = Buffer.allocUnsafe(OVERHEAD + plain.length);
    out[0] = VERSION;
    this.current.id.copy(out, 1);
    const nonce = out.subarray(1 + KEY_ID_BYTES, 1 + KEY_ID_BYTES + NONCE);
    randomFillSync(nonce);
    const c = createCipheriv("aes-256-gcm", this.current.key, nonce);
    c.setAAD(Buffer.from(aad));
    const body = c.update(plain);
    body.copy(out, 1 + KEY_ID_BYTES + NONCE);
    c.final();
    c.getAuthTag().copy(out, out.length - TAG);
    return out;
  }

  /** Throws DATA_LOSS when `data` is not a ciphertext of this namespace's keys for this aad (plaintext written before, or altered in the backend). */
  decrypt(data: Uint8Array, aad: string): Buffer {
    const b = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (b.length < OVERHEAD || b[0] !== VERSION) throw this.refuse("it is not Prism ciphertext (written before pii: encrypt was set, or not through Prism)");
    const key = this.byId.get(b.subarray(1, 1 + KEY_ID_BYTES).toString("hex"));
    if (key === undefined) throw this.refuse(`its data key ${b.subarray(1, 1 + KEY_ID_BYTES).toString("hex")} is not one of this namespace's`);
    const d = createDecipheriv("aes-256-gcm", key, b.subarray(1 + KEY_ID_BYTES, 1 + KEY_ID_BYTES + NONCE));
    d.setAAD(Buffer.from(aad));
    d.setAuthTag(b.subarray(b.length - TAG));
    const body = d.update(b.subarray(1 + KEY_ID_BYTES + NONCE, b.length - TAG));
    try {
      d.final();
    } catch {
      throw this.refuse("its authentication tag does not match (altered in the backend, or moved from another key)");
    }
    return body;
  }

  private refuse(why: string): PrismError {
    return new PrismError(Code.DATA_LOSS, "PRISM_ERR_PII_DECRYPT", `namespace "${this.namespace}" (pii: encrypt): a stored value cannot be decrypted: ${why}`);
  }
}
