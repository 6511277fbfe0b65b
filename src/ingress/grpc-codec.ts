/**
 * gRPC service definitions built from the method table (src/core/methods.ts),
 * on the static protobufjs codecs: one definition per service, no proto-loader
 * on the data path.
 *
 * Request decoding never throws into grpc-js (which would answer INTERNAL):
 * a body that does not decode becomes a DecodeFailure, and the handler answers
 * it with INVALID_ARGUMENT naming the message type.
 */
import type { MethodDefinition, ServiceDefinition } from "@grpc/grpc-js";
import { errors, type PrismError } from "../core/errors.js";
import { METHODS, type MessageCodec, type MethodDef } from "../core/methods.js";

/** What requestDeserialize returns for a body that is not a valid message. */
export class DecodeFailure {
  constructor(
    readonly typeName: string,
    readonly cause: unknown,
  ) {}

  toError(): PrismError {
    const why = this.cause instanceof Error ? this.cause.message : String(this.cause);
    return errors.malformed(`malformed prism.v1.${this.typeName}: ${why}`);
  }
}

/** protobufjs writers return Buffers under Node; wrap (no copy) anything else. */
export function asBuffer(u8: Uint8Array): Buffer {
  return Buffer.isBuffer(u8) ? u8 : Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

export function encoder(codec: MessageCodec): (obj: any) => Buffer {
  return (obj) => asBuffer(codec.encode(obj).finish());
}

/** Unary responses arrive already encoded (the handler counts their bytes); anything else is encoded here. */
export function responseEncoder(codec: MessageCodec): (obj: any) => Buffer {
  return (obj) => (obj instanceof Uint8Array ? asBuffer(obj) : asBuffer(codec.encode(obj).finish()));
}

/** The request's size on the wire, kept on the decoded message for the metrics (bytes in). */
export const WIRE_BYTES: unique symbol = Symbol("prism.wireBytes");

/**
 * Decodes a request, or returns a DecodeFailure (never throws).
 *
 * The bytes are read through a plain Uint8Array view (no copy): protobufjs's
 * Buffer reader clamps a string that runs past the end of the body instead of
 * failing, so a truncated request would decode "successfully".
 */
export function safeDecoder(m: MethodDef): (buf: Buffer) => any {
  const codec = m.requestType;
  const name = m.requestTypeName;
  return (buf) => {
    try {
      const msg = codec.decode(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
      msg[WIRE_BYTES] = buf.byteLength;
      return msg;
    } catch (e) {
      return new DecodeFailure(name, e);
    }
  };
}

/** The grpc-js definition of one method; the server side uses requestDeserialize and responseSerialize. */
export function methodDefinition(m: MethodDef): MethodDefinition<any, any> {
  const res = m.responseType;
  return {
    path: m.path,
    requestStream: m.transfer === "upload",
    responseStream: m.streaming || m.transfer === "download",
    requestSerialize: encoder(m.requestType),
    requestDeserialize: safeDecoder(m),
    responseSerialize: responseEncoder(res),
    responseDeserialize: (buf: Buffer) => res.decode(buf),
    originalName: m.name,
  };
}

/** Service name (`KeyValue`, ...) → its definition keyed by method name, with the MethodDefs alongside. */
export function serviceDefinitions(
  methods: readonly MethodDef[] = METHODS,
): Map<string, { definition: ServiceDefinition; methods: MethodDef[] }> {
  const out = new Map<string, { definition: ServiceDefinition; methods: MethodDef[] }>();
  for (const m of methods) {
    let s = out.get(m.service);
    if (!s) out.set(m.service, (s = { definition: {} as ServiceDefinition, methods: [] }));
    (s.definition as Record<string, MethodDefinition<any, any>>)[m.name] = methodDefinition(m);
    s.methods.push(m);
  }
  return out;
}
