/**
 * Key-encryption keys (security.kek, security.previous_keks) and the data
 * keys they wrap.
 *
 * A data key is 32 random bytes per namespace (more than one when several
 * Prism processes created one at the same moment: every one stays readable,
 * the oldest encrypts). It is stored in the config store (kind `datakey`,
 * name `<namespace>/<id hex>`), wrapped with AES-256-GCM by the KEK, the
 * additional data naming namespace and id (a wrapped key cannot be moved to
 * another namespace). The config store is shared by every Prism process of a
 * gateway (PostgreSQL for a fleet) and survives restarts; the KEK never
 * leaves the processes that read it from its file or variable. Rotating the
 * KEK re-wraps the data keys (`prism keys rotate`): the data stays as it is.
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import type { KekConfig, SecurityConfig } from "../config/schema.js";
import { Cipher, KEY_ID_BYTES, type DataKey } from "./envelope.js";
import { setMaskSecret } from "./mask.js";

/** A data key as stored (kind `datakey`): wrapped, with the KEK that wrapped it. */
export interface WrappedDataKey {
  namespace: string;
  /** 16 hex digits. */
  id: string;
  /** The KEK's id. */
  kek: string;
  alg: "A256GCM";
  /** base64: 12-byte nonce, wrapped key + 16-byte tag. */
  nonce: string;
  wrapped: string;
  createdAtMs: number;
  /** The config-store revision that wrote it (the oldest encrypts); set by the control agent. */
  revision?: number;
}

export const DATAKEY_KIND = "datakey";

/** 32 bytes from hex (64 digits) or base64 (44 characters); `what` names the key in the error. */
export function parseKeyMaterial(text: string, where: string, what = "a KEK"): Buffer {
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Buffer.from(t, "hex");
  if (/^[A-Za-z0-9+/]{43}=?$/.test(t) || /^[A-Za-z0-9_-]{43}$/.test(t)) {
    const b = Buffer.from(t, t.includes("-") || t.includes("_") ? "base64url" : "base64");
    if (b.length === 32) return b;
  }
  throw new Error(`${where}: ${what} is 32 bytes written as 64 hex digits or 44 base64 characters`);
}

/** Reads one 32-byte key from its file or environment variable (a KEK; audit.chain_key too); errors name the field (never the key). */
export function loadKek(k: Pick<KekConfig, "file" | "env">, field: string, dataDir: string, env: NodeJS.ProcessEnv = process.env, what = "a KEK"): Buffer {
  if (k.file !== undefined) {
    const path = isAbsolute(k.file) ? k.file : resolve(dataDir, k.file);
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (e) {
      throw new Error(`${field}.file: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    return parseKeyMaterial(text, `${field}.file (${path})`, what);
  }
  const v = env[k.env!];
  if (v === undefined || v === "") throw new Error(`${field}.env: environment variable ${k.env} is not set`);
  return parseKeyMaterial(v, `${field}.env (${k.env})`, what);
}

const aadOf = (namespace: string, id: string) => Buffer.from(`prism datakey\0${namespace}\0${id}`);

export class Keyring {
  private readonly keks = new Map<string, Buffer>();

  constructor(
    readonly currentId: string,
    keks: Map<string, Buffer>,
  ) {
    for (const [id, k] of keks) this.keks.set(id, k);
    setMaskSecret(this.keks.get(currentId)!);
  }

  /** From security:; undefined without a KEK. Throws naming the field when a KEK cannot be read. */
  static load(security: SecurityConfig | undefined, dataDir: string, env: NodeJS.ProcessEnv = process.env): Keyring | undefined {
    if (security?.kek === undefined) return undefined;
    const keks = new Map<string, Buffer>();
    keks.set(security.kek.id, loadKek(security.kek, "security.kek", dataDir, env));
    for (const [i, k] of (security.previous_keks ?? []).entries()) {
      if (!keks.has(k.id)) keks.set(k.id, loadKek(k, `security.previous_keks[${i}]`, dataDir, env));
    }
    return new Keyring(security.kek.id, keks);
  }

  has(kekId: string): boolean {
    return this.keks.has(kekId);
  }

  /** A new random data key for `namespace`, wrapped with the current KEK. */
  newDataKey(namespace: string, nowMs = Date.now()): WrappedDataKey {
    return this.wrap(namespace, randomBytes(KEY_ID_BYTES).toString("hex"), randomBytes(32), nowMs);
  }

  private wrap(namespace: string, id: string, key: Buffer, createdAtMs: number): WrappedDataKey {
    const nonce = randomBytes(12);
    const c = createCipheriv("aes-256-gcm", this.keks.get(this.currentId)!, nonce);
    c.setAAD(aadOf(namespace, id));
    const wrapped = Buffer.concat([c.update(key), c.final(), c.getAuthTag()]);
    return { namespace, id, kek: this.currentId, alg: "A256GCM", nonce: nonce.toString("base64"), wrapped: wrapped.toString("base64"), createdAtMs };
  }

  unwrap(w: WrappedDataKey): Buffer {
    const kek = this.keks.get(w.kek);
    if (kek === undefined) throw new Error(`namespace "${w.namespace}": data key ${w.id} is wrapped by KEK "${w.kek}", which is neither security.kek nor in security.previous_keks`);
    const b = Buffer.from(w.wrapped, "base64");
    const d = createDecipheriv("aes-256-gcm", kek, Buffer.from(w.nonce, "base64"));
    d.setAAD(aadOf(w.namespace, w.id));
    d.setAuthTag(b.subarray(b.length - 16));
    const key = d.update(b.subarray(0, b.length - 16));
    try {
      d.final();
    } catch {
      throw new Error(`namespace "${w.namespace}": data key ${w.id} does not unwrap with KEK "${w.kek}" (a different key under that id?)`);
    }
    return key;
  }

  /** The same data key wrapped with the current KEK (undefined: it already is). */
  rewrap(w: WrappedDataKey): WrappedDataKey | undefined {
    if (w.kek === this.currentId) return undefined;
    return this.wrap(w.namespace, w.id, this.unwrap(w), w.createdAtMs);
  }

  /** The cipher of a namespace from its wrapped data keys (oldest revision first encrypts). */
  cipher(namespace: string, keys: readonly WrappedDataKey[]): Cipher {
    const sorted = [...keys].sort((a, b) => (a.revision ?? 0) - (b.revision ?? 0) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const data: DataKey[] = sorted.map((w) => ({ id: Buffer.from(w.id, "hex"), key: this.unwrap(w) }));
    return new Cipher(namespace, data);
  }
}
