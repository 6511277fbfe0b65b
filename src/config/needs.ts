/**
 * `needs:` against what a driver declares (BackendDriver.properties) and
 * claims (interfaces). Pure: no guessing, a property the driver does not
 * declare never satisfies a need. Returns one reason per unmet need, worded
 * for operators ("persistence: required, but memstore keyvalue is not durable").
 */
import type { BackendDriver, PrimitiveProperties } from "../backends/driver.js";
import type { SlotDef } from "../patterns/registry.js";
import type { NeedsConfig } from "./schema.js";

function undeclared(driver: BackendDriver<any>, slot: SlotDef, what: string): string {
  return `${driver.type} does not declare ${what} for ${slot.primitive}`;
}

export function unmetNeeds(needs: NeedsConfig | undefined, slot: SlotDef, driver: BackendDriver<any>): string[] {
  if (!needs) return [];
  const p: PrimitiveProperties | undefined = slot.primitive === "payload" ? undefined : driver.properties?.[slot.primitive];
  const out: string[] = [];
  const on = `${driver.type} ${slot.primitive}`;
  if (needs.persistence === "required") {
    if (p?.durable === undefined) out.push(`persistence: required, but ${undeclared(driver, slot, "durability")}`);
    else if (!p.durable) out.push(`persistence: required, but ${on} is not durable`);
  }
  if (needs.ttl === "required") {
    if (slot.primitive === "keyvalue") {
      if (!driver.interfaces.includes("keyvalue_ttl")) out.push(`ttl: required, but ${driver.type} does not implement keyvalue_ttl`);
    } else if (p?.ttl !== true) out.push(`ttl: required, but ${p?.ttl === false ? `${on} has no expiry` : undeclared(driver, slot, "expiry")}`);
  }
  if (needs.ordering === "required") {
    if (p?.ordering === undefined) out.push(`ordering: required, but ${undeclared(driver, slot, "ordering")}`);
    else if (!p.ordering) out.push(`ordering: required, but ${on} does not keep order`);
  }
  if (needs.delivery !== undefined) {
    if (p?.delivery === undefined) out.push(`delivery: ${needs.delivery}, but ${undeclared(driver, slot, "a delivery guarantee")}`);
    else if (!p.delivery.includes(needs.delivery)) out.push(`delivery: ${needs.delivery}, but ${on} gives ${p.delivery.join(", ")}`);
  }
  if (needs.max_value_bytes !== undefined) {
    if (p?.maxValueBytes === undefined) out.push(`max_value_bytes: ${needs.max_value_bytes}, but ${undeclared(driver, slot, "a value size limit")}`);
    else if (p.maxValueBytes < needs.max_value_bytes) out.push(`max_value_bytes: ${needs.max_value_bytes}, but ${on} stores at most ${p.maxValueBytes}`);
  }
  if (needs.consistency !== undefined) {
    if (p?.consistency === undefined) out.push(`consistency: ${needs.consistency}, but ${undeclared(driver, slot, "its consistency")}`);
    else if (needs.consistency === "strong" && p.consistency !== "strong") out.push(`consistency: strong, but ${on} is ${p.consistency}`);
  }
  if (needs.latency_p99_ms !== undefined) {
    if (p?.latencyP99Ms === undefined) out.push(`latency_p99_ms: ${needs.latency_p99_ms}, but ${undeclared(driver, slot, "a measured p99 latency")}`);
    else if (p.latencyP99Ms > needs.latency_p99_ms) out.push(`latency_p99_ms: ${needs.latency_p99_ms}, but ${on} measured p99 ${p.latencyP99Ms} ms (${p.measured})`);
  }
  if (needs.throughput_rps !== undefined) {
    if (p?.throughputRps === undefined) out.push(`throughput_rps: ${needs.throughput_rps}, but ${undeclared(driver, slot, "a measured throughput")}`);
    else if (p.throughputRps < needs.throughput_rps) out.push(`throughput_rps: ${needs.throughput_rps}, but ${on} measured ${p.throughputRps}/s (${p.measured})`);
  }
  return out;
}
