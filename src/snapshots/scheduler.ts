/**
 * The daemon's snapshot lifecycle scheduler: every `intervalMs` it asks the
 * snapshot service to prune what is past its policy (age, count). One tick
 * at a time; a failed tick is retried at the next (each prune is audited).
 */
export class SnapshotScheduler {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<unknown> | null = null;

  constructor(
    private readonly snapshots: { prune(): Promise<string[]> },
    private readonly intervalMs = 15 * 60_000,
  ) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.tick().catch(() => undefined), this.intervalMs);
    this.timer.unref();
  }

  /** One pass now (the timer's, or a test's); joins a pass already running. */
  tick(): Promise<unknown> {
    this.running ??= this.snapshots.prune().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running?.catch(() => undefined);
  }
}
