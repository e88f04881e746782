/** Exact latency samples (microseconds) with percentiles; a bench run holds at most a few hundred thousand. */
export class Samples {
  private data = new Float64Array(1 << 16);
  private n = 0;
  private sorted = true;

  record(us: number): void {
    if (this.n === this.data.length) {
      const next = new Float64Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.n++] = us;
    this.sorted = false;
  }

  merge(other: Samples): this {
    for (const v of other.values()) this.record(v);
    return this;
  }

  get count(): number {
    return this.n;
  }

  values(): Float64Array {
    return this.data.subarray(0, this.n);
  }

  /** p in [0, 100]; nearest-rank. NaN when empty. */
  percentile(p: number): number {
    if (this.n === 0) return Number.NaN;
    if (!this.sorted) {
      this.values().sort();
      this.sorted = true;
    }
    const rank = Math.min(this.n - 1, Math.max(0, Math.ceil((p / 100) * this.n) - 1));
    return this.data[rank] ?? Number.NaN;
  }

  max(): number {
    return this.percentile(100);
  }
}

export const median = (xs: readonly number[]): number => {
  const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};
