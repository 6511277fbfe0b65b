/**
 * Substitution in config values: `${NAME}`, `${NAME:-fallback}` (environment)
 * and `${file:/run/secrets/pg_password}` (the file's contents, trimmed).
 *
 * Where `${file:…}` may read:
 * - prism.yaml (the operator's file): any readable file;
 * - entries sent to Admin (ApplyNamespace, ApplyBackend): only files under
 *   server.allowed_paths (an absolute path): an Admin caller must not be able
 *   to read the server's files into a config it can read back;
 * - nowhere else (no policy given): refused.
 * A file that cannot be read, or is larger than 64 KiB, is a problem naming
 * the field and the file (never its contents).
 *
 * Values substituted into credential positions (URL passwords, `password` /
 * `token` options) are masked in every Admin answer, log and error by
 * src/core/redact.ts like any written-out secret; the config store keeps the
 * substituted value (it is what connects), so protect the store accordingly.
 */
import { readFileSync, statSync } from "node:fs";
import { isAbsolute } from "node:path";
import { confinePath, type PathPolicy } from "./paths.js";
import { formatPath } from "./schema.js";

/** Which files `${file:…}` may read: "any" (prism.yaml), files under these allowed paths (Admin), or none. */
export type FileRefPolicy = "any" | { allowedPaths: readonly string[] } | "refuse";

const MAX_SECRET_FILE_BYTES = 64 * 1024;
const REF = /\$\{(?:file:([^}]+)|([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?)\}/g;

function readSecretFile(file: string, field: string, files: FileRefPolicy, problems: string[]): string {
  if (files === "refuse") {
    problems.push(`${field}: \${file:…} is only allowed in prism.yaml`);
    return "";
  }
  if (files !== "any") {
    const c = isAbsolute(file) ? confinePath(file, field, { dataDir: "/", allowedPaths: files.allowedPaths }) : undefined;
    if (c === undefined || c.problem !== undefined || !files.allowedPaths.length) {
      problems.push(`${field}: \${file:${file}} sent through Admin must be an absolute path under server.allowed_paths`);
      return "";
    }
  }
  try {
    const st = statSync(file);
    if (!st.isFile()) throw Object.assign(new Error("not a regular file"), { code: "not a regular file" });
    if (st.size > MAX_SECRET_FILE_BYTES) throw Object.assign(new Error("too large"), { code: `larger than ${MAX_SECRET_FILE_BYTES} bytes` });
    return readFileSync(file, "utf8").trim();
  } catch (e) {
    problems.push(`${field}: cannot read secret file ${file} (\${file:…}): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    return "";
  }
}

export function substitute(value: unknown, path: PropertyKey[], problems: string[], env: NodeJS.ProcessEnv, files: FileRefPolicy): unknown {
  if (typeof value === "string") {
    if (value.indexOf("${") < 0) return value;
    return value.replace(REF, (_m, file: string | undefined, name: string | undefined, fallback?: string) => {
      if (file !== undefined) return readSecretFile(file.trim(), formatPath(path), files, problems);
      const v = env[name!];
      if (v !== undefined) return v;
      if (fallback !== undefined) return fallback;
      problems.push(`${formatPath(path)}: environment variable ${name} is not set`);
      return "";
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => substitute(v, [...path, i], problems, env, files));
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = substitute(v, [...path, k], problems, env, files);
    return out;
  }
  return value;
}

/** The `${file:…}` policy of an Admin entry: files under allowed_paths when the server passes its policy, else none. */
export function adminFilePolicy(paths: PathPolicy | undefined): FileRefPolicy {
  return paths === undefined ? "refuse" : { allowedPaths: paths.allowedPaths };
}
