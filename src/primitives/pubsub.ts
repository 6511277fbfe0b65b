/** PubSub: publish, and push-based subscriptions handed to the ingress's sink. */
import type { prism } from "../gen/prism.js";
import { errors } from "../core/errors.js";
import type { PubSubStore, Subscription, SubscriptionSink } from "../backends/driver.js";
import type { NamespaceRuntime } from "../router/router.js";
import { requireAttributes, requireInterface, requirePattern, requireTopic, requireValue } from "./validate.js";
import { withTraceAttributes } from "../observability/propagate.js";
import { idempotencyToken, onceMethod, onceResult } from "./idempotency.js";

const EMPTY = new Uint8Array(0);

function store(ns: NamespaceRuntime): PubSubStore {
  const s = ns.stores.pubsub;
  if (!s) throw errors.primitiveNotServed(ns.name, "pubsub");
  return s;
}

export async function publish(ns: NamespaceRuntime, req: prism.v1.IPublishRequest): Promise<prism.v1.IPublishResponse> {
  const topic = req.topic ?? "";
  requireTopic(topic);
  const payload = req.payload ?? EMPTY;
  requireValue(ns, payload, "payload");
  const attributes = requireAttributes(req.attributes);
  const token = idempotencyToken(ns, "pubsub_idempotent", "publish", topic, req.idempotencyKey, [payload, attributes]);
  if (token) {
    const s = store(ns);
    return { messageId: onceResult(await onceMethod(ns, "pubsub_idempotent", s.publishOnce).call(s, topic, payload, withTraceAttributes(attributes), token), token) };
  }
  return { messageId: await store(ns).publish(topic, payload, withTraceAttributes(attributes)) };
}

export async function subscribe(ns: NamespaceRuntime, req: prism.v1.ISubscribeRequest, sink: SubscriptionSink): Promise<Subscription> {
  const pattern = req.pattern ?? "";
  if (requirePattern(pattern)) requireInterface(ns, "pubsub_wildcards");
  return store(ns).subscribe(pattern, sink);
}
