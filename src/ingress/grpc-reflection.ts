/**
 * gRPC server reflection (grpcurl, grpcui, Postman) for the Prism services.
 * Reflection needs descriptors, so it loads proto/prism/v1/*.proto with
 * proto-loader once per process; the data path never uses them.
 *
 * Loaded on the first reflection call, not at startup: @grpc/reflection,
 * proto-loader and the parsed descriptors cost an idle worker several MB that
 * most deployments never use. The services are registered at startup with
 * pass-through (Buffer) codecs; the first call loads the real implementation
 * and its codecs, and every message goes through them.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Server, ServerDuplexStream, ServiceDefinition, UntypedHandleCall } from "@grpc/grpc-js";
import { Code } from "../core/errors.js";
import type { PackageDefinition } from "@grpc/proto-loader";

const PROTO_FILES = ["prism/v1/prism.proto", "prism/v1/frame.proto"];
const VERSIONS = ["v1", "v1alpha"] as const;
const METHOD = "ServerReflectionInfo";

const require = createRequire(import.meta.url);

/**
 * The folder holding prism/v1/*.proto: the package root is found by walking up
 * from this file (dist/src/ingress/ when compiled, or wherever the package is
 * installed) to the first folder with a package.json and proto/prism/v1/.
 */
export function findProtoDir(from = dirname(fileURLToPath(import.meta.url))): string | undefined {
  for (let dir = from; ; ) {
    const proto = join(dir, "proto");
    if (existsSync(join(dir, "package.json")) && existsSync(join(proto, PROTO_FILES[0]!))) return proto;
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

let cached: PackageDefinition | undefined;

/** The proto-loader package definition of the Prism protos (cached). Throws when the protos cannot be found. */
export function prismPackageDefinition(): PackageDefinition {
  if (cached) return cached;
  const dir = findProtoDir();
  if (!dir) throw new Error("cannot find proto/prism/v1/prism.proto above the gateway's install folder");
  const { loadSync } = require("@grpc/proto-loader") as typeof import("@grpc/proto-loader");
  cached = loadSync(PROTO_FILES, { includeDirs: [dir], keepCase: true, longs: String, enums: String, defaults: true });
  return cached;
}

/** One loaded reflection service: its real codecs and handler. */
interface Loaded {
  definition: ServiceDefinition;
  handler: (stream: object) => void;
}

let loaded: Map<string, Loaded> | undefined;

/** Loads @grpc/reflection for the Prism protos and captures what it would add to a server. */
function load(): Map<string, Loaded> {
  if (loaded) return loaded;
  const { ReflectionService } = require("@grpc/reflection") as typeof import("@grpc/reflection");
  const byPath = new Map<string, Loaded>();
  const capture = {
    addService(definition: ServiceDefinition, impl: Record<string, (stream: object) => void>) {
      byPath.set(definition[METHOD]!.path, { definition, handler: impl[METHOD]! });
    },
  };
  // @grpc/reflection pins its own proto-loader; the definition shape is the same.
  new ReflectionService(prismPackageDefinition() as any).addToServer(capture as unknown as Server);
  loaded = byPath;
  return byPath;
}

const passThrough = (b: Buffer): Buffer => b;

function lazyDefinition(path: string): ServiceDefinition {
  return {
    [METHOD]: {
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

/** Runs the real handler on a view of the call that decodes requests and encodes responses with the real codecs. */
function lazyHandler(path: string): UntypedHandleCall {
  return (call: ServerDuplexStream<Buffer, Buffer>) => {
    let real: Loaded;
    try {
      real = load().get(path)!;
    } catch (e) {
      call.emit("error", { code: Code.UNIMPLEMENTED, details: `server reflection is unavailable: ${(e as Error).message}` });
      return;
    }
    const m = real.definition[METHOD]!;
    const view = {
      on(event: string, fn: (...args: any[]) => void) {
        if (event !== "data") call.on(event, fn);
        else
          call.on("data", (b: Buffer) => {
            let msg: unknown;
            try {
              msg = m.requestDeserialize(b);
            } catch (e) {
              // What grpc-js answers when its own deserializer fails.
              call.emit("error", { code: Code.INTERNAL, details: `Error deserializing request: ${(e as Error).message}` });
              return;
            }
            fn(msg);
          });
        return view;
      },
      write: (msg: unknown) => call.write(m.responseSerialize(msg) as Buffer),
      end: () => call.end(),
    };
    real.handler(view);
  };
}

/** Adds grpc.reflection.v1 and v1alpha to the server (loaded on their first call). Throws when the protos cannot be found. */
export function addReflection(server: Server): void {
  if (!findProtoDir()) throw new Error("cannot find proto/prism/v1/prism.proto above the gateway's install folder");
  for (const v of VERSIONS) {
    const path = `/grpc.reflection.${v}.ServerReflection/${METHOD}`;
    server.addService(lazyDefinition(path), { [METHOD]: lazyHandler(path) });
  }
}
