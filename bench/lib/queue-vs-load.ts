/**
 * One end-to-end job run (enqueue → deliver → ack) of a fixed job count, in
 * its own process so that its CPU time is the application's: Prism through
 * the TypeScript SDK over WebSocket, BullMQ on Redis, or pg-boss on
 * PostgreSQL, with the same producers, consumers, job count and payload.
 *
 *   node dist/bench/lib/queue-vs-load.js '<json RunSpec>'   → one JSON line (RunResult) on stdout;
 *   it closes its connections and exits when a line arrives on stdin
 *
 * Each payload carries its enqueue time (performance.timeOrigin + now(), µs
 * resolution, same machine) so the consumer records enqueue → delivery latency.
 */
import { newHistogram, encodeHistogram } from "./hist.js";

export interface RunSpec {
  system: "prism" | "bullmq" | "pgboss";
  /** prism: ws://…/v1/ws; bullmq: redis://…; pgboss: postgres://… */
  url: string;
  namespace?: string;
  queue: string;
  producers: number;
  consumers: number;
  jobs: number;
  payloadBytes: number;
  /** prism: max_messages per Dequeue; pgboss: batchSize per fetch. */
  batch: number;
}

export interface RunResult {
  jobs: number;
  duplicates: number;
  /** ms from the first enqueue to the last ack. */
  e2eMs: number;
  /** ms from the first enqueue to the last enqueue answered. */
  enqueueMs: number;
  clientCpuUs: number;
  /** hdr histogram (µs) of enqueue → delivery, compressed base64. */
  latency: string;
}

const now = () => performance.timeOrigin + performance.now();

function payloadOf(bytes: number, i: number): string {
  // {"i":N,"t":T,"p":"xxx"}: the padding makes the body `bytes` long at small i.
  const head = JSON.stringify({ i, t: now(), p: "" });
  return head.slice(0, -3) + `"${"x".repeat(Math.max(0, bytes - head.length))}"}`;
}

let closeAfter: () => Promise<void> = async () => {};

async function run(spec: RunSpec): Promise<RunResult> {
  const hist = newHistogram();
  const seen = new Uint8Array(spec.jobs);
  let duplicates = 0;
  let delivered = 0;
  let doneResolve!: () => void;
  const done = new Promise<void>((r) => (doneResolve = r));
  /** A consumer got job `body`: latency, duplicate check, completion. */
  const got = (body: string) => {
    const { i, t } = JSON.parse(body) as { i: number; t: number };
    hist.recordValue(Math.max(1, Math.round((now() - t) * 1000)));
    if (seen[i]) duplicates++;
    else {
      seen[i] = 1;
      if (++delivered === spec.jobs) doneResolve();
    }
  };
  let next = 0;
  const cpu0 = process.cpuUsage();
  let t0 = 0;
  let enqueueMs = 0;
  const produce = async (enqueue: (body: string) => Promise<unknown>) => {
    t0 = now();
    await Promise.all(
      Array.from({ length: spec.producers }, async () => {
        for (let i = next++; i < spec.jobs; i = next++) await enqueue(payloadOf(spec.payloadBytes, i));
      }),
    );
    enqueueMs = now() - t0;
  };

  let close: () => Promise<void>;
  /** When the run ended; BullMQ and pg-boss: the last delivery (they complete a job right after its handler). */
  let endAt = 0;
  if (spec.system === "prism") {
    const { connect } = await import("@prism/client");
    const prism = await connect(spec.url);
    const q = prism.queue(spec.namespace!);
    const dec = new TextDecoder();
    let stop = false;
    let acked = 0;
    let ackedAll!: () => void;
    const allAcked = new Promise<void>((r) => (ackedAll = r));
    const consumers = Array.from({ length: spec.consumers }, async () => {
      while (!stop) {
        const msgs = await q.dequeue(spec.queue, { max: spec.batch, wait: 1 });
        for (const m of msgs) got(dec.decode(m.payload));
        await Promise.all(msgs.map((m) => q.ack(spec.queue, m.receipt)));
        if ((acked += msgs.length) >= spec.jobs) ackedAll();
      }
    });
    await produce((b) => q.enqueue(spec.queue, b));
    await done;
    // Prism's run ends at the last ack; the consumers' pending long polls (up to wait 1 s) are not part of it.
    await allAcked;
    endAt = now();
    stop = true;
    await Promise.all(consumers);
    close = () => prism.close();
  } else if (spec.system === "bullmq") {
    const { Queue, Worker } = await import("bullmq");
    const { Redis } = await import("ioredis");
    const connection = new Redis(spec.url, { maxRetriesPerRequest: null });
    const queue = new Queue(spec.queue, { connection });
    const worker = new Worker(spec.queue, async (job) => void got(job.data as string), { connection: new Redis(spec.url, { maxRetriesPerRequest: null }), concurrency: spec.consumers });
    // A job that fails would never complete: stop the run loudly instead of hanging.
    worker.on("failed", (_j, e) => {
      process.stderr.write(`bullmq job failed: ${e.message}\n`);
      process.exit(1);
    });
    await worker.waitUntilReady();
    await produce((b) => queue.add("job", b, { removeOnComplete: true, removeOnFail: true }));
    await done;
    close = async () => {
      await worker.close();
      await queue.obliterate({ force: true }).catch(() => {});
      await queue.close();
      connection.disconnect();
    };
  } else {
    const PgBoss = (await import("pg-boss")).default as unknown as new (o: object) => any;
    const boss = new PgBoss({ connectionString: spec.url, schema: "pgboss_bench", max: spec.consumers + spec.producers });
    boss.on("error", (e: Error) => process.stderr.write(`pg-boss: ${e.message}\n`));
    await boss.start();
    await boss.createQueue(spec.queue);
    for (let w = 0; w < spec.consumers; w++)
      await boss.work(spec.queue, { batchSize: spec.batch, pollingIntervalSeconds: 0.5 }, async (jobs: { data: { b: string } }[]) => {
        for (const j of jobs) got(j.data.b);
      });
    await produce((b) => boss.send(spec.queue, { b }));
    await done;
    close = async () => {
      await boss.deleteQueue(spec.queue).catch(() => {});
      await boss.stop({ graceful: false, wait: true });
    };
  }
  const e2eMs = (endAt || now()) - t0;
  const c = process.cpuUsage(cpu0);
  // Report first, close after the parent has read the backend's CPU (PostgreSQL
  // connection processes exit with their connection, taking their CPU time along).
  closeAfter = close;
  return { jobs: delivered, duplicates, e2eMs, enqueueMs, clientCpuUs: c.user + c.system, latency: encodeHistogram(hist) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const spec = JSON.parse(process.argv[2]!) as RunSpec;
  run(spec).then(
    (r) => {
      process.stdout.write(JSON.stringify(r) + "\n");
      // The parent writes a line when it has measured; then close and exit.
      process.stdin.once("data", () => void closeAfter().finally(() => process.exit(0)));
    },
    (e) => {
      process.stderr.write(`${(e as Error).stack ?? e}\n`);
      process.exit(1);
    },
  );
}
