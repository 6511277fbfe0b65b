/**
 * The audit sink: a bounded in-memory buffer between the gateway and the
 * file. Never sampled, never dropped silently.
 *
 * Admission (GatewayAudit.admit) reserves room for a call's record BEFORE
 * the call runs, so a call that ran always has room for its record. Room is
 * `buffer_records` minus the records reserved, queued and being written. When
 * there is none, or while writes fail (the sink counts as full until one
 * succeeds again), `on_full: block` makes the call wait for room (FIFO) and
 * `refuse` answers UNAVAILABLE "audit log full".
 *
 * Records of calls refused before admission (shutting down, long-poll budget,
 * refused BY the full audit log itself) take free room when there is some;
 * otherwise they are counted, and the next batch written starts with one
 * `{"event":"audit_overflow","count":N,…}` record (and a warning is logged):
 * the gap is in the chain, visible, never silent.
 *
 * Writes are batched: records queued during one event-loop turn are sealed
 * (seq, prev, hash: src/audit/chain.ts) and written with one write; the
 * chain continues from what the output found at open (the last record of
 * the previous file or run).
 */
import type { RequestContext } from "../core/context.js";
import { Code, PrismError, errors } from "../core/errors.js";
import type { GatewayAudit } from "../core/gateway.js";
import type { NamespaceConfig } from "../config/schema.js";
import { GENESIS, plain, seal, type ChainHead } from "./chain.js";
import { buildRecord } from "./record.js";

/** Where sealed lines go (src/audit/file-output.ts; tests hold writes with their own). */
export interface AuditOutput {
  /** The last record already there (the chain continues from it); undefined: a new chain. */
  open(): Promise<ChainHead | undefined>;
  /**
   * Appends whole lines. On failure rejects with an error whose `written`
   * (bytes of `data` that did reach the output) lets the sink retry the rest.
   */
  append(data: Buffer): Promise<void>;
  /** Called after each batch landed with the chain's last record (the file output keeps its head file with it). */
  mark?(head: ChainHead): void;
  close(): Promise<void>;
}

export interface AuditSinkOptions {
  output: AuditOutput;
  bufferRecords: number;
  onFull: "block" | "refuse";
  hashChain: boolean;
  /** audit.chain_key: lines carry an HMAC-SHA256 `mac` instead of a sha256 `hash`. */
  chainKey?: Buffer;
  /** Namespace config by name (hide_keys, pii); undefined for names not served. */
  namespaceOf: (name: string) => NamespaceConfig | undefined;
  /** Set in cluster mode: written as `worker`. */
  worker?: number;
  log: (level: "info" | "warn" | "error", msg: string) => void;
  now?: () => number;
  /** First retry delay after a failed write (doubles up to 5 s). */
  retryMs?: number;
}

export const auditFull = () => new PrismError(Code.UNAVAILABLE, "PRISM_ERR_AUDIT_FULL", "audit log full: the call was refused because its audit record could not be kept (audit.on_full: refuse); retry later");

interface Waiter {
  settled: boolean;
  resolve(): void;
  reject(e: Error): void;
}

export class AuditSink implements GatewayAudit {
  private readonly capacity: number;
  private reserved = 0;
  private queued: string[] = [];
  /** Records in the batch being written (or waiting for a retry). */
  private writingCount = 0;
  private writing: Buffer | undefined;
  private failing = false;
  private retryDelay: number;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private scheduled = false;
  private overflow = 0;
  private overflowSince = 0;
  private readonly waiters: Waiter[] = [];
  private head: ChainHead = { seq: 0, hash: GENESIS };
  private closed = false;
  private idle: (() => void)[] = [];
  private readonly now: () => number;
  private outputClosed = false;
  /** Records of calls that settled after close (logged). */
  lost = 0;
  /** Records written (tests, diagnostics). */
  written = 0;
  /** Calls refused because the log was full. */
  refused = 0;

  private constructor(private readonly opts: AuditSinkOptions) {
    this.capacity = opts.bufferRecords;
    this.now = opts.now ?? Date.now;
    this.retryDelay = opts.retryMs ?? 100;
  }

  static async open(opts: AuditSinkOptions): Promise<AuditSink> {
    const sink = new AuditSink(opts);
    const last = await opts.output.open();
    if (last !== undefined) sink.head = last;
    return sink;
  }

  /** Calls still waiting (the ones that gave up are dropped from the head). */
  private waiting(): boolean {
    while (this.waiters.length > 0 && this.waiters[0]!.settled) this.waiters.shift();
    return this.waiters.length > 0;
  }

  private get used(): number {
    return this.reserved + this.queued.length + this.writingCount;
  }

  /** Full: no room, or the output is failing. */
  get full(): boolean {
    return this.failing || this.used >= this.capacity;
  }

  admit(ctx: RequestContext): Promise<void> | undefined {
    if (ctx.ingress === "mesh") return undefined; // audited by the worker that received it
    if (!this.full && !this.waiting()) {
      this.reserved++;
      return undefined;
    }
    if (this.opts.onFull === "refuse" || this.closed) {
      this.refused++;
      throw auditFull();
    }
    return this.wait(ctx);
  }

  /**
   * A blocked call waits for room, but not past its deadline, nor once its
   * client went away or the server cancels it at shutdown (then it is refused:
   * it never ran).
   */
  private wait(ctx: RequestContext): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const signal = ctx.signal;
      const onAbort = () => w.reject((signal.reason as Error) ?? auditFull());
      const w: Waiter = {
        settled: false,
        resolve: () => {
          if (w.settled) return;
          w.settled = true;
          clearTimeout(timer);
          signal.removeEventListener("abort", onAbort);
          resolve();
        },
        reject: (e) => {
          if (w.settled) return;
          w.settled = true;
          clearTimeout(timer);
          signal.removeEventListener("abort", onAbort);
          reject(e);
        },
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      if (ctx.deadline !== 0) {
        // Not unref'd: a call waiting for its deadline is work in progress.
        timer = setTimeout(() => w.reject(errors.deadline("waiting for room in the audit log (audit.on_full: block)")), Math.max(0, ctx.deadline - Date.now()));
      }
      this.waiters.push(w);
    });
  }

  record(ctx: RequestContext, req: any, code: number, admitted: boolean): void {
    if (ctx.ingress === "mesh") return;
    if (admitted) this.reserved--;
    if (this.closed && this.writing === undefined && this.queued.length === 0 && this.outputClosed) {
      if (this.lost++ === 0) this.opts.log("error", "audit: a call settled after the audit log was closed (shutdown); it has no record");
      return;
    }
    const name = req?.namespace;
    const ns = ctx.method.admin === undefined && typeof name === "string" && name !== "" ? this.opts.namespaceOf(name) : undefined;
    if (!admitted && (this.full || this.closed)) {
      if (this.overflow++ === 0) this.overflowSince = this.now();
      this.schedule();
      return;
    }
    this.queued.push(buildRecord(ctx, req, code, ns, this.opts.worker, this.now()));
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled || this.writing !== undefined) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private sealOne(body: string): string {
    const seq = ++this.head.seq;
    if (!this.opts.hashChain) return plain(body, seq);
    const s = seal(body, seq, this.head.hash, this.opts.chainKey);
    this.head.hash = s.hash;
    return s.line;
  }

  /** Seals what is queued and writes it (one write); the completion writes what queued meanwhile. */
  private flush(): void {
    if (this.writing !== undefined) return;
    const batch = this.queued;
    if (batch.length === 0 && this.overflow === 0) {
      this.wake();
      return;
    }
    this.queued = [];
    let text = "";
    if (this.overflow > 0) {
      const n = this.overflow;
      this.opts.log("warn", `audit: ${n} call(s) refused while the audit log was full have no record of their own (one audit_overflow record stands for them)`);
      text += `${this.sealOne(`{"time":"${new Date(this.now()).toISOString()}","event":"audit_overflow","count":${n},"since":"${new Date(this.overflowSince).toISOString()}"${this.opts.worker !== undefined ? `,"worker":${this.opts.worker}` : ""}`)}\n`;
      this.overflow = 0;
    }
    for (const body of batch) text += `${this.sealOne(body)}\n`;
    this.writingCount = batch.length;
    this.writing = Buffer.from(text);
    this.write();
  }

  private write(): void {
    const data = this.writing!;
    this.opts.output.append(data).then(
      () => {
        this.written += this.writingCount;
        this.opts.output.mark?.(this.head);
        this.writing = undefined;
        this.writingCount = 0;
        if (this.failing) this.opts.log("info", "audit: writing again");
        this.failing = false;
        this.retryDelay = this.opts.retryMs ?? 100;
        this.release();
        if (this.queued.length > 0 || this.overflow > 0) this.flush();
        else this.wake();
      },
      (e: Error & { written?: number }) => {
        if (e.written !== undefined && e.written > 0) this.writing = data.subarray(e.written);
        if (!this.failing) this.opts.log("error", `audit: cannot write the audit log (${e.message}); new calls ${this.opts.onFull === "block" ? "wait" : "are refused"} until it can be written again`);
        this.failing = true;
        this.retryTimer = setTimeout(() => {
          this.retryTimer = undefined;
          this.write();
        }, this.retryDelay);
        this.retryDelay = Math.min(this.retryDelay * 2, 5000);
      },
    );
  }

  /** Lets waiting calls in, first come first served, as long as there is room. */
  private release(): void {
    while (this.waiters.length > 0 && !this.full) {
      const w = this.waiters.shift()!;
      if (w.settled) continue; // gave up (deadline, cancelled)
      this.reserved++;
      w.resolve();
    }
  }

  private wake(): void {
    if (this.writing !== undefined || this.queued.length > 0) return;
    const w = this.idle;
    this.idle = [];
    for (const f of w) f();
  }

  /** Resolves once everything recorded so far is written. */
  drained(): Promise<void> {
    if (this.writing === undefined && this.queued.length === 0 && !this.scheduled && this.overflow === 0) return Promise.resolve();
    return new Promise((r) => this.idle.push(r));
  }

  /**
   * Shutdown: writes what is buffered (waiting up to `timeoutMs` while the
   * output fails), then closes the output. Later records only count as overflow.
   */
  async close(timeoutMs = 10_000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Calls still waiting for room are refused: nothing will make room for them after this.
    for (const w of this.waiters.splice(0)) w.reject(auditFull());
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = await Promise.race([
      this.drained().then(() => false),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(true), timeoutMs);
        timer.unref?.();
      }),
    ]);
    clearTimeout(timer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (timedOut) this.opts.log("error", `audit: ${this.queued.length + this.writingCount} record(s) could not be written before shutdown`);
    this.outputClosed = true;
    await this.opts.output.close();
  }
}
