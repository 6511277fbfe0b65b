/**
 * The SDK's auth options against Prism's own authentication (src/auth): an
 * `apiKey` is sent as `x-api-key` (gRPC metadata, HTTP header, WebSocket
 * upgrade header) and admits the calls its role allows; without it calls are
 * refused UNAUTHENTICATED; a `token` function that fails makes the call (or,
 * over ws://, the connection) fail with UNAUTHENTICATED on the client side.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { connect, Code, PrismError, type Prism } from "@prism/client";
import { startServer, type RunningServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { sha256KeyHash } from "../../src/auth/apikeys.js";

const KEY = `prism-sdk-key-${randomUUID()}`;
const TRANSPORTS = ["ws", "grpc", "http"] as const;
let server: RunningServer;

before(async () => {
  const config = await validateConfig(
    {
      namespaces: [{ name: "default", backend: { type: "memstore" } }],
      auth: {
        api_keys: [{ name: "sdk", hash: sha256KeyHash(KEY), roles: ["rw"] }],
        roles: { rw: [{ namespaces: ["*"], permissions: ["read", "write"] }] },
      },
    },
    "sdk-auth",
  );
  server = await startServer({ config, host: "127.0.0.1", grpcPort: 0, httpPort: 0, log: () => {} });
});
after(async () => {
  await server?.close();
});

const address = (t: (typeof TRANSPORTS)[number]) => (t === "grpc" ? `grpc://127.0.0.1:${server.grpcPort}` : `${t}://127.0.0.1:${server.httpPort}`);

/** The code a connect-then-get fails with (connect itself may refuse). */
async function codeOf(addr: string, opts: Parameters<typeof connect>[1]): Promise<number> {
  let c: Prism | undefined;
  try {
    c = await connect(addr, { reconnect: false, ...opts });
    await c.kv("default").get("k");
    return Code.OK;
  } catch (e) {
    assert.ok(e instanceof PrismError, String(e));
    return e.code;
  } finally {
    await c?.close();
  }
}

for (const transport of TRANSPORTS) {
  describe(`auth options over ${transport}`, { timeout: 20_000 }, () => {
    test("apiKey: calls are admitted; without it they are refused UNAUTHENTICATED", async () => {
      const c = await connect(address(transport), { apiKey: KEY });
      try {
        const key = `auth/${transport}/${randomUUID().slice(0, 8)}`;
        await c.kv("default").set(key, "v");
        assert.equal(Buffer.from((await c.kv("default").get(key))!).toString(), "v");
      } finally {
        await c.close();
      }
      assert.equal(await codeOf(address(transport), {}), Code.UNAUTHENTICATED, "no credentials");
      assert.equal(await codeOf(address(transport), { apiKey: `${KEY}-wrong` }), Code.UNAUTHENTICATED, "a wrong key");
    });

    test("a token function that fails → UNAUTHENTICATED (nothing sent without credentials)", async () => {
      const code = await codeOf(address(transport), {
        token: () => {
          throw new Error("vault is down");
        },
      });
      assert.equal(code, Code.UNAUTHENTICATED);
    });
  });
}
