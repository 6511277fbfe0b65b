/** The Redis driver's keyed writes: an OnceReply (scripts.ts) → Once, or the refusal it carries. */
import { errors } from "../../core/errors.js";
import type { Once } from "../driver.js";
import type { OnceReply } from "./scripts.js";

/** Redis replies with strings and integers; `dec` turns the recorded string back into the result. */
export function onceOf<T>(reply: OnceReply, dec: (s: string) => T, refused: (code: number) => never = () => {
  throw errors.internal(`idempotent script refused with ${reply[1]}`);
}): Once<T> {
  switch (Number(reply[0])) {
    case 0:
      return { result: dec(String(reply[1])) };
    case 1:
      return { result: dec(String((reply as [1, string, string])[2])), replayedHash: String(reply[1]) };
    default:
      return refused(Number(reply[1]));
  }
}
