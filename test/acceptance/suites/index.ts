/** Interface → its acceptance suite, and the refusal checks for unclaimed interfaces. */
import type { PrimitiveInterfaceName as InterfaceName } from "../../../src/core/interfaces.js";
import type { Suite } from "../harness.js";
import { keyvalue_basic } from "./keyvalue_basic.js";
import { keyvalue_ttl } from "./keyvalue_ttl.js";
import { keyvalue_scan } from "./keyvalue_scan.js";
import { keyvalue_batch } from "./keyvalue_batch.js";
import { keyvalue_cas } from "./keyvalue_cas.js";
import { keyvalue_outbox } from "./keyvalue_outbox.js";
import { pubsub_basic } from "./pubsub_basic.js";
import { pubsub_wildcards } from "./pubsub_wildcards.js";
import { queue_basic } from "./queue_basic.js";
import { queue_visibility } from "./queue_visibility.js";
import { queue_dead_letter } from "./queue_dead_letter.js";
import { queue_delayed } from "./queue_delayed.js";
import { stream_basic } from "./stream_basic.js";
import { stream_consumer_groups } from "./stream_consumer_groups.js";
import { stream_replay } from "./stream_replay.js";
import { keyvalue_idempotent } from "./keyvalue_idempotent.js";
import { pubsub_idempotent } from "./pubsub_idempotent.js";
import { queue_idempotent } from "./queue_idempotent.js";
import { stream_idempotent } from "./stream_idempotent.js";

export { UNCLAIMED } from "./claims.js";

export const SUITES: Record<InterfaceName, Suite> = {
  keyvalue_basic,
  keyvalue_ttl,
  keyvalue_scan,
  keyvalue_batch,
  keyvalue_cas,
  keyvalue_outbox,
  keyvalue_idempotent,
  pubsub_basic,
  pubsub_wildcards,
  pubsub_idempotent,
  queue_basic,
  queue_visibility,
  queue_dead_letter,
  queue_delayed,
  queue_idempotent,
  stream_basic,
  stream_consumer_groups,
  stream_replay,
  stream_idempotent,
};
