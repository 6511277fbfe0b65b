/**
 * Receipt decoding shared by the queue drivers. Each driver issues receipts of
 * one shape; a receipt not of that shape was never issued by this queue (typed
 * wrong, truncated, from another backend) and is refused with INVALID_ARGUMENT
 * naming the `receipt` field. A well-formed receipt whose lease is over (acked,
 * redelivered, expired) stays FAILED_PRECONDITION (errors.staleReceipt).
 */
import { errors, type PrismError } from "../core/errors.js";

export function malformedReceipt(): PrismError {
  return errors.invalidArgument("receipt", "is malformed: not a receipt this queue issued");
}

/** Throws malformedReceipt() unless `receipt` has the driver's `shape`. */
export function checkReceipt(shape: RegExp, receipt: string): void {
  if (!shape.test(receipt)) throw malformedReceipt();
}
