/**
 * Minimal Prometheus metric families for the hot path.
 *
 * prom-client's labelled children hash their label object on every inc() /
 * observe(); Prism's request path must not build strings per call. These
 * families hand out series objects once (per label set, at cache-miss time)
 * and the hot path only adds to plain number fields. At scrape time each
 * family renders itself in prom-client's `get()` shape, so it registers in a
 * prom-client Registry (text exposition, default metrics) and aggregates
 * across workers with AggregatorRegistry.aggregate like any built-in metric.
 */
import type { Registry } from "prom-client";

export type Labels = Readonly<Record<string, string>>;
type Aggregator = "sum" | "max" | "min" | "average" | "first" | "omit";

interface Value {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

export interface FamilyJson {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  values: Value[];
  aggregator: Aggregator;
}

abstract class Family<S extends { readonly labels: Labels }> {
  protected readonly series = new Map<string, S>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: FamilyJson["type"],
    readonly aggregator: Aggregator = "sum",
  ) {}

  protected abstract create(labels: Labels): S;

  /** The series for a label set (cache it: this builds a key string). */
  child(labels: Labels): S {
    const key = JSON.stringify(labels);
    let s = this.series.get(key);
    if (s === undefined) this.series.set(key, (s = this.create(labels)));
    return s;
  }

  protected abstract values(): Value[];

  /** prom-client's metric interface (Registry.registerMetric). */
  async get(): Promise<FamilyJson> {
    return { name: this.name, help: this.help, type: this.type, values: this.values(), aggregator: this.aggregator };
  }

  reset(): void {
    this.series.clear();
  }

  register(registry: Registry): this {
    registry.registerMetric(this as never);
    return this;
  }
}

export class CounterSeries {
  value = 0;
  constructor(readonly labels: Labels) {}
}

export class CounterFamily extends Family<CounterSeries> {
  constructor(name: string, help: string) {
    super(name, help, "counter");
  }
  protected create(labels: Labels): CounterSeries {
    return new CounterSeries(labels);
  }
  protected values(): Value[] {
    return [...this.series.values()].map((s) => ({ value: s.value, labels: { ...s.labels } }));
  }
}

export class GaugeSeries {
  value = 0;
  constructor(readonly labels: Labels) {}
}

export class GaugeFamily extends Family<GaugeSeries> {
  constructor(name: string, help: string, aggregator: Aggregator = "sum") {
    super(name, help, "gauge", aggregator);
  }
  protected create(labels: Labels): GaugeSeries {
    return new GaugeSeries(labels);
  }
  protected values(): Value[] {
    return [...this.series.values()].map((s) => ({ value: s.value, labels: { ...s.labels } }));
  }
}

export class HistogramSeries {
  /** Per-bucket (not cumulative) counts; the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: Labels,
    private readonly bounds: Float64Array,
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    this.counts[i]!++;
    this.sum += v;
    this.count++;
  }
}

export class HistogramFamily extends Family<HistogramSeries> {
  private readonly bounds: Float64Array;
  constructor(name: string, help: string, buckets: readonly number[]) {
    super(name, help, "histogram");
    this.bounds = Float64Array.from(buckets);
  }
  protected create(labels: Labels): HistogramSeries {
    return new HistogramSeries(labels, this.bounds);
  }
  protected values(): Value[] {
    const out: Value[] = [];
    for (const s of this.series.values()) {
      let acc = 0;
      for (let i = 0; i <= this.bounds.length; i++) {
        acc += s.counts[i]!;
        out.push({ metricName: `${this.name}_bucket`, value: acc, labels: { ...s.labels, le: i < this.bounds.length ? this.bounds[i]! : "+Inf" } });
      }
      out.push({ metricName: `${this.name}_sum`, value: s.sum, labels: { ...s.labels } });
      out.push({ metricName: `${this.name}_count`, value: s.count, labels: { ...s.labels } });
    }
    return out;
  }
}
