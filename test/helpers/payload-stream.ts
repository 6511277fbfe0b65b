/**
 * Streams payloads through Prism for the claim-check tests: bytes generated on
 * the fly (a counter-seeded pattern, never held whole), uploaded over HTTP PUT
 * or gRPC client-streaming, downloaded over HTTP GET or gRPC server-streaming,
 * SHA-256 computed on both sides as the bytes pass.
 */
import { createHash } from "node:crypto";
import { request } from "node:http";
import { credentials, makeGenericClientConstructor, type Client } from "@grpc/grpc-js";
import { serviceDefinitions } from "../../src/ingress/grpc-codec.js";

const BLOCK = 1024 * 1024;

/** `total` bytes as 1 MiB blocks (each block distinct: its index is written into it), with the SHA-256 of all of them once iterated. */
export function generated(total: number): { chunks: () => Generator<Buffer>; sha256: () => string } {
  const h = createHash("sha256");
  let digest = "";
  const base = Buffer.alloc(BLOCK);
  for (let i = 0; i < BLOCK; i++) base[i] = (i * 31 + 7) & 0xff;
  return {
    *chunks() {
      let sent = 0;
      let n = 0;
      while (sent < total) {
        const len = Math.min(BLOCK, total - sent);
        const b = Buffer.from(base.subarray(0, len));
        if (len >= 4) b.writeUInt32BE(n >>> 0, 0);
        n++;
        h.update(b);
        sent += len;
        yield b;
      }
      digest = h.digest("hex");
    },
    sha256: () => digest,
  };
}

/** PUT /v1/ns/{ns}/payloads?… with the generated body (written as the socket drains). */
export function httpPut(port: number, path: string, body: Iterable<Buffer>): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, method: "PUT", path, headers: { "content-type": "application/octet-stream" } }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, json: text ? JSON.parse(text) : undefined }));
    });
    req.on("error", reject);
    const it = body[Symbol.iterator]();
    const pump = () => {
      for (;;) {
        const n = it.next();
        if (n.done) return void req.end();
        if (!req.write(n.value)) return void req.once("drain", pump);
      }
    };
    pump();
  });
}

/** GET a payload; resolves with status, size and SHA-256 of the body (hashed as it arrives). */
export function httpGet(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; size: number; sha256: string; headers: Record<string, unknown>; body?: Buffer }> {
  return new Promise((resolve, reject) => {
    request({ host: "127.0.0.1", port, method: "GET", path, headers }, (res) => {
      const h = createHash("sha256");
      let size = 0;
      const small: Buffer[] = [];
      res.on("data", (d: Buffer) => {
        h.update(d);
        size += d.length;
        if (size <= 1 << 20) small.push(d);
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, size, sha256: h.digest("hex"), headers: res.headers, body: size <= 1 << 20 ? Buffer.concat(small) : undefined }));
      res.on("error", reject);
    })
      .on("error", reject)
      .end();
  });
}

/** A grpc-js client of the ClaimCheck service (its definition from the method table). */
export function claimCheckClient(port: number): Client & Record<string, any> {
  const def = serviceDefinitions().get("ClaimCheck")!.definition;
  const Ctor = makeGenericClientConstructor(def, "ClaimCheck");
  return new Ctor(`127.0.0.1:${port}`, credentials.createInsecure(), { "grpc.max_receive_message_length": 16 << 20 }) as Client & Record<string, any>;
}

/** ClaimCheck.Put over gRPC: a header message, then one message per chunk, as flow control allows. */
export function grpcPut(client: Record<string, any>, header: Record<string, unknown>, body: Iterable<Buffer>): Promise<any> {
  return new Promise((resolve, reject) => {
    const call = client.Put((err: Error | null, res: any) => (err ? reject(err) : resolve(res)));
    call.write(header);
    const it = body[Symbol.iterator]();
    const pump = () => {
      for (;;) {
        const n = it.next();
        if (n.done) return void call.end();
        if (!call.write({ chunk: n.value })) return void call.once("drain", pump);
      }
    };
    pump();
  });
}

/** ClaimCheck.Get over gRPC: the claim (first message) and the SHA-256 and size of the data. */
export function grpcGet(client: Record<string, any>, req: Record<string, unknown>): Promise<{ claim: any; size: number; sha256: string; data: Buffer[] }> {
  return new Promise((resolve, reject) => {
    const call = client.Get(req);
    const h = createHash("sha256");
    let claim: any;
    let size = 0;
    const data: Buffer[] = [];
    call.on("data", (m: any) => {
      if (m.claim) claim = m.claim;
      if (m.data && m.data.length) {
        h.update(m.data);
        size += m.data.length;
        if (size <= 1 << 20) data.push(Buffer.from(m.data));
      }
    });
    call.on("error", reject);
    call.on("end", () => resolve({ claim, size, sha256: h.digest("hex"), data }));
  });
}
