/**
 * File options (a sqlite `path`, later a filesystem payload store) are
 * confined to server.data_dir: a relative path resolves inside it; an
 * absolute path, or one that leaves it through `..` or a symbolic link
 * (resolved with realpath), is refused unless it lies inside one of
 * server.allowed_paths, which only the operator's prism.yaml can set.
 */
import { realpathSync } from "node:fs";
import { dirname, isAbsolute, join, relative, resolve, sep, basename } from "node:path";

export interface PathPolicy {
  /** Absolute. */
  readonly dataDir: string;
  /** Absolute; files or directories outside dataDir that file options may name. */
  readonly allowedPaths: readonly string[];
}

/** Values that name no file. */
const NOT_A_FILE = new Set([":memory:", ""]);

/** realpath of the longest existing prefix of `p`, with the rest appended (the file may not exist yet). */
function realish(p: string): string {
  let head = p;
  const tail: string[] = [];
  for (;;) {
    try {
      return join(realpathSync(head), ...tail.reverse());
    } catch {
      const up = dirname(head);
      if (up === head) return p;
      tail.push(basename(head));
      head = up;
    }
  }
}

function inside(child: string, parent: string): boolean {
  const r = relative(parent, child);
  return r === "" || (!r.startsWith(`..${sep}`) && r !== ".." && !isAbsolute(r));
}

/** The absolute path a file option names, or a problem naming the field. */
export function confinePath(value: string, field: string, policy: PathPolicy): { path: string; problem?: undefined } | { path?: undefined; problem: string } {
  if (NOT_A_FILE.has(value)) return { path: value };
  const target = isAbsolute(value) ? resolve(value) : resolve(policy.dataDir, value);
  const real = realish(target);
  for (const allowed of policy.allowedPaths) {
    if (inside(target, allowed) && inside(real, realish(allowed))) return { path: target };
  }
  const dataReal = realish(policy.dataDir);
  if (!isAbsolute(value) && inside(target, policy.dataDir) && inside(real, dataReal)) return { path: target };
  const why = isAbsolute(value)
    ? "is an absolute path"
    : !inside(target, policy.dataDir)
      ? "leaves the data directory"
      : `leads outside the data directory through a symbolic link (to ${real})`;
  return { problem: `${field}: "${value}" ${why}; file options resolve inside server.data_dir (${policy.dataDir}) unless prism.yaml lists the path under server.allowed_paths` };
}
