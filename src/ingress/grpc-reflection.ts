/**
 * gRPC server reflection (grpcurl, grpcui, Postman) for the Prism services.
 * Reflection needs descriptors, so it loads proto/prism/v1/*.proto with
 * proto-loader once per process; the data path never uses them.
 */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Server } from "@grpc/grpc-js";
import { loadSync, type PackageDefinition } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";

const PROTO_FILES = ["prism/v1/prism.proto", "prism/v1/frame.proto"];

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
  cached = loadSync(PROTO_FILES, { includeDirs: [dir], keepCase: true, longs: String, enums: String, defaults: true });
  return cached;
}

/** Adds grpc.reflection.v1 and v1alpha to the server. */
export function addReflection(server: Server): void {
  // @grpc/reflection pins its own proto-loader; the definition shape is the same.
  new ReflectionService(prismPackageDefinition() as any).addToServer(server);
}
