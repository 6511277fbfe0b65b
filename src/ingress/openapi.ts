/**
 * The OpenAPI 3.1 document of the HTTP ingress, generated from the method table
 * (src/core/methods.ts) and the reflected protos, so it cannot drift from the
 * routes. Built once, on first request.
 */
import type protobuf from "protobufjs";
import { METHODS } from "../core/methods.js";
import { camelCase, protobufjs, reflectType } from "./http-json.js";
import { takesIdempotencyKey } from "./idempotency-header.js";

type Schema = Record<string, unknown>;

const REF = (name: string) => ({ $ref: `#/components/schemas/${name}` });

const SCALARS: Record<string, Schema> = {
  string: { type: "string" },
  bool: { type: "boolean" },
  bytes: { type: "string", contentEncoding: "base64" },
  int32: { type: "integer", format: "int32" },
  sint32: { type: "integer", format: "int32" },
  sfixed32: { type: "integer", format: "int32" },
  uint32: { type: "integer", minimum: 0, maximum: 4294967295 },
  fixed32: { type: "integer", minimum: 0, maximum: 4294967295 },
  int64: { oneOf: [{ type: "integer" }, { type: "string", pattern: "^-?[0-9]+$" }], format: "int64" },
  sint64: { oneOf: [{ type: "integer" }, { type: "string", pattern: "^-?[0-9]+$" }], format: "int64" },
  sfixed64: { oneOf: [{ type: "integer" }, { type: "string", pattern: "^-?[0-9]+$" }], format: "int64" },
  uint64: { oneOf: [{ type: "integer", minimum: 0 }, { type: "string", pattern: "^[0-9]+$" }], format: "uint64" },
  fixed64: { oneOf: [{ type: "integer", minimum: 0 }, { type: "string", pattern: "^[0-9]+$" }], format: "uint64" },
  double: { type: "number" },
  float: { type: "number" },
};

function collect(t: protobuf.Type, out: Record<string, Schema>): string {
  const name = t.fullName.replace(/^\./, "");
  if (out[name]) return name;
  const properties: Record<string, Schema> = {};
  out[name] = {
    type: "object",
    description: `${name} as proto3 JSON (lowerCamelCase names; snake_case accepted on input; unknown fields refused).`,
    properties,
  };
  const { Enum, MapField, Type } = protobufjs();
  for (const f of t.fieldsArray) {
    let s: Schema;
    const r = f.resolvedType;
    if (r instanceof Type) s = REF(collect(r, out));
    else if (r instanceof Enum) s = { type: "string", enum: Object.keys(r.values) };
    else s = SCALARS[f.type] ?? {};
    if (f instanceof MapField) s = { type: "object", additionalProperties: s };
    else if (f.repeated) s = { type: "array", items: s };
    properties[camelCase(f.name)] = s;
  }
  return name;
}

const errorResponse = { description: "Error", content: { "application/json": { schema: REF("Error") } } };

function build(): object {
  const schemas: Record<string, Schema> = {
    Error: {
      type: "object",
      required: ["error"],
      properties: {
        error: {
          type: "object",
          required: ["code", "status", "reason", "message"],
          properties: {
            code: { type: "integer", description: "gRPC status code" },
            status: { type: "string", description: "gRPC status name, e.g. NOT_FOUND" },
            reason: { type: "string", description: "stable PRISM_ERR_* reason" },
            message: { type: "string", description: "names the field, key or namespace at fault" },
          },
        },
      },
    },
  };
  const common = [
    { $ref: "#/components/parameters/timeout" },
    { $ref: "#/components/parameters/priority" },
    { $ref: "#/components/parameters/traceparent" },
  ];
  const nsParam = { name: "namespace", in: "path", required: true, schema: { type: "string" } };
  const keyParam = {
    name: "key",
    in: "path",
    required: true,
    description: "Everything after /kv/, percent-decoded: any UTF-8, `/` included (literal or %2F).",
    schema: { type: "string" },
  };
  const paths: Record<string, unknown> = {
    "/healthz": {
      get: {
        summary: "Liveness",
        responses: { "200": { description: "Serving", content: { "application/json": { schema: { type: "object", properties: { status: { type: "string" } } } } } } },
      },
    },
    "/v1/openapi.json": { get: { summary: "This document", responses: { "200": { description: "OpenAPI 3.1" } } } },
    "/v1/descriptor.bin": {
      get: {
        summary: "The contract as a google.protobuf.FileDescriptorSet (protoc --include_imports --include_source_info), for codegen and generic gRPC clients",
        responses: { "200": { description: "The serialized FileDescriptorSet", content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } } },
      },
    },
    "/v1/proto": { get: { summary: "The .proto files of the contract", responses: { "200": { description: "Their names and URLs, and the imports that ship with protoc" } } } },
    "/v1/proto/{file}": {
      parameters: [{ name: "file", in: "path", required: true, description: "A file as /v1/proto lists it, e.g. prism/v1/prism.proto", schema: { type: "string" } }],
      get: { summary: "One .proto file", responses: { "200": { description: "Its source", content: { "text/plain": { schema: { type: "string" } } } }, "404": errorResponse } },
    },
    "/v1/ns/{namespace}/kv/{key}": {
      parameters: [nsParam, keyParam, ...common],
      get: {
        summary: "Read a value as raw bytes",
        responses: {
          "200": {
            description: "The value",
            headers: { "X-Prism-Version": { schema: { type: "integer" } } },
            content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } },
          },
          "404": errorResponse,
          default: errorResponse,
        },
      },
      head: {
        summary: "Like GET, without the body",
        responses: { "200": { description: "Present", headers: { "X-Prism-Version": { schema: { type: "integer" } } } }, "404": { description: "Absent" } },
      },
      put: {
        summary: "Write a value (the body's raw bytes)",
        parameters: [
          { name: "ttl", in: "query", description: "Time to live in seconds", schema: { type: "integer", minimum: 0 } },
          { name: "If-None-Match", in: "header", description: "`*`: write only if absent", schema: { type: "string", enum: ["*"] } },
          { name: "If-Match", in: "header", description: "Compare-and-set: the expected current version (0: must be absent)", schema: { type: "integer", minimum: 0 } },
          { $ref: "#/components/parameters/idempotencyKey" },
        ],
        requestBody: { required: false, content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } },
        responses: {
          "200": { description: "Written", content: { "application/json": { schema: { type: "object", properties: { version: { type: "integer" } } } } } },
          "412": errorResponse,
          "413": errorResponse,
          default: errorResponse,
        },
      },
      delete: {
        summary: "Delete a key",
        parameters: [{ $ref: "#/components/parameters/idempotencyKey" }],
        responses: {
          "200": { description: "Deleted or absent", content: { "application/json": { schema: { type: "object", properties: { deleted: { type: "boolean" } } } } } },
          default: errorResponse,
        },
      },
    },
    "/v1/ns/{namespace}/subscribe": {
      get: {
        summary: "Subscribe (Server-Sent Events)",
        description:
          "`event: ready` once the subscription is live, then `event: message` per message (data: prism.v1.PubSubMessage as proto3 JSON). " +
          "`event: error` (data: the Error body) ends the stream, also when the client reads too slowly.",
        parameters: [nsParam, { name: "pattern", in: "query", required: true, schema: { type: "string" }, example: "orders.*" }, ...common],
        responses: { "200": { description: "An event stream", content: { "text/event-stream": { schema: { type: "string" } } } }, default: errorResponse },
      },
    },
  };
  // ClaimCheck payloads: raw bodies streamed both ways (src/ingress/transfer.ts).
  const claimHeaders = { "X-Prism-Claim-Id": { schema: { type: "string" } }, "X-Prism-Sha256": { schema: { type: "string" } }, "X-Prism-Size": { schema: { type: "integer" } } };
  paths["/v1/ns/{namespace}/payloads"] = {
    parameters: [nsParam, ...common],
    put: {
      summary: "Upload a payload (claim-check namespaces): the body, streamed, of any size up to options.max_payload_bytes",
      parameters: [
        ...["key", "queue", "topic", "stream"].map((name) => ({ name, in: "query", description: `Where the claim goes once stored (at most one of key, queue, topic, stream)`, schema: { type: "string" } })),
        { name: "ttl", in: "query", description: "The key's TTL, or the payload's life for messages (seconds)", schema: { type: "integer", minimum: 0 } },
        { name: "sha256", in: "query", description: "Expected hex SHA-256 (also X-Prism-Sha256), checked when the upload ends", schema: { type: "string" } },
        { name: "if_absent", in: "query", description: "key: write the claim only if the key is absent (also If-None-Match: *)", schema: { type: "boolean" } },
      ],
      requestBody: { required: true, content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } },
      responses: { "200": { description: "Stored: {claim: {id, size, sha256, ...}, version | message_id | offset}", content: { "application/json": { schema: { type: "object" } } } }, default: errorResponse },
    },
    get: {
      summary: "Stream the payload a key holds (?key=)",
      parameters: [{ name: "key", in: "query", required: true, schema: { type: "string" } }],
      responses: { "200": { description: "The bytes", headers: claimHeaders, content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } }, default: errorResponse },
    },
  };
  paths["/v1/ns/{namespace}/payloads/{claim_id}"] = {
    parameters: [nsParam, { name: "claim_id", in: "path", required: true, schema: { type: "string" } }, ...common],
    get: {
      summary: "Stream a payload, whole (SHA-256 checked: a mismatch cuts the body short) or one Range",
      parameters: [{ name: "Range", in: "header", description: "bytes=FIRST-[LAST]", schema: { type: "string" } }],
      responses: { "200": { description: "The bytes", headers: claimHeaders, content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } } }, "206": { description: "The range" }, default: errorResponse },
    },
    head: { summary: "The claim, as headers", responses: { "200": { description: "Present", headers: claimHeaders }, default: errorResponse } },
    delete: { summary: "Delete a payload", responses: { "200": { description: "{deleted}" }, default: errorResponse } },
  };
  for (const m of METHODS) {
    if (m.streaming || m.transfer !== undefined) continue;
    const req = collect(reflectType(m.requestTypeName), schemas);
    const res = collect(reflectType(m.responseTypeName), schemas);
    paths[`/v1/${m.service}/${m.name}`] = {
      post: {
        operationId: `${m.service}.${m.name}`,
        tags: [m.service],
        parameters: takesIdempotencyKey(m.requestTypeName) ? [...common, { $ref: "#/components/parameters/idempotencyKey" }] : common,
        requestBody: { required: false, content: { "application/json": { schema: REF(req) } } },
        responses: { "200": { description: "OK", content: { "application/json": { schema: REF(res) } } }, default: errorResponse },
      },
    };
  }
  collect(reflectType("PubSubMessage"), schemas);
  return {
    openapi: "3.1.0",
    info: { title: "Prism HTTP/JSON API", version: "v1", description: "See docs/protocol.md. Errors map gRPC codes to HTTP statuses." },
    paths,
    components: {
      schemas,
      parameters: {
        timeout: { name: "x-prism-timeout-ms", in: "header", description: "Deadline in milliseconds", schema: { type: "integer", minimum: 1 } },
        priority: { name: "x-prism-priority", in: "header", schema: { type: "string", enum: ["critical", "high", "normal", "low"] } },
        traceparent: { name: "traceparent", in: "header", description: "W3C trace context", schema: { type: "string" } },
        idempotencyKey: {
          name: "Idempotency-Key",
          in: "header",
          description: "The request's idempotency_key: a retry with the same key within the namespace's idempotency_window_seconds answers the first call's result without a second effect (README: Idempotency keys)",
          schema: { type: "string", maxLength: 255 },
        },
      },
    },
  };
}

let doc: Buffer | undefined;

/** The document as UTF-8 JSON bytes (built once). */
export function openApiDocument(): Buffer {
  return (doc ??= Buffer.from(JSON.stringify(build())));
}
