/**
 * Kafka topic and group names. Kafka topics allow only [A-Za-z0-9._-] (at
 * most 249 characters), so names are escaped injectively with `_`:
 * `_` → `__`, `.` → `_d` (namespace only), `:` → `_c`, `@` → `_a`. An
 * escaped namespace has no `.`, so `${prefix}.${ns}.` is a prefix no other
 * namespace shares (`users`, `users.abc` and `usersAbc` stay apart).
 */
import { errors } from "../../core/errors.js";

const MAX_TOPIC = 249;

function esc(s: string, dots: boolean): string {
  let out = s.replace(/_/g, "__").replace(/:/g, "_c").replace(/@/g, "_a");
  if (dots) out = out.replace(/\./g, "_d");
  return out;
}

export function nsPart(ns: string): string {
  return esc(ns, true);
}

/** The one topic carrying a namespace's PubSub messages (the Prism topic is the Kafka message key). */
export function pubsubTopic(prefix: string, ns: string): string {
  return check(`${prefix}.${nsPart(ns)}.ps`, "namespace");
}

export function streamTopic(prefix: string, ns: string, stream: string): string {
  return check(`${prefix}.${nsPart(ns)}.s.${esc(stream, false)}`, "stream");
}

/** Kafka group ids are free-form strings; `|` never occurs in namespace, stream or group names. */
export function groupId(prefix: string, ns: string, stream: string, group: string): string {
  return `${prefix}|${ns}|${stream}|${group}`;
}

function check(topic: string, field: string): string {
  if (topic.length > MAX_TOPIC) throw errors.invalidArgument(field, `too long for a Kafka topic name (${topic.length} > ${MAX_TOPIC} characters once prefixed and escaped)`);
  return topic;
}
