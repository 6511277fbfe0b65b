/**
 * Delays without head-of-line blocking: binary delay tiers (the scheme
 * NServiceBus uses on RabbitMQ). Per-message TTLs in one queue expire only at
 * the head, so a 1-hour message would hold back a 1-second one; here every
 * tier queue has ONE fixed TTL, so its messages expire in arrival order and
 * nothing waits behind a longer delay.
 *
 * - Tier L (0..20) = topic exchange `${prefix}.~delay.L` + classic durable
 *   queue of the same name with x-message-ttl 2^L s, dead-lettering into
 *   tier L-1's exchange (tier 0 into `${prefix}.~delay.deliver`).
 * - The routing key is the delay in seconds as 21 binary words, most
 *   significant first, then the destination queue name:
 *   `0.0. ... .1.0.<queue>`. Tier L routes a key whose word for bit L is `1`
 *   into its queue (wait 2^L s) and a `0` straight on to tier L-1.
 * - The deliver exchange has one binding per destination queue
 *   (`*.*. ... .<queue>`), made the first time the queue is delayed into.
 *
 * A delay is whole seconds (rounded up), at most 2^21-1 s (24 days).
 * Dead-lettering out of classic queues is at-most-once inside RabbitMQ: a
 * delayed message can be lost if the broker crashes between two hops.
 */
import type { Channel } from "amqplib";

export const DELAY_BITS = 21;
const WILD = "*.";

export class DelayTiers {
  readonly deliver: string;
  readonly top: string;
  constructor(private readonly prefix: string) {
    this.deliver = `${prefix}.~delay.deliver`;
    this.top = this.tier(DELAY_BITS - 1);
  }

  tier(level: number): string {
    return `${this.prefix}.~delay.${level}`;
  }

  /** Declares the exchanges, queues and bindings (idempotent). */
  async declare(ch: Channel): Promise<void> {
    await ch.assertExchange(this.deliver, "topic", { durable: true });
    for (let level = 0; level < DELAY_BITS; level++) {
      const name = this.tier(level);
      const next = level === 0 ? this.deliver : this.tier(level - 1);
      await ch.assertExchange(name, "topic", { durable: true });
      await ch.assertQueue(name, {
        durable: true,
        arguments: { "x-queue-type": "classic", "x-message-ttl": 2 ** level * 1000, "x-dead-letter-exchange": next },
      });
      const lead = WILD.repeat(DELAY_BITS - 1 - level);
      await ch.bindQueue(name, name, `${lead}1.#`);
      if (level > 0) await ch.bindExchange(next, name, `${lead}0.#`);
      else await ch.bindExchange(this.deliver, name, `${lead}0.#`);
    }
  }

  /** Routes delayed messages for `queue` out of the deliver exchange. */
  bindDestination(ch: Channel, queue: string): Promise<unknown> {
    return ch.bindQueue(queue, this.deliver, WILD.repeat(DELAY_BITS) + queue);
  }

  /** The routing key for a delay (ms, rounded up to whole seconds, at least 1 s). */
  routingKey(delayMs: number, queue: string): string {
    const s = Math.min(Math.max(1, Math.ceil(delayMs / 1000)), 2 ** DELAY_BITS - 1);
    let key = "";
    for (let level = DELAY_BITS - 1; level >= 0; level--) key += (s >> level) & 1 ? "1." : "0.";
    return key + queue;
  }
}
