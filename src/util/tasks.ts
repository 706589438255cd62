/**
 * Background work keyed by resource id (a server's build, a volume's
 * create): the latest task per id is remembered until it ends, so callers
 * can wait for it and never act on a half-built resource.
 */
export class TaskTracker {
  private readonly tasks = new Map<string, Promise<void>>();

  track(id: string, p: Promise<void>): void {
    const t = p.finally(() => {
      if (this.tasks.get(id) === t) this.tasks.delete(id);
    });
    this.tasks.set(id, t);
  }

  running(id: string): Promise<void> | undefined {
    return this.tasks.get(id);
  }

  /** Resolves when `id`'s task (or, without an id, every task) has finished. */
  async settled(id?: string): Promise<void> {
    if (id) await this.tasks.get(id);
    else await Promise.all(this.tasks.values());
  }
}
