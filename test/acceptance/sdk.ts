/**
 * The SDK the suites drive, `@prism/client` (clients/typescript), and the
 * type names the suites use for it. Suites go through the SDK only, never
 * through the server's internals, so they test what applications see.
 */
export { connect, PrismError, Code } from "@prism/client";
export type {
  Prism as PrismClient,
  KeyValue as KvClient,
  Queue as QueueClient,
  Stream as StreamClient,
  ScanItem as KvItem,
  QueueMessage,
  StreamRecord,
  PubSubMessage,
  Subscription as SubscriptionClient,
} from "@prism/client";
