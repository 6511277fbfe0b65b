/**
 * memstore's keyed writes (the *_idempotent interfaces): each store with its
 * namespace's in-memory idempotency records (common/idempotency-memory.ts).
 */
import type { Clock } from "../../core/clock.js";
import type { Attributes, Bytes, IdempotencyToken, Once, SetOptions } from "../driver.js";
import { LocalPubSub } from "../common/local-pubsub.js";
import type { MemIdempotency } from "../common/idempotency-memory.js";
import { MemKeyValue } from "./keyvalue.js";
import { MemQueue } from "./queue.js";
import { MemStream } from "./stream.js";
import type { NsContext } from "./wait.js";

export class MemKeyValueOnce extends MemKeyValue {
  constructor(
    clock: Clock,
    private readonly idem: MemIdempotency,
  ) {
    super(clock);
  }
  setOnce(key: string, value: Bytes, opts: SetOptions, token: IdempotencyToken): Promise<Once<number>> {
    return this.idem.run(token, () => this.set(key, value, opts));
  }
  deleteOnce(key: string, token: IdempotencyToken): Promise<Once<boolean>> {
    return this.idem.run(token, () => this.delete(key));
  }
}

export class MemPubSubOnce extends LocalPubSub {
  constructor(
    clock: Clock,
    private readonly idem: MemIdempotency,
  ) {
    super(clock);
  }
  publishOnce(topic: string, payload: Bytes, attributes: Attributes, token: IdempotencyToken): Promise<Once<string>> {
    return this.idem.run(token, () => this.publish(topic, payload, attributes));
  }
}

export class MemQueueOnce extends MemQueue {
  constructor(
    ctx: NsContext,
    private readonly idem: MemIdempotency,
  ) {
    super(ctx);
  }
  enqueueOnce(queue: string, payload: Bytes, attributes: Attributes, delayMs: number, token: IdempotencyToken): Promise<Once<string>> {
    return this.idem.run(token, () => this.enqueue(queue, payload, attributes, delayMs));
  }
}

export class MemStreamOnce extends MemStream {
  constructor(
    ctx: NsContext,
    private readonly idem: MemIdempotency,
  ) {
    super(ctx);
  }
  appendOnce(stream: string, payload: Bytes, attributes: Attributes, token: IdempotencyToken): Promise<Once<number>> {
    return this.idem.run(token, () => this.append(stream, payload, attributes));
  }
}
