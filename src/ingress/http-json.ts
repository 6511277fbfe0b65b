/**
 * proto3 JSON ⇄ messages for the HTTP ingress, with strict type checking.
 *
 * Field types come from protobufjs reflection of proto/prism/v1/*.proto, loaded
 * once; each message type is compiled once into a plan (JSON name → field), so a
 * request costs one walk over its JSON. Conversion refuses unknown fields and
 * wrong JSON types with INVALID_ARGUMENT naming the field path
 * (`entries[1].value: expected a base64 string`), then builds the message with
 * the static codec's `fromObject`.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type protobuf from "protobufjs";
import { errors } from "../core/errors.js";
import { METHODS, type MessageCodec } from "../core/methods.js";
import { jsonToStruct } from "../core/struct.js";

// ------------------------------------------------------------------ reflection

let lib: typeof protobuf | undefined;

/**
 * Full protobufjs (parser + reflection), loaded on the first JSON call or
 * OpenAPI request: the binary ingresses use only the static codecs, and an
 * idle worker should not carry the parser and the reflected protos.
 */
export function protobufjs(): typeof protobuf {
  return (lib ??= createRequire(import.meta.url)("protobufjs") as typeof protobuf);
}

/** The repository root: the nearest folder above this module holding package.json and the protos. */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, "package.json")) && existsSync(join(dir, "proto/prism/v1/prism.proto"))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error("http-json: cannot find proto/prism/v1/prism.proto above " + fileURLToPath(import.meta.url));
    dir = up;
  }
}

let root: protobuf.Root | undefined;

/** The reflected prism.v1 protos (snake_case names kept), loaded on first use. */
export function protoRoot(): protobuf.Root {
  if (root === undefined) {
    const dir = join(repoRoot(), "proto/prism/v1");
    const r = new (protobufjs().Root)();
    r.loadSync([join(dir, "prism.proto"), join(dir, "frame.proto")], { keepCase: true });
    r.resolveAll();
    root = r;
  }
  return root;
}

export function reflectType(name: string): protobuf.Type {
  return protoRoot().lookupType(name.includes(".") ? name : `prism.v1.${name}`);
}

/** protobufjs's own camelCase (the property names of the static codecs). */
export const camelCase = (s: string): string => protobufjs().util.camelCase(s);

// ------------------------------------------------------------------ plans

type ScalarKind =
  | "string"
  | "bool"
  | "bytes"
  | "int32"
  | "uint32"
  | "int64"
  | "uint64"
  | "double"
  | "enum"
  | "message";

interface FieldPlan {
  /** The static codec's property name (lowerCamelCase). */
  readonly prop: string;
  readonly kind: ScalarKind;
  readonly repeated: boolean;
  readonly map: boolean;
  readonly keyKind: ScalarKind;
  readonly message: MessagePlan | undefined;
  readonly enumValues: Readonly<Record<string, number>> | undefined;
}

interface MessagePlan {
  readonly fullName: string;
  readonly fields: ReadonlyMap<string, FieldPlan>;
  /** For error messages. */
  readonly names: string;
}

const KIND: Record<string, ScalarKind> = {
  string: "string",
  bool: "bool",
  bytes: "bytes",
  int32: "int32",
  sint32: "int32",
  sfixed32: "int32",
  uint32: "uint32",
  fixed32: "uint32",
  int64: "int64",
  sint64: "int64",
  sfixed64: "int64",
  uint64: "uint64",
  fixed64: "uint64",
  double: "double",
  float: "double",
};

const plans = new Map<string, MessagePlan>();

function kindOf(type: string, resolved: protobuf.ReflectionObject | null): ScalarKind {
  const k = KIND[type];
  if (k !== undefined) return k;
  if (resolved instanceof protobufjs().Enum) return "enum";
  return "message";
}

function planFor(t: protobuf.Type): MessagePlan {
  const key = t.fullName;
  const cached = plans.get(key);
  if (cached) return cached;
  const fields = new Map<string, FieldPlan>();
  const plan: MessagePlan = { fullName: key.replace(/^\./, ""), fields, names: t.fieldsArray.map((f) => camelCase(f.name)).join(", ") };
  plans.set(key, plan); // before recursing: messages may refer to themselves
  const { Enum, MapField, Type } = protobufjs();
  for (const f of t.fieldsArray) {
    const isMap = f instanceof MapField;
    const resolved = f.resolvedType;
    const fp: FieldPlan = {
      prop: camelCase(f.name),
      kind: kindOf(f.type, resolved),
      repeated: f.repeated,
      map: isMap,
      keyKind: isMap ? kindOf((f as protobuf.MapField).keyType, null) : "string",
      message: resolved instanceof Type ? planFor(resolved) : undefined,
      enumValues: resolved instanceof Enum ? resolved.values : undefined,
    };
    fields.set(f.name, fp);
    fields.set(fp.prop, fp);
  }
  return plan;
}

const planByCodec = new WeakMap<MessageCodec, MessagePlan>();

function planOf(codec: MessageCodec, typeName: string): MessagePlan {
  let p = planByCodec.get(codec);
  if (p === undefined) {
    p = planFor(reflectType(typeName));
    planByCodec.set(codec, p);
  }
  return p;
}

// ------------------------------------------------------------------ JSON → message

const BASE64 = /^[A-Za-z0-9+/\-_]*={0,2}$/;
const INT = /^-?[0-9]+$/;
const U64_MAX = 18446744073709551615n;
const I64_MIN = -9223372036854775808n;
const I64_MAX = 9223372036854775807n;

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "object" ? "an object" : `${typeof v} ${JSON.stringify(v)}`.slice(0, 60);
}

function bad(path: string, expected: string, got: unknown): never {
  throw errors.invalidArgument(path, `expected ${expected}, got ${describe(got)}`);
}

function integer(v: unknown, path: string, kind: ScalarKind): number | string {
  let n: number;
  if (typeof v === "number") {
    if (!Number.isInteger(v)) bad(path, "an integer", v);
    n = v;
  } else if (typeof v === "string" && INT.test(v)) {
    if (kind === "int64" || kind === "uint64") {
      const b = BigInt(v);
      if (b < 0n && kind === "uint64") bad(path, "a non-negative integer", v);
      if (kind === "uint64" ? b > U64_MAX : b < I64_MIN || b > I64_MAX) throw errors.invalidArgument(path, `${v} is out of range for ${kind}`);
      n = Number(b);
      // Beyond 2^53 keep the decimal string: fromObject parses it without losing digits.
      if (!Number.isSafeInteger(n)) return v;
    } else n = Number(v);
  } else {
    bad(path, kind === "uint32" || kind === "uint64" ? "a non-negative integer (number or decimal string)" : "an integer (number or decimal string)", v);
  }
  switch (kind) {
    case "int32":
      if (n < -2147483648 || n > 2147483647) throw errors.invalidArgument(path, `${n} is out of range for int32`);
      break;
    case "uint32":
      if (n < 0) bad(path, "a non-negative integer", v);
      if (n > 4294967295) throw errors.invalidArgument(path, `${n} is out of range for uint32`);
      break;
    case "uint64":
      if (n < 0) bad(path, "a non-negative integer", v);
      if (!Number.isSafeInteger(n)) throw errors.invalidArgument(path, `${n} is not exact; send 64-bit integers above 2^53 as decimal strings`);
      break;
    case "int64":
      if (!Number.isSafeInteger(n)) throw errors.invalidArgument(path, `${n} is not exact; send 64-bit integers above 2^53 as decimal strings`);
      break;
  }
  return n;
}

function scalar(fp: FieldPlan, kind: ScalarKind, v: unknown, path: string): unknown {
  switch (kind) {
    case "string":
      return typeof v === "string" ? v : bad(path, "a string", v);
    case "bool":
      return typeof v === "boolean" ? v : bad(path, "true or false", v);
    case "bytes":
      if (typeof v !== "string" || !BASE64.test(v) || v.length % 4 === 1) bad(path, "a base64 string", v);
      return Buffer.from(v, "base64");
    case "double":
      if (typeof v === "number") return v;
      if (v === "NaN" || v === "Infinity" || v === "-Infinity") return Number(v);
      if (typeof v === "string" && v.trim() !== "" && Number.isFinite(Number(v))) return Number(v);
      return bad(path, "a number", v);
    case "enum": {
      const values = fp.enumValues!;
      if (typeof v === "string" && Object.prototype.hasOwnProperty.call(values, v)) return values[v];
      if (typeof v === "number" && Number.isInteger(v)) return v;
      return bad(path, `one of ${Object.keys(values).join(", ")}`, v);
    }
    case "message":
      return message(fp.message!, v, path);
    default:
      return integer(v, path, kind);
  }
}

function message(plan: MessagePlan, v: unknown, path: string): Record<string, unknown> {
  if (v === null || typeof v !== "object" || Array.isArray(v)) bad(path || "request body", `a JSON object (${plan.fullName})`, v);
  // proto3 JSON maps google.protobuf.Struct to any JSON object.
  if (plan.fullName === "google.protobuf.Struct") return jsonToStruct(v as Record<string, unknown>) as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const name in v as Record<string, unknown>) {
    const value = (v as Record<string, unknown>)[name];
    const fpath = path ? `${path}.${name}` : name;
    const fp = plan.fields.get(name);
    if (fp === undefined) throw errors.invalidArgument(fpath, `unknown field (${plan.fullName} has: ${plan.names})`);
    if (Object.prototype.hasOwnProperty.call(out, fp.prop)) throw errors.invalidArgument(fpath, `set twice (as ${fp.prop} and in snake_case)`);
    if (value === null) continue; // proto3 JSON: null is the default
    if (fp.map) {
      if (typeof value !== "object" || Array.isArray(value)) bad(fpath, "an object", value);
      const m: Record<string, unknown> = {};
      for (const k in value as Record<string, unknown>) {
        const kpath = `${fpath}[${JSON.stringify(k)}]`;
        if (fp.keyKind !== "string" && fp.keyKind !== "bool") integer(k, kpath, fp.keyKind);
        m[k] = scalar(fp, fp.kind, (value as Record<string, unknown>)[k], kpath);
      }
      out[fp.prop] = m;
    } else if (fp.repeated) {
      if (!Array.isArray(value)) bad(fpath, "an array", value);
      const a = new Array<unknown>(value.length);
      for (let i = 0; i < value.length; i++) a[i] = scalar(fp, fp.kind, value[i], `${fpath}[${i}]`);
      out[fp.prop] = a;
    } else {
      out[fp.prop] = scalar(fp, fp.kind, value, fpath);
    }
  }
  return out;
}

/**
 * proto3 JSON (already parsed) → a request message of `codec`.
 * Throws PrismError INVALID_ARGUMENT naming the offending field.
 */
export function fromJson<T>(codec: MessageCodec<T>, typeName: string, json: unknown): T {
  return codec.fromObject(message(planOf(codec, typeName), json, ""));
}

/** Loads the reflected protos and compiles every request type's plan (startup, not the first request). */
export function prepareJson(): void {
  for (const m of METHODS) if (!m.streaming) planOf(m.requestType, m.requestTypeName);
}

// ------------------------------------------------------------------ message → JSON

/** proto3 JSON output: lowerCamelCase, bytes as base64, 64-bit integers as numbers, defaults included. */
export const TO_JSON = { longs: Number, bytes: String, defaults: true, arrays: true, objects: true, json: true } as const;

/**
 * A response (message instance or the plain object a handler returned) → JSON
 * text. The static `toObject` reads fields by own-property, so plain objects
 * with Uint8Array/Buffer values convert (bytes to base64) without a copy.
 */
export function toJson(codec: MessageCodec, msg: object): string {
  return JSON.stringify(codec.toObject(msg, TO_JSON));
}
