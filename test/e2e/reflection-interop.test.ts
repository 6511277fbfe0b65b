// Server reflection and the published contract, as generic clients use them
// (grpcurl, Postman, Evans, anything on grpcio): a Python client that knows
// only the address (test/interop/reflection_client.py, Debian's python3-grpcio
// and python3-protobuf) lists, describes and calls every service through
// reflection v1 and v1alpha, on both gRPC servers; protoc accepts the files
// reflection serves and GET /v1/descriptor.bin; the committed descriptor set
// is what protoc makes of proto/ (scripts/gen-descriptor.mjs --check).
// Without the Python packages or protoc the cases needing them skip, or fail
// where PRISM_REQUIRE_TOOLS=1 / CI=true (test/helpers/required-tools.ts).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { credentials, loadPackageDefinition, status } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { startServer, type RunningServer } from "../../src/server.js";
import { defaultConfig } from "../../src/config/load.js";
import { ROOT } from "./serve-process.js";
import { skipOrFail as skip, TOOLS_REQUIRED } from "../helpers/required-tools.js";

// Debian's interpreter, where python3-grpcio and python3-protobuf install (`python3` on PATH may be a
// pyenv shim without them); PRISM_TEST_PYTHON names another one that has grpcio and protobuf.
const PYTHON = process.env.PRISM_TEST_PYTHON || "/usr/bin/python3";
const SCRIPT = join(ROOT, "test/interop/reflection_client.py");
const DESCRIPTOR_SET = join(ROOT, "proto/prism/v1/descriptor.binpb");
const SERVICES = ["KeyValue", "PubSub", "Queue", "Stream", "Admin"].map((s) => `prism.v1.${s}`);
const req = createRequire(import.meta.url);
const REFLECTION_PROTOS = join(dirname(req.resolve("@grpc/reflection")), "../proto");

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], timeout = 120_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: ROOT, timeout, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (!err) return resolve({ code: 0, stdout, stderr });
      const code = (err as { code?: unknown }).code;
      resolve({ code: typeof code === "number" ? code : null, stdout, stderr: stderr || err.message });
    });
  });
}

/** Why the Python client cannot run here, or undefined when it can. */
const pythonMissing: string | undefined = (() => {
  if (!existsSync(PYTHON)) return `${PYTHON} is missing (apt-get install python3 python3-grpcio python3-protobuf)`;
  const r = spawnSync(PYTHON, ["-c", "import grpc, google.protobuf"], { encoding: "utf8" });
  if (r.status !== 0) return `${PYTHON} lacks grpc or protobuf (apt-get install python3-grpcio python3-protobuf): ${(r.stderr || "").trim().split("\n").pop()}`;
  return undefined;
})();

/** protoc, when installed (scripts/install-tools.sh installs it for CI). */
const protoc: string | undefined = (() => {
  const r = spawnSync(process.env.PROTOC || "protoc", ["--version"], { encoding: "utf8" });
  return r.status === 0 ? process.env.PROTOC || "protoc" : undefined;
})();

const work = mkdtempSync(join(tmpdir(), "prism-reflection-interop-"));
after(() => rmSync(work, { recursive: true, force: true }));

/** The official reflection protos compiled by protoc, for the Python client (it has its own copy otherwise). */
let officialReflection: string | undefined;
function reflectionSet(): string | undefined {
  if (!protoc) return undefined;
  if (officialReflection) return officialReflection;
  const out = join(work, "reflection.binpb");
  const r = spawnSync(protoc, [`-I${REFLECTION_PROTOS}`, `-o${out}`, "grpc/reflection/v1/reflection.proto", "grpc/reflection/v1alpha/reflection.proto"], { encoding: "utf8" });
  assert.equal(r.status, 0, `protoc on the official reflection protos: ${r.stderr}`);
  return (officialReflection = out);
}

/** A FileDescriptorSet of serialized FileDescriptorProtos (field 1, repeated). */
function fileDescriptorSet(files: Buffer[]): Buffer {
  const parts: Buffer[] = [];
  for (const f of files) {
    const len: number[] = [];
    for (let n = f.length; ; n >>>= 7) {
      if (n < 0x80) {
        len.push(n);
        break;
      }
      len.push((n & 0x7f) | 0x80);
    }
    parts.push(Buffer.from([0x0a, ...len]), f);
  }
  return Buffer.concat(parts);
}

/** The name (field 1) of a serialized FileDescriptorProto. */
function fileName(fdp: Buffer): string {
  assert.equal(fdp[0], 0x0a);
  let len = 0;
  let shift = 0;
  let i = 1;
  for (; ; i++) {
    len |= (fdp[i]! & 0x7f) << shift;
    shift += 7;
    if (fdp[i]! < 0x80) break;
  }
  return fdp.subarray(i + 1, i + 1 + len).toString();
}

/** One reflection stream with the grpc-js client and the official reflection.proto: every request answered in order. */
async function reflect(target: string, version: "v1" | "v1alpha", requests: object[]): Promise<any[]> {
  const pkg = loadPackageDefinition(loadSync(join(REFLECTION_PROTOS, `grpc/reflection/${version}/reflection.proto`), { keepCase: true, defaults: true })) as any;
  const rc = new pkg.grpc.reflection[version].ServerReflection(target, credentials.createInsecure());
  try {
    const call = rc.ServerReflectionInfo();
    const responses: any[] = [];
    const ended = new Promise<void>((resolve, reject) => {
      call.on("data", (r: any) => responses.push(r));
      call.on("end", resolve);
      call.on("error", reject);
    });
    for (const r of requests) call.write(r);
    call.end();
    await ended;
    return responses;
  } finally {
    rc.close();
  }
}

for (const impl of ["http2", "grpc-js"] as const) {
  describe(`reflection interop (server.grpc_server: ${impl})`, () => {
    let server: RunningServer;
    let target: string;
    const dataDir = mkdtempSync(join(tmpdir(), `prism-reflection-${impl}-`));

    before(async () => {
      const config = defaultConfig();
      config.server.grpc_server = impl;
      config.server.data_dir = dataDir;
      server = await startServer({ config, grpcPort: 0, httpPort: 0, host: "127.0.0.1", log: () => {} });
      target = `127.0.0.1:${server.grpcPort}`;
    });

    after(async () => {
      await server?.close();
      rmSync(dataDir, { recursive: true, force: true });
    });

    test("a Python grpcio client using only reflection (v1 and v1alpha) lists, describes and calls every service", async (t) => {
      if (pythonMissing) return skip(t, pythonMissing);
      const out = join(work, `${impl}-received.binpb`);
      const official = reflectionSet();
      const r = await run(PYTHON, [SCRIPT, target, "--out", out, ...(official ? ["--reflection-set", official] : [])]);
      assert.equal(r.code, 0, `the Python client failed:\n${r.stderr}\n${r.stdout.slice(0, 2000)}`);
      const report = JSON.parse(r.stdout);
      t.diagnostic(`grpcio ${report.grpc}, reflection messages from ${report.reflection_messages}; files ${report.v1.files.join(", ")}; ${report.v1.requests} + ${report.v1alpha.requests} reflection requests`);
      for (const [svc, what] of Object.entries(report.calls)) t.diagnostic(`${svc}: ${what}`);
      for (const v of ["v1", "v1alpha"]) {
        for (const s of SERVICES) assert.ok(report[v].services.includes(s), `${v} lists ${s}`);
        assert.deepEqual([...report[v].files].sort(), ["google/protobuf/struct.proto", "prism/v1/frame.proto", "prism/v1/prism.proto"]);
        assert.ok(report[v].map_fields_checked >= 6);
        assert.ok(report[v].describe["prism.v1.PubSub"].includes("rpc Subscribe(prism.v1.SubscribeRequest) returns (stream prism.v1.PubSubMessage)"));
      }
      assert.deepEqual(Object.keys(report.calls).sort(), [...report.v1.services].sort(), "every listed service was called");
      assert.ok(report.methods_called.includes("prism.v1.PubSub/Subscribe"));
      assert.deepEqual(report.out, ["google/protobuf/struct.proto", "prism/v1/prism.proto", "prism/v1/frame.proto"]);
    });

    test("protoc accepts the files reflection serves, and generates code from them", async (t) => {
      if (!protoc) return skip(t, "protoc is not installed (apt-get install protobuf-compiler libprotobuf-dev)");
      // Every file, as reflection returns it: each service's file and whatever it imports.
      const requests = [...SERVICES.map((s) => ({ file_containing_symbol: s })), { file_by_filename: "prism/v1/frame.proto" }, { file_by_filename: "google/protobuf/struct.proto" }];
      const byName = new Map<string, Buffer>();
      for (const r of await reflect(target, "v1", requests)) {
        for (const f of r.file_descriptor_response.file_descriptor_proto as Buffer[]) byName.set(fileName(f), f);
      }
      assert.deepEqual([...byName.keys()].sort(), ["google/protobuf/struct.proto", "prism/v1/frame.proto", "prism/v1/prism.proto"]);
      const order = ["google/protobuf/struct.proto", "prism/v1/prism.proto", "prism/v1/frame.proto"];
      const set = join(work, `${impl}-reflection.binpb`);
      writeFileSync(set, fileDescriptorSet(order.map((n) => byName.get(n)!)));
      const gen = mkdtempSync(join(work, "gen-"));
      const r = await run(protoc, [`--descriptor_set_in=${set}`, `--python_out=${gen}`, `--descriptor_set_out=${join(gen, "again.binpb")}`, "prism/v1/prism.proto", "prism/v1/frame.proto"]);
      assert.equal(r.code, 0, `protoc --descriptor_set_in refused what reflection serves: ${r.stderr}`);
      assert.ok(existsSync(join(gen, "prism/v1/prism_pb2.py")));
      // Each file is served exactly as protoc wrote it in the committed set.
      const committed = readFileSync(DESCRIPTOR_SET);
      for (const [name, bytes] of byName) assert.ok(committed.includes(bytes), `${name}: reflection serves the bytes of the committed set`);
    });

    test("the reflection protocol: imports once per stream, every symbol kind, extensions, errors keep the stream", async () => {
      for (const version of ["v1", "v1alpha"] as const) {
        const r = await reflect(target, version, [
          { file_containing_symbol: "prism.v1.KeyValue" },
          { file_containing_symbol: "prism.v1.PubSub.Subscribe" },
          { file_by_filename: "prism/v1/prism.proto" },
          { file_containing_symbol: "prism.v1.Method" },
          { file_containing_symbol: "prism.v1.QueueMessage.AttributesEntry" },
          { file_containing_symbol: "prism.v1.QueueMessage.receipt" },
          { file_containing_symbol: "google.protobuf.Value.kind" },
          { file_containing_symbol: "nope.Nothing" },
          { all_extension_numbers_of_type: "prism.v1.PubSubMessage" },
          { all_extension_numbers_of_type: "prism.v1.Nope" },
          { file_containing_extension: { containing_type: "prism.v1.GetRequest", extension_number: 99 } },
          { host: "example" },
          { list_services: "*", host: "h" },
        ]);
        assert.equal(r.length, 13, `${version}: one response per request`);
        const names = (i: number) => (r[i].file_descriptor_response.file_descriptor_proto as Buffer[]).map(fileName);
        assert.deepEqual(names(0), ["prism/v1/prism.proto", "google/protobuf/struct.proto"], "the file, then its import");
        assert.deepEqual(names(1), ["prism/v1/prism.proto"], "the import went on this stream already");
        assert.deepEqual(names(2), ["prism/v1/prism.proto"]);
        assert.deepEqual(names(3), ["prism/v1/frame.proto"]);
        assert.deepEqual(names(4), ["prism/v1/prism.proto"]);
        assert.deepEqual(names(5), ["prism/v1/prism.proto"]);
        assert.deepEqual(names(6), ["google/protobuf/struct.proto"]);
        assert.equal(r[7].error_response.error_code, status.NOT_FOUND);
        assert.match(r[7].error_response.error_message, /nope\.Nothing/);
        assert.deepEqual(r[8].all_extension_numbers_response, { base_type_name: "prism.v1.PubSubMessage", extension_number: [] });
        assert.equal(r[9].error_response.error_code, status.NOT_FOUND);
        assert.equal(r[10].error_response.error_code, status.NOT_FOUND);
        assert.equal(r[11].error_response.error_code, status.INVALID_ARGUMENT, "a request naming nothing");
        assert.equal(r[12].valid_host, "h");
        assert.deepEqual(r[12].original_request.list_services, "*");
        assert.ok(r[12].list_services_response.service.every((s: any) => s.name.startsWith("prism.v1.")));
      }
    });

    test("an undecodable reflection request ends the stream INVALID_ARGUMENT", async () => {
      const pkg = loadPackageDefinition(loadSync(join(REFLECTION_PROTOS, "grpc/reflection/v1/reflection.proto"), { keepCase: true })) as any;
      const Client = pkg.grpc.reflection.v1.ServerReflection;
      const rc = new Client(target, credentials.createInsecure());
      try {
        // A raw body: field 3 (file_by_filename) claiming 100 bytes that never come.
        const call = rc.makeBidiStreamRequest("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", (b: Buffer) => b, (b: Buffer) => b);
        const err = await new Promise<any>((resolve) => {
          call.on("data", () => {});
          call.on("error", resolve);
          call.on("end", () => resolve(undefined));
          call.write(Buffer.from([0x1a, 100, 0x61]));
          call.end();
        });
        assert.ok(err, "the stream failed");
        assert.equal(err.code, status.INVALID_ARGUMENT, err.details);
        assert.match(err.details, /malformed grpc\.reflection request/);
      } finally {
        rc.close();
      }
    });
  });
}

describe("the contract over HTTP: GET /v1/descriptor.bin and /v1/proto", () => {
  let server: RunningServer;
  let base: string;
  const dataDir = mkdtempSync(join(tmpdir(), "prism-contract-http-"));

  before(async () => {
    const config = defaultConfig();
    config.server.data_dir = dataDir;
    server = await startServer({ config, grpc: false, httpPort: 0, host: "127.0.0.1", log: () => {} });
    base = `http://127.0.0.1:${server.httpPort}`;
  });

  after(async () => {
    await server?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test("GET /v1/descriptor.bin is the committed descriptor set", async () => {
    const r = await fetch(`${base}/v1/descriptor.bin`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("content-type"), "application/octet-stream");
    const body = Buffer.from(await r.arrayBuffer());
    assert.deepEqual(body, readFileSync(DESCRIPTOR_SET));
    const head = await fetch(`${base}/v1/descriptor.bin`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-length"), String(body.length));
    assert.equal((await fetch(`${base}/v1/descriptor.bin`, { method: "POST" })).status, 405);
  });

  test("protoc takes GET /v1/descriptor.bin as --descriptor_set_in", async (t) => {
    if (!protoc) return skip(t, "protoc is not installed (apt-get install protobuf-compiler libprotobuf-dev)");
    const file = join(work, "downloaded.binpb");
    writeFileSync(file, Buffer.from(await (await fetch(`${base}/v1/descriptor.bin`)).arrayBuffer()));
    const gen = mkdtempSync(join(work, "gen-http-"));
    const p = await run(protoc, [`--descriptor_set_in=${file}`, `--python_out=${gen}`, "prism/v1/prism.proto", "prism/v1/frame.proto"]);
    assert.equal(p.code, 0, `protoc --descriptor_set_in refused GET /v1/descriptor.bin: ${p.stderr}`);
  });

  test("the .proto sources: listed, served as text, nothing else", async () => {
    const list = (await (await fetch(`${base}/v1/proto`)).json()) as any;
    assert.deepEqual(list, {
      descriptor_set: "/v1/descriptor.bin",
      files: [
        { name: "prism/v1/frame.proto", url: "/v1/proto/prism/v1/frame.proto" },
        { name: "prism/v1/prism.proto", url: "/v1/proto/prism/v1/prism.proto" },
      ],
      imports: ["google/protobuf/struct.proto"],
    });
    for (const f of list.files) {
      const r = await fetch(`${base}${f.url}`);
      assert.equal(r.status, 200);
      assert.equal(r.headers.get("content-type"), "text/plain; charset=utf-8");
      assert.equal(await r.text(), readFileSync(join(ROOT, "proto", f.name), "utf8"));
    }
    const wkt = await fetch(`${base}/v1/proto/google/protobuf/struct.proto`);
    assert.equal(wkt.status, 404);
    assert.match(((await wkt.json()) as any).error.message, /ships with protoc/);
    for (const p of ["/v1/proto/prism/v1/descriptor.binpb", "/v1/proto/prism/v1/nope.proto", "/v1/proto/%2e%2e/package.json", "/v1/proto/prism%2Fv1%2F..%2F..%2F..%2Fpackage.json"]) {
      assert.equal((await fetch(`${base}${p}`)).status, 404, p);
    }
    assert.equal((await fetch(`${base}/v1/proto/prism/v1/prism.proto`, { method: "PUT" })).status, 405);
    const doc = (await (await fetch(`${base}/v1/openapi.json`)).json()) as any;
    assert.ok(doc.paths["/v1/descriptor.bin"].get && doc.paths["/v1/proto/{file}"].get);
  });
});

test("the committed descriptor set is what protoc makes of proto/ now (scripts/gen-descriptor.mjs --check)", async (t) => {
  const r = await run(process.execPath, [join(ROOT, "scripts/gen-descriptor.mjs"), "--check"]);
  assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
  assert.doesNotMatch(r.stderr, /warning/, "the check used without protoc agrees with protoc");
  t.diagnostic(r.stdout.trim());
  if (!protoc) {
    const why = "protoc is not installed (apt-get install protobuf-compiler libprotobuf-dev): compared with the .proto files' definitions only (comments not compared)";
    assert.ok(!TOOLS_REQUIRED, why);
    console.log(`# ${why}`);
  }
});
