/** Which config store a server uses (server.config_store; without one, an in-process server keeps config in memory). */
import { resolve } from "node:path";
import type { ServerConfig } from "../config/schema.js";
import type { ConfigStoreSpec } from "./stores.js";

export function configStoreSpec(server: Pick<ServerConfig, "config_store" | "data_dir">): ConfigStoreSpec {
  const s = server.config_store;
  if (!s || s.type === "memory") return { type: "memory" };
  // The store's file is the operator's own setting: it resolves against data_dir but is not confined to it.
  if (s.type === "sqlite") return { type: "sqlite", path: resolve(server.data_dir, s.path) };
  return s.table === undefined ? { type: "postgres", url: s.url } : { type: "postgres", url: s.url, table: s.table };
}

/** For `prism serve`: the default is a SQLite file in data_dir. */
export function withDefaultStore<T extends { config_store?: ServerConfig["config_store"] }>(server: T): T {
  return server.config_store ? server : { ...server, config_store: { type: "sqlite", path: "config.db" } };
}
