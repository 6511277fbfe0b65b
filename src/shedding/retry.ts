/**
 * Retries for idempotent methods only (MethodDef.idempotent), on
 * PRISM_ERR_BACKEND_UNAVAILABLE only (not an open circuit, not a draining
 * server), with full-jitter exponential backoff, never past the call's
 * deadline, and within a retry budget: every call deposits `budgetRatio`
 * tokens (default 0.1), a retry spends one, so retries add at most ~10% load
 * on a backend that is down instead of multiplying it.
 */
import { PrismError } from "../core/errors.js";
import type { RequestContext } from "../core/context.js";
import type { NsHandler } from "../core/methods.js";
import type { NamespaceRuntime } from "../router/router.js";
import { sheddingHooks } from "./hooks.js";

export interface RetryOptions {
  /** Attempts in total, the first included (default 3; 1 disables retries). */
  maxAttempts: number;
  /** First backoff ceiling in ms (default 25); doubles per attempt. */
  baseBackoffMs: number;
  maxBackoffMs: number;
  /** Tokens deposited per call (default 0.1 = retries add at most 10% load). */
  budgetRatio: number;
  /** Budget ceiling, and the starting balance (default 10). */
  maxTokens: number;
}

export const DEFAULT_RETRY: RetryOptions = { maxAttempts: 3, baseBackoffMs: 25, maxBackoffMs: 1000, budgetRatio: 0.1, maxTokens: 10 };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class RetryPolicy {
  private tokens: number;
  /** Retries made (tests, metrics). */
  retries = 0;

  constructor(
    readonly options: RetryOptions = DEFAULT_RETRY,
    private readonly random: () => number = Math.random,
  ) {
    this.tokens = options.maxTokens;
  }

  /** Runs an idempotent handler, retrying transient backend failures. */
  readonly invoke = async (h: NsHandler, ns: NamespaceRuntime, req: unknown, ctx: RequestContext): Promise<object> => {
    const o = this.options;
    this.tokens = Math.min(o.maxTokens, this.tokens + o.budgetRatio);
    for (let attempt = 1; ; attempt++) {
      try {
        return await h(ns, req, ctx);
      } catch (e) {
        const wait = this.backoff(e, attempt, ctx);
        if (wait < 0) throw e;
        this.tokens -= 1;
        this.retries++;
        sheddingHooks.retried?.(ns.name, ctx.method.path);
        await sleep(wait);
        if (ctx.cancelled) throw e;
      }
    }
  };

  /** ms to wait before the next attempt, or -1: do not retry. */
  backoff(e: unknown, attempt: number, ctx: RequestContext): number {
    const o = this.options;
    if (attempt >= o.maxAttempts || ctx.cancelled) return -1;
    if (!(e instanceof PrismError) || e.reason !== "PRISM_ERR_BACKEND_UNAVAILABLE") return -1;
    if (this.tokens < 1) return -1;
    const ceiling = Math.min(o.maxBackoffMs, o.baseBackoffMs * 2 ** (attempt - 1));
    const wait = Math.floor(this.random() * ceiling);
    if (ctx.deadline !== 0 && Date.now() + wait >= ctx.deadline) return -1;
    return wait;
  }
}
