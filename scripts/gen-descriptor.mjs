// Builds proto/prism/v1/descriptor.binpb: the FileDescriptorSet of the contract
// (every .proto under proto/ plus the imports they use, e.g.
// google/protobuf/struct.proto), made by a real protobuf compiler:
//
//   protoc --include_imports --include_source_info -I proto -o proto/prism/v1/descriptor.binpb <every .proto under proto/>
//
// gRPC server reflection and GET /v1/descriptor.bin serve exactly these bytes
// (src/ingress/descriptor-set.ts). The file is committed, so the gateway builds
// and runs where protoc is not installed:
//
// - protoc present (scripts/install-tools.sh installs it in CI): regenerate it,
//   rewriting the file only when the bytes change.
// - protoc missing: keep the committed file, after checking it still describes
//   the .proto files (every message, field, enum value, service and method,
//   compared with protobufjs's parse of the sources); a stale set fails the
//   build and says to install protoc. Comments are not compared without protoc.
//
// Usage: node scripts/gen-descriptor.mjs          (the build: regenerate or verify)
//        node scripts/gen-descriptor.mjs --check  (change nothing; exit 1 when the
//            committed set differs from what protoc makes now, or without protoc
//            from the .proto files)
// Environment: PROTOC (the compiler, default `protoc` on PATH), PROTOC_INCLUDE
// (a folder holding google/protobuf/*.proto, found next to protoc otherwise).
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const protoDir = join(root, "proto");
export const DESCRIPTOR_SET = join(protoDir, "prism/v1/descriptor.binpb");
const require = createRequire(import.meta.url);

/** Every .proto under proto/, as protoc names them (relative, forward slashes), sorted. */
export function protoFiles() {
  const out = [];
  (function walk(dir) {
    for (const e of readdirSync(dir)) {
      const p = join(dir, e);
      if (statSync(p).isDirectory()) walk(p);
      else if (e.endsWith(".proto")) out.push(relative(protoDir, p).split(sep).join("/"));
    }
  })(protoDir);
  return out.sort();
}

/** The protoc executable, or undefined when there is none. */
export function findProtoc() {
  const named = process.env.PROTOC || "protoc";
  if (named.includes("/")) return existsSync(named) ? named : undefined;
  for (const dir of (process.env.PATH || "").split(delimiter)) {
    const p = join(dir || ".", named);
    try {
      if (statSync(p).isFile()) return p;
    } catch {}
  }
  return undefined;
}

/** A folder holding google/protobuf/struct.proto for protoc (Debian: libprotobuf-dev's /usr/include). */
function wellKnownInclude(protoc) {
  const candidates = [process.env.PROTOC_INCLUDE, join(dirname(realpathSync(protoc)), "../include"), join(dirname(protoc), "../include"), "/usr/include", "/usr/local/include"];
  return candidates.find((d) => d && existsSync(join(d, "google/protobuf/struct.proto")));
}

/** protoc's version line and the set it makes of proto/ now. Throws with protoc's own message on failure. */
export function compile(protoc) {
  const version = execFileSync(protoc, ["--version"], { encoding: "utf8" }).trim();
  const dir = mkdtempSync(join(tmpdir(), "prism-descriptor-"));
  try {
    const out = join(dir, "set.binpb");
    const include = wellKnownInclude(protoc);
    const args = ["--include_imports", "--include_source_info", `-I${protoDir}`, ...(include ? [`-I${include}`] : []), `-o${out}`, ...protoFiles()];
    try {
      execFileSync(protoc, args, { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
    } catch (e) {
      const msg = String(e.stderr || e.message).trim();
      const hint = include ? "" : " (no google/protobuf/struct.proto next to protoc: apt-get install libprotobuf-dev, or set PROTOC_INCLUDE)";
      throw new Error(`${version}: ${msg}${hint}`);
    }
    return { version, bytes: readFileSync(out) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- semantic comparison

const TYPE_NAMES = { 1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 6: "fixed64", 7: "fixed32", 8: "bool", 9: "string", 10: "group", 12: "bytes", 13: "uint32", 15: "sfixed32", 16: "sfixed64", 17: "sint32", 18: "sint64" };

/** One line per definition of the non-imported files of a FileDescriptorSet. */
function setSignature(bytes, files) {
  const descriptor = require("protobufjs/ext/descriptor");
  const set = descriptor.FileDescriptorSet.toObject(descriptor.FileDescriptorSet.decode(bytes), { longs: Number, enums: Number });
  const lines = [];
  const mapEntries = new Map();
  const collectEntries = (prefix, msgs) => {
    for (const m of msgs ?? []) {
      const full = `${prefix}.${m.name}`;
      if (m.options?.mapEntry) mapEntries.set(full, m);
      collectEntries(full, m.nestedType);
    }
  };
  for (const f of set.file) collectEntries(f.package ? `.${f.package}` : "", f.messageType);
  const typeOf = (fd) => (fd.type === 11 || fd.type === 14 ? fd.typeName : TYPE_NAMES[fd.type]);
  const enums = (prefix, list) => {
    for (const e of list ?? []) {
      const full = `${prefix}.${e.name}`;
      lines.push(`enum ${full.slice(1)}`);
      for (const v of e.value ?? []) lines.push(`value ${full.slice(1)}.${v.name} = ${v.number}`);
    }
  };
  const messages = (prefix, list) => {
    for (const m of list ?? []) {
      const full = `${prefix}.${m.name}`;
      if (m.options?.mapEntry) continue;
      lines.push(`message ${full.slice(1)}`);
      for (const fd of m.field ?? []) {
        const entry = fd.label === 3 && fd.type === 11 ? mapEntries.get(fd.typeName) : undefined;
        let type = typeOf(fd);
        let label = fd.label === 3 ? "repeated " : fd.proto3Optional ? "optional " : fd.label === 2 ? "required " : "";
        if (entry) {
          const [k, v] = [entry.field.find((x) => x.number === 1), entry.field.find((x) => x.number === 2)];
          type = `map<${typeOf(k)}, ${typeOf(v)}>`;
          label = "";
        }
        const oneof = fd.oneofIndex !== undefined && !fd.proto3Optional ? ` oneof ${m.oneofDecl[fd.oneofIndex].name}` : "";
        lines.push(`field ${full.slice(1)}.${fd.name} = ${fd.number}: ${label}${type}${oneof}`);
      }
      messages(full, m.nestedType);
      enums(full, m.enumType);
    }
  };
  const names = [];
  for (const f of set.file) {
    names.push(f.name);
    if (!files.includes(f.name)) continue;
    lines.push(`file ${f.name} package ${f.package ?? ""} imports ${[...(f.dependency ?? [])].sort().join(",")}`);
    const prefix = f.package ? `.${f.package}` : "";
    messages(prefix, f.messageType);
    enums(prefix, f.enumType);
    for (const s of f.service ?? []) {
      lines.push(`service ${prefix.slice(1)}.${s.name}`);
      for (const m of s.method ?? []) {
        lines.push(`rpc ${prefix.slice(1)}.${s.name}.${m.name}(${m.clientStreaming ? "stream " : ""}${m.inputType}) returns (${m.serverStreaming ? "stream " : ""}${m.outputType})`);
      }
    }
  }
  return { lines, names };
}

/** The same lines, from protobufjs's parse of the .proto sources. */
function sourceSignature(files) {
  const pb = require("protobufjs");
  const lines = [];
  const imports = new Set();
  const r = new pb.Root();
  r.loadSync(files.map((f) => join(protoDir, f)), { keepCase: true });
  r.resolveAll();
  for (const f of files) {
    const parsed = pb.parse(readFileSync(join(protoDir, f), "utf8"), { keepCase: true });
    for (const i of parsed.imports ?? []) imports.add(i);
    lines.push(`file ${f} package ${parsed.package ?? ""} imports ${[...(parsed.imports ?? []), ...(parsed.weakImports ?? [])].sort().join(",")}`);
  }
  const fileOf = (o) => relative(protoDir, o.filename ?? "").split(sep).join("/");
  const typeOf = (f) => (f.resolvedType ? f.resolvedType.fullName : f.type);
  const walk = (ns) => {
    for (const o of ns.nestedArray) {
      const mine = o.filename && files.includes(fileOf(o));
      const full = o.fullName.slice(1);
      if (o instanceof pb.Type) {
        if (mine) {
          lines.push(`message ${full}`);
          for (const f of o.fieldsArray) {
            let type = typeOf(f);
            let label = f.rule === "repeated" ? "repeated " : f.options?.proto3_optional ? "optional " : f.rule === "required" ? "required " : "";
            if (f instanceof pb.MapField) {
              type = `map<${f.keyType}, ${typeOf(f)}>`;
              label = "";
            }
            const oneof = f.partOf && !f.options?.proto3_optional ? ` oneof ${f.partOf.name}` : "";
            lines.push(`field ${full}.${f.name} = ${f.id}: ${label}${type}${oneof}`);
          }
        }
      } else if (o instanceof pb.Enum) {
        if (mine) {
          lines.push(`enum ${full}`);
          for (const [name, n] of Object.entries(o.values)) lines.push(`value ${full}.${name} = ${n}`);
        }
        continue;
      } else if (o instanceof pb.Service) {
        if (mine) {
          lines.push(`service ${full}`);
          for (const m of o.methodsArray) {
            lines.push(`rpc ${full}.${m.name}(${m.requestStream ? "stream " : ""}${m.resolvedRequestType.fullName}) returns (${m.responseStream ? "stream " : ""}${m.resolvedResponseType.fullName})`);
          }
        }
        continue;
      }
      if (o.nestedArray) walk(o);
    }
  };
  walk(r);
  return { lines, imports: [...imports] };
}

/** Differences between the committed set and the .proto sources, as readable lines (empty: they agree). */
export function semanticDiff(bytes) {
  const files = protoFiles();
  const want = sourceSignature(files);
  const have = setSignature(bytes, files);
  const problems = [];
  for (const f of [...files, ...want.imports]) if (!have.names.includes(f)) problems.push(`the set has no file ${f}`);
  const a = new Set(want.lines);
  const b = new Set(have.lines);
  for (const l of want.lines) if (!b.has(l)) problems.push(`missing from the set: ${l}`);
  for (const l of have.lines) if (!a.has(l)) problems.push(`in the set, not in proto/: ${l}`);
  return problems;
}

function main() {
  const check = process.argv.includes("--check");
  const rel = relative(root, DESCRIPTOR_SET);
  const committed = existsSync(DESCRIPTOR_SET) ? readFileSync(DESCRIPTOR_SET) : undefined;
  const protoc = findProtoc();
  let made;
  if (protoc) {
    try {
      made = compile(protoc);
    } catch (e) {
      // E.g. protoc without its well-known types: the committed set still serves, once verified below.
      console.warn(`gen-descriptor: ${protoc} failed, checking the committed set without it: ${e.message}`);
    }
  }
  if (made) {
    const { version, bytes } = made;
    if (committed && committed.equals(bytes)) {
      if (check) console.log(`gen-descriptor: ${rel} is what ${version} makes of proto/`);
    } else if (check) {
      console.error(`gen-descriptor: ${rel} differs from what ${version} makes of proto/ now (${committed ? `${committed.length} bytes committed, ${bytes.length} made` : "missing"}): run npm run build and commit it`);
      for (const p of committed ? semanticDiff(committed).slice(0, 20) : []) console.error(`  ${p}`);
      process.exit(1);
    } else {
      writeFileSync(DESCRIPTOR_SET, bytes);
      console.log(`gen-descriptor: wrote ${rel} (${bytes.length} bytes, ${version})`);
    }
    // protoc is the authority; a difference here is a gap in the comparison used without protoc
    // (a warning, not a failure: test/e2e/reflection-interop.test.ts fails on it instead).
    const problems = semanticDiff(bytes);
    if (problems.length) console.warn(`gen-descriptor: warning: the comparison used without protoc reads proto/ differently from ${version}:\n  ${problems.slice(0, 20).join("\n  ")}`);
    return;
  }
  if (!committed) {
    console.error(`gen-descriptor: ${rel} is missing and there is no working protoc to make it: apt-get install protobuf-compiler libprotobuf-dev (or set PROTOC)`);
    process.exit(1);
  }
  let problems;
  try {
    problems = semanticDiff(committed);
  } catch (e) {
    console.error(`gen-descriptor: cannot compare ${rel} with proto/: ${e.message}`);
    process.exit(1);
  }
  if (problems.length) {
    console.error(`gen-descriptor: ${rel} no longer matches proto/ and there is no working protoc to rebuild it: apt-get install protobuf-compiler libprotobuf-dev (or set PROTOC), then npm run build\n  ${problems.slice(0, 20).join("\n  ")}`);
    process.exit(1);
  }
  console.log(`gen-descriptor: no working protoc; ${rel} matches the messages, fields, enums and services of proto/ (comments not compared)`);
}

/** Copies of the set shipped inside packages that must work installed alone (the Python SDK), kept byte-identical by the build. */
const COPIES = [join(root, "clients/python/prism_client/descriptor.binpb")];

function syncCopies() {
  const bytes = readFileSync(DESCRIPTOR_SET);
  for (const copy of COPIES) {
    if (!existsSync(dirname(copy))) continue;
    if (existsSync(copy) && readFileSync(copy).equals(bytes)) continue;
    writeFileSync(copy, bytes);
    console.log(`gen-descriptor: copied the set to ${relative(root, copy)}`);
  }
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main();
  if (!process.argv.includes("--check")) syncCopies();
}
