/** Helpers of the observability tests: a Prometheus text parser and plain HTTP calls on fresh connections. */
import { createServer, request } from "node:http";

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Exposition {
  samples: Sample[];
  types: Map<string, string>;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: -?\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

/** Parses the Prometheus text format (0.0.4); throws on any line it does not recognise. */
export function parseProm(text: string): Exposition {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const [i, line] of text.split("\n").entries()) {
    if (line === "") continue;
    if (line.startsWith("# HELP ")) continue;
    if (line.startsWith("# TYPE ")) {
      const [name, type] = line.slice(7).split(" ");
      if (!name || !type || !TYPES.has(type)) throw new Error(`line ${i + 1}: bad TYPE: ${line}`);
      types.set(name, type);
      continue;
    }
    if (line.startsWith("#")) continue;
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`line ${i + 1}: not a sample: ${line}`);
    const labels: Record<string, string> = {};
    const body = m[2] ?? "";
    LABEL.lastIndex = 0;
    while (LABEL.lastIndex < body.length) {
      const l = LABEL.exec(body);
      if (!l) throw new Error(`line ${i + 1}: bad labels: ${line}`);
      labels[l[1]!] = l[2]!.replace(/\\n/g, "\n").replace(/\\"/g, '"').replace(/\\\\/g, "\\");
    }
    const raw = m[3]!;
    const nan = raw.toLowerCase() === "nan";
    const value = raw === "+Inf" ? Infinity : raw === "-Inf" ? -Infinity : nan ? NaN : Number(raw);
    if (!nan && Number.isNaN(value)) throw new Error(`line ${i + 1}: bad value: ${line}`);
    samples.push({ name: m[1]!, labels, value });
  }
  return { samples, types };
}

/** Samples of `name` whose labels include `match`. */
export function select(e: Exposition, name: string, match: Record<string, string> = {}): Sample[] {
  return e.samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
}

/** `namespace|method|backend|code` → count, for prism_requests_total. */
export function requestCounts(e: Exposition): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of select(e, "prism_requests_total")) out.set(`${s.labels.namespace}|${s.labels.method}|${s.labels.backend}|${s.labels.code}`, s.value);
  return out;
}

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One HTTP call on a fresh connection (so node:cluster spreads them over the workers). */
export function httpCall(port: number, method: string, path: string, body?: Uint8Array | string, headers: Record<string, string> = {}): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, method, path, agent: false, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** Sorted map as an object (readable assertion diffs). */
export function asObject(m: Map<string, number>): Record<string, number> {
  return Object.fromEntries([...m.entries()].sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** One span as the OTLP/JSON exporter sends it. */
export interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: { key: string; value: Record<string, unknown> }[];
  status?: { code?: number };
}

/** OTLP/JSON ids are hex; tolerate base64 (the protobuf-JSON mapping) too. */
export function hexId(id: string | undefined, bytes: number): string | undefined {
  if (id === undefined || id === "") return undefined;
  if (id.length === bytes * 2 && /^[0-9a-f]+$/i.test(id)) return id.toLowerCase();
  return Buffer.from(id, "base64").toString("hex");
}

/** A span attribute's value (string, int, bool or double). */
export function spanAttr(s: OtlpSpan, key: string): unknown {
  const a = s.attributes?.find((x) => x.key === key);
  if (!a) return undefined;
  const v = a.value;
  return v.stringValue ?? v.intValue ?? v.boolValue ?? v.doubleValue;
}

export interface OtlpReceiver {
  /** Point OTEL_EXPORTER_OTLP_ENDPOINT here. */
  readonly endpoint: string;
  /** Every span received so far. */
  readonly spans: OtlpSpan[];
  /** Raw request bodies of POST /v1/traces. */
  readonly bodies: string[];
  /** Resolves once `ready()` holds (checked now and after each export). */
  until(ready: () => boolean): Promise<void>;
  close(): Promise<void>;
}

/** An OTLP/HTTP (JSON) trace receiver on an ephemeral port. */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: OtlpSpan[] = [];
  const bodies: string[] = [];
  const waiters = new Set<() => void>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString();
      if (req.method === "POST" && req.url === "/v1/traces") {
        bodies.push(body);
        const doc = JSON.parse(body) as { resourceSpans?: { scopeSpans?: { spans?: OtlpSpan[] }[] }[] };
        for (const rs of doc.resourceSpans ?? []) for (const ss of rs.scopeSpans ?? []) for (const s of ss.spans ?? []) spans.push(s);
        for (const w of [...waiters]) w();
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans,
    bodies,
    until(ready) {
      if (ready()) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const check = () => {
          if (!ready()) return;
          waiters.delete(check);
          resolve();
        };
        waiters.add(check);
      });
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
