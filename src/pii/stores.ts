/**
 * `pii: encrypt` as a wrapper around one slot's stores (the router applies it
 * right above the breaker, so every pattern, migration and ingress above sees
 * plaintext and the backend only ciphertext): KeyValue values (Set, BatchSet,
 * CAS, idempotent and outbox writes; Get, BatchGet, Scan), queue, pub/sub and
 * stream payloads, and outbox messages. Keys, queue / topic / stream names,
 * attributes, versions and TTLs are unchanged (the backend needs them to
 * index, expire and route). A value that does not decrypt is refused with
 * DATA_LOSS; a pub/sub message that does not decrypt is not delivered and is
 * logged (a subscription cannot answer an error for one message).
 */
import type { KeyValueStore, NamespaceStores, OutboxMessage, OutboxRecord, PubSubStore, QueueMessage, QueueStore, StreamRecord, StreamStore } from "../backends/driver.js";
import type { Cipher } from "./envelope.js";

type Log = (level: "info" | "warn" | "error", msg: string) => void;

const kvAad = (key: string) => `kv\0${key}`;
const MSG = "msg";

export function encryptStores(stores: NamespaceStores, cipher: Cipher, log: Log): NamespaceStores {
  const out: { -readonly [K in keyof NamespaceStores]: NamespaceStores[K] } = {};
  if (stores.keyvalue) out.keyvalue = encryptKeyValue(stores.keyvalue, cipher);
  if (stores.pubsub) out.pubsub = encryptPubSub(stores.pubsub, cipher, log);
  if (stores.queue) out.queue = encryptQueue(stores.queue, cipher);
  if (stores.stream) out.stream = encryptStream(stores.stream, cipher);
  if (stores.close) out.close = () => stores.close!();
  return out;
}

function encMsg(cipher: Cipher, m: OutboxMessage): OutboxMessage {
  return { ...m, payload: cipher.encrypt(m.payload, MSG) };
}

function encryptKeyValue(s: KeyValueStore, c: Cipher): KeyValueStore {
  const w: KeyValueStore = {
    get: async (key) => {
      const r = await s.get(key);
      return r === null ? null : { value: c.decrypt(r.value, kvAad(key)), version: r.version };
    },
    set: (key, value, opts) => s.set(key, c.encrypt(value, kvAad(key)), opts),
    delete: (key) => s.delete(key),
    exists: (key) => s.exists(key),
  };
  if (s.batchGet) w.batchGet = async (keys) => (await s.batchGet!(keys)).map((r, i) => (r === null ? null : { value: c.decrypt(r.value, kvAad(keys[i]!)), version: r.version }));
  if (s.batchSet) w.batchSet = (entries, ttlMs) => s.batchSet!(entries.map((e) => ({ key: e.key, value: c.encrypt(e.value, kvAad(e.key)) })), ttlMs);
  if (s.batchDelete) w.batchDelete = (keys) => s.batchDelete!(keys);
  if (s.scan)
    w.scan = async (prefix, cursor, limit, keysOnly) => {
      const page = await s.scan!(prefix, cursor, limit, keysOnly);
      return { nextCursor: page.nextCursor, items: page.items.map((it) => (it.value === undefined ? it : { ...it, value: c.decrypt(it.value, kvAad(it.key)) })) };
    };
  if (s.expire) w.expire = (key, ttlMs) => s.expire!(key, ttlMs);
  if (s.ttl) w.ttl = (key) => s.ttl!(key);
  if (s.persist) w.persist = (key) => s.persist!(key);
  if (s.setWithMessage) w.setWithMessage = (key, value, opts, msg) => s.setWithMessage!(key, c.encrypt(value, kvAad(key)), opts, encMsg(c, msg));
  if (s.deleteWithMessage) w.deleteWithMessage = (key, msg) => s.deleteWithMessage!(key, encMsg(c, msg));
  if (s.outboxRelay)
    w.outboxRelay = (opts, deliver) =>
      s.outboxRelay!(opts, async (batch) => {
        // A row that does not decrypt is parked (failed), the others delivered in plaintext.
        const ok: OutboxRecord[] = [];
        const failed: { id: number; error: string }[] = [];
        for (const r of batch) {
          try {
            ok.push({ ...r, payload: c.decrypt(r.payload, MSG) });
          } catch (e) {
            failed.push({ id: r.id, error: (e as Error).message });
          }
        }
        const outcome = ok.length ? await deliver(ok) : { sent: [], failed: [] };
        return { sent: outcome.sent, failed: [...outcome.failed, ...failed] };
      });
  if (s.setOnce) w.setOnce = (key, value, opts, token) => s.setOnce!(key, c.encrypt(value, kvAad(key)), opts, token);
  if (s.deleteOnce) w.deleteOnce = (key, token) => s.deleteOnce!(key, token);
  return w;
}

function encryptPubSub(s: PubSubStore, c: Cipher, log: Log): PubSubStore {
  let undecryptable = 0;
  const w: PubSubStore = {
    publish: (topic, payload, attributes) => s.publish(topic, c.encrypt(payload, MSG), attributes),
    subscribe: (pattern, sink) =>
      s.subscribe(pattern, {
        onMessage: (m) => {
          let payload: Buffer;
          try {
            payload = c.decrypt(m.payload, MSG);
          } catch (e) {
            // Logged, at most once per 1000: anyone who can publish to the broker directly could flood the log.
            if (undecryptable++ % 1000 === 0) log("warn", `${(e as Error).message}: a message on topic "${m.topic}" was not delivered (${undecryptable} so far)`);
            return;
          }
          sink.onMessage({ ...m, payload });
        },
        onError: (e) => sink.onError(e),
      }),
  };
  if (s.publishOnce) w.publishOnce = (topic, payload, attributes, token) => s.publishOnce!(topic, c.encrypt(payload, MSG), attributes, token);
  return w;
}

function encryptQueue(s: QueueStore, c: Cipher): QueueStore {
  const dec = (m: QueueMessage): QueueMessage => ({ ...m, payload: c.decrypt(m.payload, MSG) });
  const w: QueueStore = {
    enqueue: (queue, payload, attributes, delayMs) => s.enqueue(queue, c.encrypt(payload, MSG), attributes, delayMs),
    dequeue: async (queue, opts) => (await s.dequeue(queue, opts)).map(dec),
    ack: (queue, receipt) => s.ack(queue, receipt),
    nack: (queue, receipt, delayMs) => s.nack(queue, receipt, delayMs),
  };
  if (s.extendVisibility) w.extendVisibility = (queue, receipt, ms) => s.extendVisibility!(queue, receipt, ms);
  if (s.enqueueOnce) w.enqueueOnce = (queue, payload, attributes, delayMs, token) => s.enqueueOnce!(queue, c.encrypt(payload, MSG), attributes, delayMs, token);
  // Counts only (a queue migration's drain check): nothing to encrypt.
  if (s.depths) w.depths = () => s.depths!();
  return w;
}

function encryptStream(s: StreamStore, c: Cipher): StreamStore {
  const dec = (r: StreamRecord): StreamRecord => ({ ...r, payload: c.decrypt(r.payload, MSG) });
  const w: StreamStore = {
    append: (stream, payload, attributes) => s.append(stream, c.encrypt(payload, MSG), attributes),
    read: async (stream, from, limit) => (await s.read(stream, from, limit)).map(dec),
  };
  if (s.readGroup) w.readGroup = async (stream, group, consumer, count, blockMs, signal) => (await s.readGroup!(stream, group, consumer, count, blockMs, signal)).map(dec);
  if (s.ackGroup) w.ackGroup = (stream, group, offsets) => s.ackGroup!(stream, group, offsets);
  if (s.appendOnce) w.appendOnce = (stream, payload, attributes, token) => s.appendOnce!(stream, c.encrypt(payload, MSG), attributes, token);
  return w;
}
