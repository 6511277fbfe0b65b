/**
 * Normalising decoded messages so all three transports hand back the same
 * shapes: bytes as plain Uint8Array (never Buffer), 64-bit integers as numbers.
 */
import type { Codec } from "./methods.js";

/** Long (protobufjs decodes uint64 to Long when the `long` package is present) → number. */
export function num(v: unknown): number {
  if (typeof v === "number") return v;
  if (v == null) return 0;
  if (typeof v === "object" && typeof (v as { toNumber?: unknown }).toNumber === "function") {
    return (v as { toNumber(): number }).toNumber();
  }
  return Number(v);
}

/**
 * Any byte view (Buffer included) → a plain Uint8Array that owns its memory.
 * Decoded bytes are views into the received frame (often a 64 KiB socket
 * chunk); copying keeps a small value from pinning the whole chunk.
 */
export function bytes(v: Uint8Array | null | undefined): Uint8Array {
  return v && v.length > 0 ? new Uint8Array(v) : new Uint8Array(0);
}

/** UTF-8 for strings; byte views pass through. */
export function toBytes(v: Uint8Array | string): Uint8Array {
  return typeof v === "string" ? Buffer.from(v, "utf8") : v;
}

/** A decoded map field (possibly protobufjs' frozen shared empty object) → a fresh plain object. */
export function attrs(v: Record<string, string> | null | undefined): Record<string, string> {
  return v ? { ...v } : {};
}

const TO_OBJECT = { longs: Number, defaults: true, arrays: true, objects: true } as const;

/** A decoded message → a plain object with every field, numbers for 64-bit ints, Uint8Array bytes. */
export function toPlain(type: Codec, msg: unknown): Record<string, unknown> {
  return normalize(type.toObject(msg, TO_OBJECT)) as Record<string, unknown>;
}

function normalize(v: unknown): unknown {
  if (v === null || typeof v !== "object") return v;
  if (v instanceof Uint8Array) return bytes(v);
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = normalize(v[i]);
    return v;
  }
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) o[k] = normalize(o[k]);
  return o;
}

/** google.protobuf.Struct as protobufjs objects hold it. */
export interface StructObject {
  fields: Record<string, unknown>;
}

function toValue(v: unknown): unknown {
  if (v === null || v === undefined) return { nullValue: 0 };
  if (typeof v === "string") return { stringValue: v };
  if (typeof v === "number") return { numberValue: v };
  if (typeof v === "boolean") return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  return { structValue: toStruct(v as Record<string, unknown>) };
}

/** A plain JSON object → google.protobuf.Struct (Admin entries over gRPC and WebSocket). */
export function toStruct(o: Record<string, unknown>): StructObject {
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) fields[k] = toValue(v);
  return { fields };
}

function fromValue(v: any): unknown {
  if (!v) return null;
  if (v.structValue != null) return fromStruct(v.structValue);
  if (v.listValue != null) return (v.listValue.values ?? []).map(fromValue);
  if (v.stringValue != null) return v.stringValue;
  if (v.numberValue != null) return v.numberValue;
  if (v.boolValue != null) return v.boolValue;
  return null;
}

/** google.protobuf.Struct → plain JSON (proto3 JSON writes a Struct as the object itself). */
export function fromStruct(s: { fields?: Record<string, unknown> | null } | null | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s?.fields ?? {})) out[k] = fromValue(v);
  return out;
}
