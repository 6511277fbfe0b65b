/**
 * Acceptance harness: ONE suite per backend interface (test/acceptance/suites/),
 * run unchanged against every backend that claims the interface, through the
 * TypeScript SDK over each ingress (binary WebSocket, gRPC, HTTP/JSON), against
 * an in-process server on ephemeral ports.
 *
 * Adding a backend: create test/acceptance/<backend>.test.ts with one call,
 *
 *   import { runAcceptance } from "./harness.js";
 *   runAcceptance({
 *     name: "redis",
 *     backend: (ns) => ({ type: "redis", url: process.env.REDIS_URL ?? "redis://127.0.0.1:6379" }),
 *     clock: "real",                          // the backend keeps time itself
 *     skipReason: async () => (await reachable(6379)) ? undefined : "no Redis on 6379",
 *     limits: { visibility_timeout_seconds: 2, stream_claim_timeout_seconds: 2 },
 *   });
 *
 * What runs:
 * - per transport, one server (`startServer`, port 0) and one SDK client;
 * - for each interface the driver claims (`loadDriver(type).interfaces`), that
 *   interface's suite; for each interface it does NOT claim, a short check that
 *   the calls needing it fail with FAILED_PRECONDITION (claims are checked both
 *   ways: claimed ⇒ the suite passes, unclaimed ⇒ refused, never half-served);
 * - a claims check: Admin.ListBackends over the wire reports the same claims.
 *
 * Every test gets fresh namespaces (`ctx.ns()`, applied through
 * Admin.ApplyNamespace) with limits max_deliveries 3, visibility 30 s, stream
 * claim timeout 30 s, then `fixture.limits` on top. Time moves with
 * `ctx.advance(ms)`: exact with the ManualClock (clock "manual"), a real sleep
 * otherwise. Cases marked `slow` (they wait on time) run, with a real clock,
 * on the first transport only, and with a real clock the cases of one suite
 * run concurrently (their sleeps overlap), so a real-clock backend stays well
 * under a minute; set PRISM_ACCEPTANCE_SLOW=all to run slow cases on every
 * transport.
 * A real-clock fixture should shorten visibility_timeout_seconds and
 * stream_claim_timeout_seconds (1-2 s) in `limits`: suites derive their waits
 * from the effective limits.
 *
 * Writing a case (suites/<interface>.ts exports a `Suite`):
 *   test("what it proves", { slow: true }, async (ctx) => {
 *     const kv = ctx.client.kv(await ctx.ns());   // ns() is async: it applies a fresh namespace
 *     ...; await ctx.advance(2100); ...
 *   });
 * Test names get ` [<backend>/<transport>]` appended, so the runner's final
 * failure list says where a case failed.
 */
import { describe, it, before, after } from "node:test";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { startServer, type RunningServer } from "../../src/server.js";
import { validateConfig } from "../../src/config/load.js";
import { ManualClock } from "../../src/core/clock.js";
import { loadDriver } from "../../src/backends/registry.js";
import { patternByName } from "../../src/patterns/registry.js";
import { INTERFACES, PRIMITIVES, REQUIRED_INTERFACES, type InterfaceName, type PrimitiveName } from "../../src/core/interfaces.js";
import { connect, type PrismClient } from "./sdk.js";
import { SUITES, UNCLAIMED } from "./suites/index.js";
import { claimsCase } from "./suites/claims.js";

export type Transport = "ws" | "grpc" | "http";
export const TRANSPORTS: readonly Transport[] = ["ws", "grpc", "http"];

export interface BackendFixture {
  /** Shown in test names; usually the backend type. */
  name: string;
  /** The namespace's `backend:` block, e.g. { type: "sqlite", path }. Called once per namespace. */
  backend(namespace: string): Record<string, unknown>;
  /** "manual": the backend takes Prism's clock (exact time travel); "real": it keeps time itself. */
  clock: "manual" | "real";
  /** A reason to skip the whole run (e.g. no broker reachable); undefined to run. */
  skipReason?(): Promise<string | undefined>;
  /** Extra namespace limits (snake_case, as in prism.yaml), applied over the harness defaults. */
  limits?: Record<string, number>;
  /**
   * A composed pattern instead of one backend: the pattern, the backend type of
   * each slot (claims follow from the pattern's), and the namespace entry
   * (pattern, slots, options) for a namespace name. `backend()` is then unused.
   */
  pattern?: { name: string; slotTypes: Record<string, string>; entry(namespace: string): Record<string, unknown> };
}

/** The namespace limits every acceptance namespace gets (before fixture.limits). */
export const BASE_LIMITS: Readonly<Record<string, number>> = {
  max_deliveries: 3,
  visibility_timeout_seconds: 30,
  stream_claim_timeout_seconds: 30,
};

export interface SuiteContext {
  /** The SDK client, connected over `transport` (valid inside test bodies). */
  client: PrismClient;
  /** A fresh namespace on the fixture's backend serving every primitive the backend can serve. `name` forces its name; `limits` go over the effective limits. */
  ns(opts?: { name?: string; limits?: Record<string, number> }): Promise<string>;
  /** Moves time: ManualClock.advance, or a real sleep (plus a small margin) with a real clock. */
  advance(ms: number): Promise<void>;
  /** Unique names for keys, queues, streams, topics. */
  uid(prefix?: string): string;
  readonly fixture: BackendFixture;
  readonly transport: Transport;
  /** Interfaces the backend claims. */
  readonly claims: ReadonlySet<InterfaceName>;
  /** Effective namespace limits (BASE_LIMITS + fixture.limits). */
  readonly limits: Readonly<Record<string, number>>;
  readonly backendType: string;
}

export interface CaseOptions {
  /** Waits on time: with a real clock, runs on the first transport only (see the header). */
  slow?: boolean;
  /** Per-case timeout in real ms (default 20 s). */
  timeout?: number;
  /** Registers the case as skipped, with this reason. */
  skip?: string;
}

/** How suites register a case. */
export type CaseFn = (name: string, opts: CaseOptions | ((ctx: SuiteContext) => Promise<void>), fn?: (ctx: SuiteContext) => Promise<void>) => void;

/** A suite registers its cases with `test`; it reads `ctx` only inside case bodies. */
export type Suite = (test: CaseFn, ctx: SuiteContext) => void;

/** Real-clock margin added to each advance, so boundaries are crossed despite timer and backend granularity. */
const REAL_MARGIN_MS = 100;

let nsCounter = 0;

class Context implements SuiteContext {
  client!: PrismClient;
  server!: RunningServer;
  clock: ManualClock | undefined;
  primitives: PrimitiveName[] = [];
  readonly limits: Readonly<Record<string, number>>;

  constructor(
    readonly fixture: BackendFixture,
    readonly transport: Transport,
    readonly claims: ReadonlySet<InterfaceName>,
    readonly backendType: string,
  ) {
    this.limits = { ...BASE_LIMITS, ...(fixture.limits ?? {}) };
    this.primitives = PRIMITIVES.filter((p) => REQUIRED_INTERFACES[p].every((i) => claims.has(i)));
  }

  async ns(opts: { name?: string; limits?: Record<string, number> } = {}): Promise<string> {
    const name = opts.name ?? `acc-${this.transport}-${++nsCounter}-${randomBytes(3).toString("hex")}`;
    const p = this.fixture.pattern;
    const limits = { ...this.limits, ...(opts.limits ?? {}) };
    await this.client.admin.applyNamespace(
      p ? { name, ...p.entry(name), limits } : { name, primitives: this.primitives, backend: this.fixture.backend(name), limits },
    );
    return name;
  }

  async advance(ms: number): Promise<void> {
    if (this.clock) {
      this.clock.advance(ms);
      // let timers/listeners woken by the advance run before the next call
      await new Promise((r) => setImmediate(r));
    } else {
      await sleep(ms + REAL_MARGIN_MS);
    }
  }

  uid(prefix = "x"): string {
    return `${prefix}-${randomBytes(4).toString("hex")}`;
  }
}

function url(transport: Transport, server: RunningServer): string {
  switch (transport) {
    case "ws":
      return `ws://127.0.0.1:${server.httpPort}`;
    case "grpc":
      return `grpc://127.0.0.1:${server.grpcPort}`;
    case "http":
      return `http://127.0.0.1:${server.httpPort}`;
  }
}

/**
 * Registers the acceptance run for one backend: a describe block per
 * transport, each with the suites of the claimed interfaces and the refusal
 * checks of the unclaimed ones.
 */
export function runAcceptance(fixture: BackendFixture, opts: { transports?: Transport[] } = {}): void {
  const transports = opts.transports ?? [...TRANSPORTS];
  describe(`acceptance: ${fixture.name}`, async () => {
    const skip = fixture.skipReason ? await fixture.skipReason() : undefined;
    const p = fixture.pattern;
    const type = p ? p.name : String(fixture.backend("probe").type);
    let claims: Set<InterfaceName>;
    if (p) {
      const slotClaims = new Map<string, ReadonlySet<InterfaceName>>();
      for (const [slot, t] of Object.entries(p.slotTypes)) slotClaims.set(slot, new Set((await loadDriver(t)).interfaces));
      claims = new Set(patternByName(p.name)!.claims!(slotClaims, (p.entry("probe").options as Record<string, unknown> | undefined) ?? {}));
    } else claims = new Set<InterfaceName>((await loadDriver(type)).interfaces);
    const slowEverywhere = process.env.PRISM_ACCEPTANCE_SLOW === "all";

    for (const [ti, transport] of transports.entries()) {
      describe(`${fixture.name} over ${transport}`, { skip }, () => {
        const ctx = new Context(fixture, transport, claims, type);

        before(async () => {
          const clock = fixture.clock === "manual" ? new ManualClock() : undefined;
          ctx.clock = clock;
          // Fixtures keep their files (sqlite) in the temp directory: the operator's allowed_paths lets Admin name them.
          const config = await validateConfig({ server: { allowed_paths: [tmpdir()] }, namespaces: [] }, "acceptance");
          ctx.server = await startServer({ config, clock, grpcPort: 0, httpPort: 0, log: () => {} });
          ctx.client = await connect(url(transport, ctx.server));
        });

        after(async () => {
          await ctx.client?.close().catch(() => {});
          await ctx.server?.close();
        });

        const test: CaseFn = (name, o, f) => {
          const fn = typeof o === "function" ? o : f!;
          const co: CaseOptions = typeof o === "function" ? {} : o;
          const skipSlow =
            co.slow && fixture.clock === "real" && ti > 0 && !slowEverywhere
              ? `slow real-clock case: runs over ${transports[0]} only (PRISM_ACCEPTANCE_SLOW=all runs it everywhere)`
              : undefined;
          // backend/transport in the name: the runner's final "failing tests" list shows names only
          it(`${name} [${fixture.name}/${transport}]`, { timeout: co.timeout ?? 20_000, skip: co.skip ?? skipSlow }, () => fn(ctx));
        };

        test("claims: Admin.ListBackends reports the driver's interfaces", () => claimsCase(ctx));
        // With a real clock, a suite's cases run concurrently (each has its own namespaces) so their
        // sleeps overlap; with the ManualClock they must not, since advance() moves every case's time.
        const concurrency = fixture.clock === "real";
        for (const iface of INTERFACES) {
          if (claims.has(iface)) describe(iface, { concurrency }, () => SUITES[iface](test, ctx));
          else describe(`${iface} (not claimed: refused)`, () => UNCLAIMED[iface](test, ctx));
        }
      });
    }
  });
}
