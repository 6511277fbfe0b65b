/** The `token` and `apiKey` connect options as request headers (gRPC metadata, HTTP headers, WebSocket upgrade headers). */
import { Code, PrismError } from "./errors.js";
import type { Auth, ConnectOptions } from "./transport.js";

/** @internal */
export function makeAuth(opts: Pick<ConnectOptions, "token" | "apiKey">): Auth {
  const fixed: Record<string, string> = {};
  if (opts.apiKey !== undefined) fixed["x-api-key"] = opts.apiKey;
  const token = opts.token;
  if (typeof token === "string") fixed.authorization = `Bearer ${token}`;
  if (typeof token !== "function") return { fixed };
  return {
    fixed,
    dynamic: async () => {
      let t: string;
      try {
        t = await token();
      } catch (e) {
        throw new PrismError(Code.UNAUTHENTICATED, `token: the token function failed: ${(e as Error)?.message ?? String(e)}`);
      }
      if (typeof t !== "string" || t === "") throw new PrismError(Code.UNAUTHENTICATED, "token: the token function returned no token");
      return { ...fixed, authorization: `Bearer ${t}` };
    },
  };
}
