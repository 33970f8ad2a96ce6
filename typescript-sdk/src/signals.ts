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

/** What a limit's name may be: letters, digits and `_ . : -`, 128 characters at most. */
const LIMIT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;

/**
 * The provider behind limit `limit` answered 429: run this state again after `retryAfterSeconds`
 * without using a retry, and hand out nothing of that limit (of its bucket `key`, or all of it
 * without one) to any runtime until then. {@link retryAfterSeconds} reads the delay from the answer.
 *
 * @example
 * ```ts
 * const answer = await fetch(url, { method: 'POST', body });
 * if (answer.status === 429) throw new RateLimitedSignal('openai', retryAfterSeconds(answer) ?? 1);
 * ```
 */
export class RateLimitedSignal extends Error {
  override name = 'RateLimitedSignal';
  readonly limit: string;
  readonly retryAfterSeconds: number;
  readonly key: string | null;

  constructor(limit: string, retryAfterSeconds: number, key: string | null = null) {
    if (typeof limit !== 'string' || !LIMIT_NAME.test(limit)) {
      throw new RangeError(
        `Limit name ${JSON.stringify(limit)} must be 1 to 128 letters, digits or '_ . : -', starting with a letter or digit`,
      );
    }
    if (typeof retryAfterSeconds !== 'number' || !Number.isFinite(retryAfterSeconds) || retryAfterSeconds < 0) {
      throw new RangeError(`RateLimitedSignal retryAfterSeconds must be a number of seconds >= 0, got ${String(retryAfterSeconds)}`);
    }
    super(`Rate limited by ${limit}${key ? ` (${key})` : ''}: retry after ${retryAfterSeconds} s`);
    this.limit = limit;
    this.retryAfterSeconds = retryAfterSeconds;
    this.key = key;
  }
}

const DURATION_PART = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
const RESET_HEADERS = ['x-ratelimit-reset-requests', 'x-ratelimit-reset-tokens', 'x-ratelimit-reset'];
const SCALE: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 0.001 };

function plainSeconds(text: string): number | undefined {
  const trimmed = text.trim();
  if (!/^\d+(\.\d+)?$/.test(trimmed)) return undefined;
  return Number(trimmed);
}

function duration(text: string): number | undefined {
  const trimmed = text.trim();
  const plain = plainSeconds(trimmed);
  if (plain !== undefined) return plain;
  const parts = [...trimmed.matchAll(DURATION_PART)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== trimmed) return undefined;
  return parts.reduce((sum, p) => sum + Number(p[1]) * (SCALE[p[2] as string] ?? 0), 0);
}

/**
 * Seconds to wait before calling a provider again, from its answer (a fetch `Response`, or its
 * `Headers`): `Retry-After` (seconds or an HTTP date), `retry-after-ms`, and the
 * `x-ratelimit-reset-requests` / `x-ratelimit-reset-tokens` headers (`"1s"`, `"6m0s"`, `"120ms"`);
 * the longest wait given wins. `undefined` when the answer says nothing usable.
 *
 * @example
 * ```ts
 * retryAfterSeconds(new Response(null, { status: 429, headers: { 'Retry-After': '2' } })); // 2
 * ```
 */
export function retryAfterSeconds(answer: { headers: Headers } | Headers, now: number = Date.now()): number | undefined {
  const headers = answer instanceof Headers ? answer : answer.headers;
  const waits: number[] = [];
  const ms = headers.get('retry-after-ms');
  if (ms !== null) {
    const value = plainSeconds(ms);
    if (value !== undefined) waits.push(value / 1000);
  }
  const after = headers.get('retry-after');
  if (after !== null) {
    const value = plainSeconds(after);
    if (value !== undefined) waits.push(value);
    else {
      const date = Date.parse(after);
      if (!Number.isNaN(date)) waits.push(Math.max(0, (date - now) / 1000));
    }
  }
  for (const name of RESET_HEADERS) {
    const value = headers.get(name);
    if (value !== null) {
      const found = duration(value);
      if (found !== undefined) waits.push(found);
    }
  }
  return waits.length ? Math.max(...waits) : undefined;
}
