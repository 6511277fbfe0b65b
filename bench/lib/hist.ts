/**
 * Latency histograms (hdr-histogram-js), recorded in microseconds. Worker
 * threads send theirs to the main thread as compressed base64 to be merged.
 */
import * as hdr from "hdr-histogram-js";

export type Histogram = hdr.Histogram;

export function newHistogram(): Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3, bitBucketSize: 32, useWebAssembly: false });
}

export function encodeHistogram(h: Histogram): string {
  return hdr.encodeIntoCompressedBase64(h);
}

export function mergeEncoded(into: Histogram, encoded: string): void {
  const h = hdr.decodeFromCompressedBase64(encoded, 32, false);
  into.add(h);
  h.destroy();
}

/** Latency summary in milliseconds. */
export interface Latency {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export function latencyOf(h: Histogram): Latency {
  const ms = (q: number) => round3(h.getValueAtPercentile(q) / 1000);
  return { p50: ms(50), p90: ms(90), p99: ms(99), p999: ms(99.9), max: round3(h.maxValue / 1000) };
}

export function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
