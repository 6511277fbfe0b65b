// Completes the CommonJS build of the SDK (dist/cjs, compiled by tsconfig.cjs.json):
// marks the directory as CommonJS and converts the generated ESM codec
// (src/gen/prism.js, which tsc does not compile) into a CommonJS module.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");
const out = join(pkg, "dist/cjs");
mkdirSync(join(out, "gen"), { recursive: true });
writeFileSync(join(out, "package.json"), '{ "type": "commonjs" }\n');

const esm = readFileSync(join(pkg, "src/gen/prism.js"), "utf8");
const rules = [
  [/^import \$protobuf from "protobufjs\/minimal\.js";$/m, '"use strict";\nObject.defineProperty(exports, "__esModule", { value: true });\nconst $protobuf = require("protobufjs/minimal.js");'],
  [/^export const (\w+) = \$root\./gm, "const $1 = exports.$1 = $root."],
  [/^export \{ \$root as default \};$/m, "exports.default = $root;"],
];
let cjs = esm;
for (const [re, to] of rules) {
  if (!re.test(cjs)) throw new Error(`build-cjs: src/gen/prism.js no longer matches ${re}; update the conversion`);
  cjs = cjs.replace(re, to);
}
if (/^(import|export) /m.test(cjs)) throw new Error("build-cjs: an import/export statement is left in the CommonJS codec");
writeFileSync(join(out, "gen/prism.js"), cjs);
writeFileSync(join(out, "gen/prism.d.ts"), readFileSync(join(pkg, "src/gen/prism.d.ts")));
