/**
 * Client frames of the binary WebSocket protocol (proto/prism/v1/frame.proto),
 * built once per run: `u8 kind=1, u8 flags=0, u32 id, u16 method`, protobuf body.
 */
import { prism } from "../../src/gen/prism.js";

const M = prism.v1.Method;

export function frame(method: number, body: Uint8Array): Uint8Array {
  const f = Buffer.alloc(8 + body.length);
  f[0] = 1;
  f.writeUInt16LE(method, 6);
  f.set(body, 8);
  return f;
}

export function getBody(namespace: string, key: string): Uint8Array {
  return prism.v1.GetRequest.encode({ namespace, key }).finish();
}

export function setBody(namespace: string, key: string, value: Uint8Array): Uint8Array {
  return prism.v1.SetRequest.encode({ namespace, key, value }).finish();
}

export const benchKey = (i: number) => `bench:key:${i}`;
export const benchValue = () => Buffer.alloc(64, 0x61);

/**
 * `count` frames over `keys` keys, `getPercent`% KV Get and the rest KV Set,
 * interleaved deterministically (every request cycles through them).
 */
export function kvMix(namespace: string, keys: number, getPercent: number, count = 100): Uint8Array[] {
  const out: Uint8Array[] = [];
  const value = benchValue();
  for (let i = 0; i < count; i++) {
    const key = benchKey((i * 37) % keys);
    const isGet = (i * 53) % 100 < getPercent;
    out.push(isGet ? frame(M.KV_GET, getBody(namespace, key)) : frame(M.KV_SET, setBody(namespace, key, value)));
  }
  return out;
}
