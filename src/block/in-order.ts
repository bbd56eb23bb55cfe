/**
 * Requests started in order, finished in any order, and settled in the order they were started.
 *
 * compare, commit and rebase overlap their reads (and writes) this way but must fail as their
 * serial loop would: a failure counts only once every request before it succeeded, and nothing is
 * left running (reading a closed file, writing into an image after the error) when it is thrown.
 */
export class InOrder<T> {
  private readonly queue: Array<Promise<T>> = [];
  private failed = false;

  /**
   * @param limit requests started but not yet settled, at most
   * @param settled called with each request's value, in the order they were added
   */
  constructor(readonly limit: number, private readonly settled: (value: T) => void = () => undefined) {}

  /** Start tracking `job`; waits (settling the oldest) while `limit` are unsettled. */
  async add(job: Promise<T>): Promise<void> {
    if (this.failed) throw new Error('InOrder: add after a failure');
    // awaited in order below; this only keeps a later failure from being reported as unhandled meanwhile
    job.catch(() => undefined);
    this.queue.push(job);
    while (this.queue.length >= this.limit) await this.settleOldest();
  }

  /** Settle everything still in flight, in order; throws the first failure. */
  async finish(): Promise<void> {
    while (this.queue.length > 0) await this.settleOldest();
  }

  /**
   * Fail with `e` where the producer stands (a status query or a check between requests): the
   * requests before it settle first, and an earlier failure among them wins.
   */
  async fail(e: unknown): Promise<never> {
    await this.finish();
    throw e;
  }

  private async settleOldest(): Promise<void> {
    const job = this.queue.shift()!;
    let value: T;
    try {
      value = await job;
    } catch (e) {
      this.failed = true;
      const rest = this.queue.splice(0);
      await Promise.allSettled(rest);
      throw e;
    }
    this.settled(value);
  }
}
