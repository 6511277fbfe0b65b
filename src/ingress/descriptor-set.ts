/**
 * The contract's FileDescriptorSet, as protoc builds it from proto/
 * (proto/prism/v1/descriptor.binpb, made by scripts/gen-descriptor.mjs in the
 * build and committed): every .proto under proto/ plus its imports
 * (google/protobuf/struct.proto), real file names, fully-qualified type names,
 * map entries as protoc writes them, comments (source info) included.
 *
 * gRPC server reflection (grpc-reflection.ts) answers from this index, and the
 * HTTP ingress publishes the set (GET /v1/descriptor.bin) and the .proto
 * sources it names (GET /v1/proto/...). Each FileDescriptorProto is served as
 * the exact bytes protoc wrote; the set is only scanned here, never re-encoded.
 *
 * Loaded on first use (a few tens of KB): an idle worker never reads it.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** Where the set lives, relative to proto/. */
export const DESCRIPTOR_SET_FILE = "prism/v1/descriptor.binpb";

/**
 * The folder holding prism/v1/*.proto and the descriptor set: the package root
 * is found by walking up from this file (dist/src/ingress/ when compiled, or
 * wherever the package is installed) to the first folder with a package.json
 * and proto/prism/v1/prism.proto.
 */
export function findProtoDir(from = dirname(fileURLToPath(import.meta.url))): string | undefined {
  for (let dir = from; ; ) {
    const proto = join(dir, "proto");
    if (existsSync(join(dir, "package.json")) && existsSync(join(proto, "prism/v1/prism.proto"))) return proto;
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

/** The descriptor set's path. Throws, saying what is missing, when there is none. */
export function descriptorSetPath(): string {
  const dir = findProtoDir();
  if (!dir) throw new Error("cannot find proto/prism/v1/prism.proto above the gateway's install folder");
  const path = join(dir, DESCRIPTOR_SET_FILE);
  if (!existsSync(path)) throw new Error(`cannot find ${path} (npm run build makes it with protoc: scripts/gen-descriptor.mjs)`);
  return path;
}

// ---------------------------------------------------------------- protobuf wire reading

/** A bounds-checked protobuf reader over one message's bytes. */
export class WireReader {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  /** A varint as a number (exact up to 2^53; field numbers, lengths and enum values all fit). */
  varint(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw new Error("truncated varint");
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * mul;
      if (b < 0x80) return result;
      mul *= 128;
    }
    throw new Error("varint longer than 10 bytes");
  }

  /** The next tag as [field number, wire type]. */
  tag(): [number, number] {
    const t = this.varint();
    const field = Math.floor(t / 8);
    if (field === 0) throw new Error("field number 0");
    return [field, t & 7];
  }

  bytes(): Uint8Array {
    const n = this.varint();
    if (n > this.buf.length - this.pos) throw new Error("length-delimited field runs past the end of the message");
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  string(): string {
    return UTF8.decode(this.bytes());
  }

  /** Skips a field of the given wire type (groups are refused: nothing here uses them). */
  skip(wire: number): void {
    switch (wire) {
      case 0:
        this.varint();
        return;
      case 1:
        this.advance(8);
        return;
      case 2:
        this.bytes();
        return;
      case 5:
        this.advance(4);
        return;
      default:
        throw new Error(`unsupported wire type ${wire}`);
    }
  }

  private advance(n: number): void {
    if (n > this.buf.length - this.pos) throw new Error("fixed-size field runs past the end of the message");
    this.pos += n;
  }
}

/** Strict UTF-8: proto3 strings must be valid UTF-8. */
export const UTF8 = new TextDecoder("utf-8", { fatal: true });

/** Calls `fn(field, wire, reader)` per field; `fn` must consume the field (or return false to skip it). */
function eachField(buf: Uint8Array, fn: (field: number, wire: number, r: WireReader) => boolean | void): void {
  const r = new WireReader(buf);
  while (!r.done) {
    const [field, wire] = r.tag();
    if (fn(field, wire, r) === false) r.skip(wire);
  }
}

/** Reads the `name` (field 1) of a descriptor message, calling `more` for its other length-delimited fields. */
function named(buf: Uint8Array, more?: (field: number, bytes: Uint8Array) => void): string {
  let name = "";
  eachField(buf, (field, wire, r) => {
    if (wire !== 2) return false;
    const b = r.bytes();
    if (field === 1) name = UTF8.decode(b);
    else more?.(field, b);
  });
  return name;
}

// ---------------------------------------------------------------- the index

export interface DescriptorFile {
  /** As protoc names it: prism/v1/prism.proto, google/protobuf/struct.proto. */
  readonly name: string;
  readonly package: string;
  /** The serialized FileDescriptorProto, exactly as protoc wrote it. */
  readonly bytes: Uint8Array;
  /** Its imports, in declaration order. */
  readonly dependencies: readonly string[];
}

export interface DescriptorIndex {
  /** The whole FileDescriptorSet (GET /v1/descriptor.bin). */
  readonly set: Buffer;
  /** Every file by name, in the set's order (dependencies first, as protoc writes them). */
  readonly files: ReadonlyMap<string, DescriptorFile>;
  /** Every fully-qualified symbol (no leading dot) → the file defining it: messages, enums, enum values, fields, oneofs, services, methods, extensions. */
  readonly symbols: ReadonlyMap<string, string>;
  /** Fully-qualified message names. */
  readonly messages: ReadonlySet<string>;
  /** The services, fully qualified, in the set's order. */
  readonly services: readonly string[];
  /** Extensions: extendee (no leading dot) → field number → file. */
  readonly extensions: ReadonlyMap<string, ReadonlyMap<number, string>>;
}

/** Indexes a serialized FileDescriptorSet. Throws on malformed input. */
export function indexDescriptorSet(set: Buffer): DescriptorIndex {
  const files = new Map<string, DescriptorFile>();
  const symbols = new Map<string, string>();
  const messages = new Set<string>();
  const services: string[] = [];
  const extensions = new Map<string, Map<number, string>>();

  const add = (symbol: string, file: string) => {
    if (!symbols.has(symbol)) symbols.set(symbol, file);
  };
  const scoped = (scope: string, name: string) => (scope ? `${scope}.${name}` : name);

  const extension = (buf: Uint8Array, scope: string, file: string) => {
    let name = "";
    let extendee = "";
    let number = 0;
    eachField(buf, (field, wire, r) => {
      if (field === 1 && wire === 2) name = r.string();
      else if (field === 2 && wire === 2) extendee = r.string().replace(/^\./, "");
      else if (field === 3 && wire === 0) number = r.varint();
      else return false;
    });
    add(scoped(scope, name), file);
    if (extendee) {
      let byNumber = extensions.get(extendee);
      if (!byNumber) extensions.set(extendee, (byNumber = new Map()));
      byNumber.set(number, file);
    }
  };

  // Enum values are scoped like their enum (C++ scoping rules): siblings of the enum, not its children.
  const enumType = (buf: Uint8Array, scope: string, file: string) => {
    const values: string[] = [];
    const name = named(buf, (field, b) => field === 2 && values.push(named(b)));
    add(scoped(scope, name), file);
    for (const v of values) add(scoped(scope, v), file);
  };

  const message = (buf: Uint8Array, scope: string, file: string) => {
    const parts: [number, Uint8Array][] = [];
    const full = scoped(scope, named(buf, (field, b) => parts.push([field, b])));
    add(full, file);
    messages.add(full);
    for (const [field, b] of parts) {
      if (field === 2 || field === 8) add(`${full}.${named(b)}`, file); // field, oneof_decl
      else if (field === 3) message(b, full, file); // nested_type
      else if (field === 4) enumType(b, full, file); // enum_type
      else if (field === 6) extension(b, full, file); // extension
    }
  };

  eachField(set, (field, wire, r) => {
    if (field !== 1 || wire !== 2) return false;
    const bytes = r.bytes();
    let name = "";
    let pkg = "";
    const dependencies: string[] = [];
    const parts: [number, Uint8Array][] = [];
    eachField(bytes, (f, w, fr) => {
      if (w !== 2) return false;
      const b = fr.bytes();
      if (f === 1) name = UTF8.decode(b);
      else if (f === 2) pkg = UTF8.decode(b);
      else if (f === 3) dependencies.push(UTF8.decode(b));
      else parts.push([f, b]);
    });
    if (!name) throw new Error("a FileDescriptorProto without a name");
    for (const [f, b] of parts) {
      if (f === 4) message(b, pkg, name);
      else if (f === 5) enumType(b, pkg, name);
      else if (f === 7) extension(b, pkg, name);
      else if (f === 6) {
        const methods: string[] = [];
        const svc = scoped(pkg, named(b, (mf, mb) => mf === 2 && methods.push(named(mb))));
        add(svc, name);
        services.push(svc);
        for (const m of methods) add(`${svc}.${m}`, name);
      }
    }
    files.set(name, { name, package: pkg, bytes, dependencies });
  });
  return { set, files, symbols, messages, services, extensions };
}

let cached: DescriptorIndex | undefined;

/** The contract's descriptor index (read and indexed once). Throws when the set is missing or malformed. */
export function descriptorIndex(): DescriptorIndex {
  if (cached) return cached;
  const path = descriptorSetPath();
  try {
    cached = indexDescriptorSet(readFileSync(path));
  } catch (e) {
    throw new Error(`${path}: not a FileDescriptorSet (${(e as Error).message})`);
  }
  return cached;
}

const sources = new Map<string, Buffer | null>();

/**
 * The text of a .proto file the set names, read from proto/ (cached), or
 * undefined when the set does not name it or proto/ does not hold it (the
 * imported well-known types ship with protoc, not with Prism). Names come
 * from the set only, so no request path ever reaches the file system.
 */
export function protoSource(name: string): Buffer | undefined {
  const index = descriptorIndex();
  if (!index.files.has(name)) return undefined;
  let text = sources.get(name);
  if (text === undefined) {
    const path = join(findProtoDir()!, name);
    text = existsSync(path) ? readFileSync(path) : null;
    sources.set(name, text);
  }
  return text ?? undefined;
}
