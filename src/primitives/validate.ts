/** Shared argument checks. Each error names the field and the limit. */
import { errors } from "../core/errors.js";
import type { InterfaceName } from "../core/interfaces.js";
import { primitiveOf } from "../patterns/registry.js";
import type { NamespaceRuntime } from "../router/router.js";

export function requireKey(ns: NamespaceRuntime, key: string, field = "key"): void {
  if (!key) throw errors.invalidArgument(field, "must not be empty");
  // Cheap upper bound first: UTF-8 uses at most 3 bytes per UTF-16 unit.
  if (key.length * 3 > ns.limits.maxKeyBytes) {
    const n = Buffer.byteLength(key, "utf8");
    if (n > ns.limits.maxKeyBytes) throw errors.tooLarge(field, n, ns.limits.maxKeyBytes);
  }
}

export function requireValue(ns: NamespaceRuntime, value: Uint8Array, field = "value"): void {
  if (value.length > ns.limits.maxValueBytes) throw errors.tooLarge(field, value.length, ns.limits.maxValueBytes);
}

const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,254}$/;

/** Queue and stream names. */
export function requireName(name: string, field: string): void {
  if (!name) throw errors.invalidArgument(field, "must not be empty");
  if (!NAME.test(name)) throw errors.invalidArgument(field, `"${name}" must be 1-255 of A-Z a-z 0-9 _ . : @ - (not starting with . : @ -)`);
}

/** A topic to publish to: dot-separated non-empty tokens, no wildcards. */
export function requireTopic(topic: string, field = "topic"): void {
  if (!topic) throw errors.invalidArgument(field, "must not be empty");
  if (topic.length > 255) throw errors.invalidArgument(field, "must be at most 255 characters");
  for (const t of topic.split(".")) {
    if (!t) throw errors.invalidArgument(field, `"${topic}" has an empty token`);
    if (t === "*" || t === ">" || /[\s*>]/.test(t)) throw errors.invalidArgument(field, `"${topic}": tokens must not contain whitespace, * or >`);
  }
}

/** Returns true when the pattern uses wildcards. */
export function requirePattern(pattern: string, field = "pattern"): boolean {
  if (!pattern) throw errors.invalidArgument(field, "must not be empty");
  const tokens = pattern.split(".");
  let wild = false;
  tokens.forEach((t, i) => {
    if (!t) throw errors.invalidArgument(field, `"${pattern}" has an empty token`);
    if (t === "*") wild = true;
    else if (t === ">") {
      if (i !== tokens.length - 1) throw errors.invalidArgument(field, `"${pattern}": > must be the last token`);
      wild = true;
    } else if (/[\s*>]/.test(t)) throw errors.invalidArgument(field, `"${pattern}": * and > must be whole tokens`);
  });
  return wild;
}

export function requireInterface(ns: NamespaceRuntime, iface: InterfaceName): void {
  if (!ns.interfaces.has(iface)) {
    const p = primitiveOf(iface);
    const slot = ns.slots.find((s) => s.primitive === p);
    const backend = slot === undefined ? ns.backendType : slot.instance ? `${slot.instance}" (${slot.backendType}) in slot "${slot.slot}` : slot.backendType;
    throw errors.interfaceMissing(ns.name, backend, iface);
  }
}

/** A bounded count: 0 means the default; above max is refused. */
export function count(value: number | undefined | null, dflt: number, max: number, field: string): number {
  const v = value ?? 0;
  if (v === 0) return dflt;
  if (v > max) throw errors.invalidArgument(field, `${v} exceeds the maximum of ${max}`);
  return v;
}

export function requireAttributes(attrs: Record<string, string> | null | undefined, field = "attributes"): Record<string, string> {
  if (!attrs) return {};
  let n = 0;
  for (const k in attrs) {
    if (++n > 64) throw errors.invalidArgument(field, "at most 64 attributes");
    if (k.length > 256 || (attrs[k]?.length ?? 0) > 4096) throw errors.invalidArgument(`${field}.${k.slice(0, 40)}`, "attribute key at most 256 and value at most 4096 characters");
  }
  return attrs;
}
