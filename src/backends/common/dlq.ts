/**
 * Dead-letter naming shared by every queue driver: a message delivered
 * max_deliveries times moves to `<queue>.dlq`, an ordinary queue. A dead-letter
 * queue is terminal: its messages are redelivered as often as consumers ask,
 * never moved on to `<queue>.dlq.dlq`.
 */
export const DLQ_SUFFIX = ".dlq";

export function isDeadLetterQueue(queue: string): boolean {
  return queue.endsWith(DLQ_SUFFIX);
}
