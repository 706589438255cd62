/**
 * Rendered JSON answers of read-only routes, kept while the store's change
 * mark (Store.changeMark) says no data changed since they were rendered. Only
 * the rendering is kept: token, policy, rate limit and audit still run for
 * every request in the API's hooks. The caller's key must name everything the
 * answer depends on besides the data (project, user, roles, query); a store
 * without a mark (PostgreSQL) renders every time. docs/compute.md.
 */
const MAX_BYTES = 32 * 1024 * 1024;

interface Entry {
  mark: string;
  body: Promise<Buffer>;
  bytes: number;
}

export class RenderedCache {
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;

  constructor(
    private readonly changeMark: (() => string) | undefined,
    private readonly maxBytes = MAX_BYTES,
  ) {}

  /**
   * The answer for `key` as JSON bytes: the one rendered under the current
   * mark (or being rendered: concurrent requests share one rendering), else
   * `render()`'s. The mark is taken before rendering, so data that changes
   * while it renders leaves an entry that no later request matches.
   */
  render(key: string, render: () => Promise<unknown>): Promise<Buffer> {
    const fresh = async () => Buffer.from(JSON.stringify(await render()));
    if (!this.changeMark) return fresh();
    const mark = this.changeMark();
    const known = this.entries.get(key);
    if (known?.mark === mark) return known.body;
    this.drop(key);
    const entry: Entry = { mark, body: fresh(), bytes: 0 };
    this.entries.set(key, entry);
    entry.body.then(
      (b) => {
        if (this.entries.get(key) !== entry) return;
        entry.bytes = b.length;
        this.bytes += b.length;
        // Oldest first: a Map iterates in insertion order.
        for (const k of this.entries.keys()) {
          if (this.bytes <= this.maxBytes) break;
          this.drop(k);
        }
      },
      () => {
        if (this.entries.get(key) === entry) this.drop(key);
      },
    );
    return entry.body;
  }

  private drop(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    this.bytes -= e.bytes;
    this.entries.delete(key);
  }
}
