/**
 * Signals a node throws from `execute` to steer its state instead of returning outputs.
 *
 * @example
 * ```ts
 * async execute() {
 *   if (!(await isReady())) throw new ReQueueAfterSignal(30_000); // run again in 30 s
 *   if (await nothingToDo()) throw new PruneSignal({ reason: 'empty' }); // end this branch
 *   return { result: 'done' };
 * }
 * ```
 * @module
 */

/**
 * End this branch of the run: the state becomes `PRUNED` and no next nodes are created.
 * `data` is stored on the state for inspection.
 *
 * @example
 * ```ts
 * throw new PruneSignal({ reason: 'duplicate' });
 * ```
 */
export class PruneSignal extends Error {
  override name = 'PruneSignal';
  readonly data: Record<string, unknown>;

  constructor(data: Record<string, unknown> = {}) {
    super(`Prune signal received with data: ${JSON.stringify(data)}`);
    this.data = { ...data };
  }
}

/**
 * Put this state back in the queue and run it again after `delayMs` milliseconds, with the same
 * inputs and without using a retry.
 *
 * @example
 * ```ts
 * throw new ReQueueAfterSignal(5_000); // run again in 5 s
 * ```
 */
export class ReQueueAfterSignal extends Error {
  override name = 'ReQueueAfterSignal';
  /** The delay in whole milliseconds, rounded up so that a positive delay is never sent as 0. */
  readonly delayMs: number;

  constructor(delayMs: number) {
    if (typeof delayMs !== 'number' || !Number.isFinite(delayMs) || delayMs <= 0) {
      throw new RangeError(`ReQueueAfterSignal delay must be a number of milliseconds > 0, got ${String(delayMs)}`);
    }
    super(`ReQueueAfter signal received with delay: ${delayMs} ms`);
    this.delayMs = Math.ceil(delayMs);
  }
}
