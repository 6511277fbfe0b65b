/** The shared binary attribute table (src/backends/common/attribute-table.ts) and the two drivers that store it. */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { attributeTableSize, readAttributeTable, writeAttributeTable } from "../../src/backends/common/attribute-table.js";
import * as redis from "../../src/backends/redis/codec.js";
import * as rabbit from "../../src/backends/rabbitmq/codec.js";

describe("attribute table", () => {
  it("has a fixed layout: u16 count, u16 key length, key, u32 value length, value", () => {
    const hex = "0002" + "0001" + "61" + "00000001" + "31" + "0002" + "c3bc" + "00000000";
    const attrs = { a: "1", ü: "" };
    assert.equal(attributeTableSize(attrs), hex.length / 2);
    const out = Buffer.alloc(attributeTableSize(attrs) + 1, 0xee);
    assert.equal(writeAttributeTable(out, 1, attrs), out.length);
    assert.equal(out.subarray(1).toString("hex"), hex);
    assert.deepEqual(readAttributeTable(out, 1), [attrs, out.length]);
    // Redis and RabbitMQ store the same bytes.
    assert.equal(redis.encodeAttrs(attrs).toString("hex"), hex);
    assert.equal(rabbit.encodeAttrs(attrs)!.toString("hex"), hex);
  });

  it("no attributes: size 0 (Redis stores an empty value, RabbitMQ no header); a truncated table stops at the end", () => {
    assert.equal(attributeTableSize({}), 0);
    assert.equal(redis.encodeAttrs({}).length, 0);
    assert.equal(rabbit.encodeAttrs({}), undefined);
    assert.deepEqual(redis.decodeAttrs(Buffer.alloc(0)), {});
    assert.deepEqual(rabbit.decodeAttrs("not a buffer"), {});
    assert.deepEqual(readAttributeTable(Buffer.from("0005", "hex"), 0), [{}, 2]);
  });

  it("the Redis envelope round-trips id, time, attributes and payload", () => {
    for (const attrs of [{}, { k: "v", traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" }] as Record<string, string>[]) {
      const env = redis.encodeEnvelope(Buffer.from("payload"), attrs, "id-1", 1234.5);
      const d = redis.decodeEnvelope(env)!;
      assert.deepEqual({ ...d, payload: d.payload.toString() }, { payload: "payload", attributes: attrs, messageId: "id-1", publishTimeMs: 1234.5 });
    }
  });
});
