/**
 * What the ingresses collect: `Authorization: Bearer <jwt>`, `Authorization:
 * ApiKey <key>` and `x-api-key: <key>` (gRPC metadata and HTTP headers alike;
 * WebSocket: the upgrade request's headers or an AUTH frame). Nothing is
 * verified here. A call without either header costs two property reads.
 */
import type { Credentials } from "./types.js";

/**
 * `base` (e.g. the connection's verified client certificate) plus the headers.
 * Returns `base` itself when no header is present, else a new object: `base`
 * may be shared by every call of a connection and is never modified.
 */
export function withHeaders(base: Credentials | undefined, authorization: string | undefined, apiKey: string | undefined): Credentials | undefined {
  if (authorization === undefined && apiKey === undefined) return base;
  const c: Credentials = base === undefined ? {} : { ...base };
  if (authorization !== undefined) {
    const a = authorization.trim();
    const sp = a.indexOf(" ");
    const scheme = sp < 0 ? a : a.slice(0, sp);
    const value = sp < 0 ? "" : a.slice(sp + 1).trim();
    if (/^bearer$/i.test(scheme)) c.bearer = value;
    else if (/^apikey$/i.test(scheme)) c.apiKey = value;
    // Any other scheme: kept as an unverifiable bearer (a JWT has no spaces), so it is refused, not ignored.
    else c.bearer = `${scheme} ${value}`;
  }
  if (apiKey !== undefined && c.apiKey === undefined) c.apiKey = apiKey.trim();
  return c;
}

/** The first value of a header / metadata entry (node gives arrays for repeated ones). */
export function firstValue(v: string | string[] | Buffer | undefined): string | undefined {
  if (v === undefined || typeof v === "string") return v;
  if (Buffer.isBuffer(v)) return v.toString("latin1");
  return v[0];
}
