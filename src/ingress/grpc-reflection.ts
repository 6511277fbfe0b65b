/**
 * gRPC server reflection (grpcurl, grpcui, Postman, Evans, grpcio's
 * ProtoReflectionDescriptorDatabase) for the Prism services:
 * grpc.reflection.v1 and v1alpha, identical on the wire, on both gRPC servers
 * (this file adapts it to grpc-js; grpc-h2-reflection.ts to node:http2).
 *
 * The answers come from the FileDescriptorSet protoc builds from proto/
 * (descriptor-set.ts), so a client gets the real files: prism/v1/prism.proto
 * importing google/protobuf/struct.proto, fully-qualified type names, map
 * entries as protoc writes them. The protocol, as grpc-go and grpc C++ serve it:
 *
 * - file_by_filename, file_containing_symbol (messages, nested messages, enums,
 *   enum values, fields, oneofs, services, methods, extensions): the file
 *   first, then its transitive imports not yet sent on this stream (a client
 *   keeps what it received; the file asked for is always sent).
 * - file_containing_extension: the file defining that extension (none exist).
 * - all_extension_numbers_of_type: the type's extension numbers (empty).
 * - list_services: the Prism services (reflection itself is not listed).
 * - Unknown files, symbols, types and extensions: error_response NOT_FOUND;
 *   the stream stays open. A request that cannot be decoded ends the stream
 *   with INVALID_ARGUMENT.
 *
 * Nothing is loaded until the first reflection call.
 */
import type { Server, ServerDuplexStream, ServiceDefinition, UntypedHandleCall } from "@grpc/grpc-js";
import { Code, errors } from "../core/errors.js";
import { descriptorIndex, descriptorSetPath, WireReader, type DescriptorIndex } from "./descriptor-set.js";

export const REFLECTION_VERSIONS = ["v1", "v1alpha"] as const;
export const REFLECTION_METHOD = "ServerReflectionInfo";
export const REFLECTION_PATHS: ReadonlySet<string> = new Set(REFLECTION_VERSIONS.map((v) => `/grpc.reflection.${v}.ServerReflection/${REFLECTION_METHOD}`));

// ---------------------------------------------------------------- wire writing

/** `numbers` as consecutive varints (negative int32s: ten-byte two's complement, as protobuf writes them). */
function varints(numbers: readonly number[]): Uint8Array {
  const out: number[] = [];
  for (const n of numbers) {
    let v = n < 0 ? BigInt.asUintN(64, BigInt(n)) : BigInt(n);
    do {
      const b = Number(v & 0x7fn);
      v >>= 7n;
      out.push(v > 0n ? b | 0x80 : b);
    } while (v > 0n);
  }
  return Uint8Array.from(out);
}

/** A minimal protobuf writer: the reflection responses are a handful of fields. */
class Writer {
  private readonly parts: Uint8Array[] = [];
  private size = 0;

  private push(b: Uint8Array): void {
    this.parts.push(b);
    this.size += b.length;
  }

  private varint(n: number): void {
    this.push(varints([n]));
  }

  uint(field: number, n: number): this {
    this.varint(field * 8);
    this.varint(n);
    return this;
  }

  bytes(field: number, b: Uint8Array): this {
    this.varint(field * 8 + 2);
    this.varint(b.length);
    this.push(b);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, Buffer.from(s, "utf8"));
  }

  finish(): Buffer {
    return Buffer.concat(this.parts, this.size);
  }
}

// ---------------------------------------------------------------- the protocol

/** ServerReflectionRequest, decoded. */
interface Request {
  host: string;
  /** The oneof message_request: its field number (3-7) and value; undefined when unset. */
  kind?: number;
  name?: string;
  extension?: { type: string; number: number };
}

const FILE_BY_FILENAME = 3;
const FILE_CONTAINING_SYMBOL = 4;
const FILE_CONTAINING_EXTENSION = 5;
const ALL_EXTENSION_NUMBERS_OF_TYPE = 6;
const LIST_SERVICES = 7;

function decodeRequest(buf: Uint8Array): Request {
  const req: Request = { host: "" };
  const r = new WireReader(buf);
  while (!r.done) {
    const [field, wire] = r.tag();
    if (field === 1 && wire === 2) req.host = r.string();
    else if (wire === 2 && (field === FILE_BY_FILENAME || field === FILE_CONTAINING_SYMBOL || field === ALL_EXTENSION_NUMBERS_OF_TYPE || field === LIST_SERVICES)) {
      req.kind = field;
      req.name = r.string();
      req.extension = undefined;
    } else if (wire === 2 && field === FILE_CONTAINING_EXTENSION) {
      // ExtensionRequest { string containing_type = 1; int32 extension_number = 2; }
      const ext = { type: "", number: 0 };
      const er = new WireReader(r.bytes());
      while (!er.done) {
        const [f, w] = er.tag();
        if (f === 1 && w === 2) ext.type = er.string();
        else if (f === 2 && w === 0) ext.number = er.varint() | 0;
        else er.skip(w);
      }
      req.kind = field;
      req.name = undefined;
      req.extension = ext;
    } else r.skip(wire);
  }
  return req;
}

/** A name from a request, short enough for an error message. */
const clip = (s: string): string => (s.length > 200 ? `${s.slice(0, 200)}…` : s);

/** ErrorResponse (field 7). */
function errorResponse(code: number, message: string): Buffer {
  return new Writer().uint(1, code).string(2, message).finish();
}

/**
 * The state of one ServerReflectionInfo stream: which files it has already
 * been sent. `answer` turns one encoded ServerReflectionRequest into one
 * encoded ServerReflectionResponse.
 */
export class ReflectionSession {
  private readonly sent = new Set<string>();

  constructor(private readonly index: DescriptorIndex) {}

  /** Answers one request. Throws INVALID_ARGUMENT (PrismError) when it cannot be decoded. */
  answer(bytes: Uint8Array): Buffer {
    let req: Request;
    try {
      req = decodeRequest(bytes);
    } catch (e) {
      throw errors.malformed(`malformed grpc.reflection request: ${(e as Error).message}`);
    }
    const out = new Writer();
    if (req.host) out.string(1, req.host); // valid_host
    out.bytes(2, bytes); // original_request: the request as received
    const [field, body] = this.respond(req);
    return out.bytes(field, body).finish();
  }

  /** The message_response oneof: its field number and encoded message. */
  private respond(req: Request): [number, Buffer] {
    const ix = this.index;
    const name = (req.name ?? "").replace(/^\./, "");
    switch (req.kind) {
      case FILE_BY_FILENAME: {
        if (!ix.files.has(req.name!)) return [7, errorResponse(Code.NOT_FOUND, `file not found: ${clip(req.name!)}`)];
        return [4, this.files(req.name!)];
      }
      case FILE_CONTAINING_SYMBOL: {
        const file = ix.symbols.get(name);
        if (file === undefined) return [7, errorResponse(Code.NOT_FOUND, `symbol not found: ${clip(req.name!)}`)];
        return [4, this.files(file)];
      }
      case FILE_CONTAINING_EXTENSION: {
        const { type, number } = req.extension!;
        const file = ix.extensions.get(type.replace(/^\./, ""))?.get(number);
        if (file === undefined) return [7, errorResponse(Code.NOT_FOUND, `extension not found: ${clip(type)} ${number}`)];
        return [4, this.files(file)];
      }
      case ALL_EXTENSION_NUMBERS_OF_TYPE: {
        if (!ix.messages.has(name)) return [7, errorResponse(Code.NOT_FOUND, `type not found: ${clip(req.name!)}`)];
        // ExtensionNumberResponse { string base_type_name = 1; repeated int32 extension_number = 2; } (packed)
        const w = new Writer().string(1, name);
        const numbers = [...(ix.extensions.get(name)?.keys() ?? [])].sort((a, b) => a - b);
        if (numbers.length) w.bytes(2, varints(numbers));
        return [5, w.finish()];
      }
      case LIST_SERVICES: {
        // ListServiceResponse { repeated ServiceResponse service = 1; } ServiceResponse { string name = 1; }
        const w = new Writer();
        for (const s of ix.services) w.bytes(1, new Writer().string(1, s).finish());
        return [6, w.finish()];
      }
      default:
        return [7, errorResponse(Code.INVALID_ARGUMENT, "the request sets none of file_by_filename, file_containing_symbol, file_containing_extension, all_extension_numbers_of_type, list_services")];
    }
  }

  /** FileDescriptorResponse: `name`, then its transitive imports this stream has not been sent yet. */
  private files(name: string): Buffer {
    const w = new Writer();
    const queue = [name];
    const queued = new Set(queue);
    for (let i = 0; i < queue.length; i++) {
      const f = this.index.files.get(queue[i]!);
      if (!f) continue;
      if (i === 0 || !this.sent.has(f.name)) w.bytes(1, f.bytes);
      this.sent.add(f.name);
      for (const d of f.dependencies) {
        if (!queued.has(d)) {
          queued.add(d);
          queue.push(d);
        }
      }
    }
    return w.finish();
  }
}


/** A new reflection stream's state, or the reason reflection is unavailable (missing or malformed descriptor set). */
export function newReflectionSession(): ReflectionSession {
  return new ReflectionSession(descriptorIndex());
}

// ---------------------------------------------------------------- grpc-js

const passThrough = (b: Buffer): Buffer => b;

function definition(path: string): ServiceDefinition {
  return {
    [REFLECTION_METHOD]: {
      path,
      requestStream: true,
      responseStream: true,
      requestSerialize: passThrough,
      requestDeserialize: passThrough,
      responseSerialize: passThrough,
      responseDeserialize: passThrough,
      originalName: "serverReflectionInfo",
    },
  } as ServiceDefinition;
}

/** One ServerReflectionInfo call on grpc-js: a response per request, OK when the client half-closes. */
const handler: UntypedHandleCall = (call: ServerDuplexStream<Buffer, Buffer>) => {
  let session: ReflectionSession;
  try {
    session = newReflectionSession();
  } catch (e) {
    call.emit("error", { code: Code.UNIMPLEMENTED, details: `server reflection is unavailable: ${(e as Error).message}` });
    return;
  }
  let over = false;
  call.on("error", () => (over = true)); // cancelled by the client
  call.on("data", (b: Buffer) => {
    if (over) return;
    let out: Buffer;
    try {
      out = session.answer(b);
    } catch (e) {
      over = true;
      call.emit("error", { code: Code.INVALID_ARGUMENT, details: (e as Error).message });
      return;
    }
    call.write(out);
  });
  call.on("end", () => {
    if (over) return;
    over = true;
    call.end();
  });
};

/** Adds grpc.reflection.v1 and v1alpha to the server. Throws when the descriptor set cannot be found. */
export function addReflection(server: Server): void {
  descriptorSetPath();
  for (const path of REFLECTION_PATHS) server.addService(definition(path), { [REFLECTION_METHOD]: handler });
}
