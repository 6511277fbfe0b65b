/**
 * Decodes a protobuf request from a socket buffer. protobufjs's Node Buffer
 * reader clamps a string that runs past the end of the body instead of
 * failing, so a truncated message would decode "successfully". Reading through
 * a plain Uint8Array view of the same memory (no copy) gets the bounds-checked
 * reader. Bytes fields then come out as Uint8Array views, as the driver
 * contract allows.
 */
import type { MessageCodec } from "./methods.js";

export function decodeStrict<T>(codec: MessageCodec<T>, buf: Uint8Array, offset = 0): T {
  return codec.decode(new Uint8Array(buf.buffer, buf.byteOffset + offset, buf.byteLength - offset));
}
