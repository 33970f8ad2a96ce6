/**
 * Signals a node throws from `execute` to steer its state instead of returning outputs.
 *
 * @example
 * ```ts
 * async execute() {
 *   if (!(await isReady())) throw new ReQueueAfterSignal(30_000); // run again in 30 s
 *   if (await nothingToDo()) throw new PruneSignal({ reason: 'empty' }); // end this branch
 *   if (!this.signalPayload) throw new WaitForSignalSignal('approval'); // wait for a person
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

/** What a signal's name may be: letters, digits and `_ . : -`, 128 characters at most. */
const SIGNAL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;

/**
 * Wait, without holding the runtime, for the signal `signalName` sent to this run; then run again.
 *
 * The state becomes `WAITING`. When the signal is sent ({@link StateManager.sendSignal},
 * `exosphere signal send`, the dashboard), the node runs again with its payload in
 * `this.signalPayload`; a signal sent before the wait started is delivered at once. After
 * `timeoutMs` without it, the attempt fails with `Timed out waiting for signal <name>` and the
 * graph's retry policy applies. (`this.signal` stays the `AbortSignal` of the execution.)
 *
 * @example
 * ```ts
 * async execute() {
 *   if (!this.signalPayload) throw new WaitForSignalSignal('approval', { timeoutMs: 86_400_000 });
 *   return { approved: this.signalPayload.approved };
 * }
 * ```
 */
export class WaitForSignalSignal extends Error {
  override name = 'WaitForSignalSignal';
  /** The signal waited for. */
  readonly signalName: string;
  /** Milliseconds to wait before the attempt fails; undefined: for ever. */
  readonly timeoutMs: number | undefined;

  constructor(signalName: string, options: { timeoutMs?: number } = {}) {
    if (typeof signalName !== 'string' || !SIGNAL_NAME.test(signalName)) {
      throw new RangeError(
        `Signal name ${JSON.stringify(signalName)} must be 1 to 128 letters, digits or '_ . : -', starting with a letter or digit`,
      );
    }
    const { timeoutMs } = options;
    if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0)) {
      throw new RangeError(`WaitForSignalSignal timeoutMs must be a number of milliseconds > 0, got ${String(timeoutMs)}`);
    }
    super(`Waiting for signal ${signalName}`);
    this.signalName = signalName;
    this.timeoutMs = timeoutMs;
  }
}
