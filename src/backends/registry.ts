/**
 * The one list of backend types. Drivers load lazily: a backend's client
 * library costs nothing until a namespace uses it.
 */
import type { z } from "zod";
import type { BackendDriver } from "./driver.js";

type Loader = () => Promise<{ driver: BackendDriver<any> }>;

const loaders: Record<string, Loader> = {
  memstore: () => import("./memstore/index.js"),
  sqlite: () => import("./sqlite/index.js"),
  redis: () => import("./redis/index.js"),
  nats: () => import("./nats/index.js"),
  postgres: () => import("./postgres/index.js"),
  rabbitmq: () => import("./rabbitmq/index.js"),
  mqtt: () => import("./mqtt/index.js"),
  kafka: () => import("./kafka/index.js"),
  filesystem: () => import("./filesystem/index.js"),
  s3: () => import("./s3/index.js"),
};

/**
 * Each backend's options schema (zod), apart from its driver: config validation
 * loads these, serving processes load only drivers, and never zod.
 */
const optionLoaders: Record<
  string,
  () => Promise<{ optionsSchema: z.ZodType; fileOptions?: readonly string[]; fileUrlParams?: Readonly<Record<string, readonly string[]>> }>
> = {
  memstore: () => import("./memstore/options.js"),
  sqlite: () => import("./sqlite/options.js"),
  redis: () => import("./redis/options.js"),
  nats: () => import("./nats/options.js"),
  postgres: () => import("./postgres/options.js"),
  rabbitmq: () => import("./rabbitmq/options.js"),
  mqtt: () => import("./mqtt/options.js"),
  kafka: () => import("./kafka/options.js"),
  filesystem: () => import("./filesystem/options.js"),
  s3: () => import("./s3/options.js"),
};

export async function loadOptionsSchema(type: string): Promise<z.ZodType> {
  const loader = optionLoaders[type];
  if (!loader) throw new Error(`unknown backend "${type}"`);
  return (await loader()).optionsSchema;
}

/** The option names of a backend that name files or directories (src/config/paths.ts confines them). */
export async function loadFileOptions(type: string): Promise<readonly string[]> {
  const loader = optionLoaders[type];
  if (!loader) throw new Error(`unknown backend "${type}"`);
  return (await loader()).fileOptions ?? [];
}

/** Per URL option of a backend, the query parameters that name files (postgres sslrootcert …). */
export async function loadFileUrlParams(type: string): Promise<Readonly<Record<string, readonly string[]>>> {
  const loader = optionLoaders[type];
  if (!loader) throw new Error(`unknown backend "${type}"`);
  return (await loader()).fileUrlParams ?? {};
}

export function backendTypes(): string[] {
  return Object.keys(loaders);
}

export function isBackendType(type: string): boolean {
  return Object.hasOwn(loaders, type);
}

const cache = new Map<string, BackendDriver<any>>();

export async function loadDriver(type: string): Promise<BackendDriver<any>> {
  let d = cache.get(type);
  if (!d) {
    const loader = loaders[type];
    if (!loader) throw new Error(`unknown backend "${type}"`);
    d = (await loader()).driver;
    cache.set(type, d);
  }
  return d;
}

export async function loadAllDrivers(): Promise<BackendDriver<any>[]> {
  return Promise.all(backendTypes().map(loadDriver));
}
