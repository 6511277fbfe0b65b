/**
 * The one list of backend types. Drivers load lazily: a backend's client
 * library costs nothing until a namespace uses it.
 */
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
};

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
