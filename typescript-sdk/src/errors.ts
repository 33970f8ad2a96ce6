/**
 * Every error the SDK throws, in one hierarchy rooted at {@link ExosphereError}.
 *
 * Errors that come from the state manager's answers are {@link ApiError}s and carry the HTTP
 * `status` and the server's own message (`detail`).
 *
 * @example
 * ```ts
 * import { StateManager, NotFoundError } from 'exospherehost';
 *
 * try {
 *   await new StateManager('demo').getGraph('missing');
 * } catch (err) {
 *   if (err instanceof NotFoundError) console.log(err.status, err.detail);
 * }
 * ```
 * @module
 */

/** Base class of every error thrown by the SDK. */
export class ExosphereError extends Error {
  override name = 'ExosphereError';
}

/**
 * The SDK was configured wrongly (bad node classes, missing URI, bad numbers). It lists every
 * problem found, so that all of them can be fixed at once.
 *
 * @example
 * ```ts
 * try { new Runtime('ns', 'rt', [BadNode]); } catch (err) {
 *   if (err instanceof ConfigurationError) console.log(err.problems);
 * }
 * ```
 */
export class ConfigurationError extends ExosphereError {
  override name = 'ConfigurationError';
  readonly problems: string[];

  constructor(problems: string[], what = 'configuration') {
    const lines = problems.map((problem) => `  - ${problem}`).join('\n');
    super(`Invalid ${what} (${problems.length} problem(s)):\n${lines}`);
    this.problems = [...problems];
  }
}

/**
 * A node's outputs (or its prune data) cannot be sent to the state manager: text that is not valid
 * Unicode (a lone surrogate such as `'\ud800'`), text with NUL characters, or a value that is not
 * JSON. The runtime reports the state as errored with this message, which names the node and the
 * field, so the graph's retry policy applies.
 */
export class UnsendableOutputError extends ExosphereError {
  override name = 'UnsendableOutputError';
}

/**
 * The state manager answered with an error, or could not be reached.
 *
 * `status` is the HTTP status (`undefined` when no answer arrived) and `detail` the server's
 * message (its `detail` field when the body has one; a list of field errors for a 422).
 */
export class ApiError extends ExosphereError {
  override name = 'ApiError';
  readonly status: number | undefined;
  readonly detail: unknown;
  /** What the SDK was doing, e.g. `Triggering graph "etl"`. */
  readonly action: string;
  /**
   * False only when the connection failed before the request left, so that even a request that
   * is not idempotent (a trigger) can safely be sent again.
   */
  requestSent = true;

  constructor(status: number | undefined, detail: unknown, action = '', options?: ErrorOptions) {
    const prefix = action ? `${action} failed: ` : '';
    const code = status === undefined ? '' : `${status} `;
    super(`${prefix}${code}${describeDetail(detail)}`, options);
    this.status = status;
    this.detail = detail;
    this.action = action;
  }

  /** Whether the same request may succeed later: no answer, 408, 429 or 5xx. */
  get retryable(): boolean {
    return this.status === undefined || this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

/** The state manager could not be reached, or answered 502/503/504 (it may be restarting). */
export class ServerUnavailableError extends ApiError {
  override name = 'ServerUnavailableError';
}

/** The API key was refused (401): check `EXOSPHERE_API_KEY` against the server's secret. */
export class AuthenticationError extends ApiError {
  override name = 'AuthenticationError';
}

/** The key is valid but its role or namespace does not allow the call (403); the message names the role it needs. */
export class PermissionDeniedError extends ApiError {
  override name = 'PermissionDeniedError';
}

/** The graph, run or state does not exist in this namespace (404). */
export class NotFoundError extends ApiError {
  override name = 'NotFoundError';
}

/** The request conflicts with the current state on the server (409). */
export class ConflictError extends ApiError {
  override name = 'ConflictError';
}

/**
 * The state is no longer held under this runtime's lease: it expired, or the state was completed
 * or claimed again. The server already moved the state on, so this runtime's result is discarded.
 */
export class LeaseLostError extends ConflictError {
  override name = 'LeaseLostError';
}

/**
 * A graph template was refused (400/422 at upsert), is `INVALID`, or its validation did not
 * finish in time. `errors` lists the server's messages, naming nodes and fields.
 *
 * @example
 * ```ts
 * try { await sm.upsertGraph('g', nodes, {}); } catch (err) {
 *   if (err instanceof GraphValidationError) for (const e of err.errors) console.error(e);
 * }
 * ```
 */
export class GraphValidationError extends ExosphereError {
  override name = 'GraphValidationError';
  readonly graphName: string;
  /** `INVALID`, or `PENDING` when validation did not finish in time. */
  readonly status: string;
  readonly errors: string[];

  constructor(graphName: string, status: string, errors: string[], options?: ErrorOptions) {
    const lines = errors.map((error) => `\n  - ${error}`).join('');
    super(`Graph validation failed for "${graphName}": ${status}${lines}`, options);
    this.graphName = graphName;
    this.status = status;
    this.errors = [...errors];
  }
}

/** A run did not finish within the time given to `StateManager.waitForRun`. */
export class RunTimeoutError extends ExosphereError {
  override name = 'RunTimeoutError';
  readonly runId: string;
  readonly timeoutMs: number;
  /** The last run summary read, if any. */
  readonly run: unknown;

  constructor(runId: string, timeoutMs: number, run: { status?: string } | undefined) {
    super(`Run ${runId} did not finish within ${timeoutMs} ms (status: ${run?.status ?? 'unknown'})`);
    this.runId = runId;
    this.timeoutMs = timeoutMs;
    this.run = run;
  }
}

/** The most specific {@link ApiError} for an error answer: the one table of status codes. */
export function errorForStatus(status: number, detail: unknown, action = ''): ApiError {
  switch (status) {
    case 401:
      return new AuthenticationError(status, detail, action);
    case 403:
      return new PermissionDeniedError(status, detail, action);
    case 404:
      return new NotFoundError(status, detail, action);
    case 409:
      return typeof detail === 'string' && detail.toLowerCase().startsWith('lease lost')
        ? new LeaseLostError(status, detail, action)
        : new ConflictError(status, detail, action);
    case 502:
    case 503:
    case 504:
      return new ServerUnavailableError(status, detail, action);
    default:
      return new ApiError(status, detail, action);
  }
}

/**
 * Flatten a server `detail` (a string, or FastAPI's list of `{loc, msg}` field errors) into
 * one message per problem, e.g. `body.nodes.0.identifier: Value error, Node identifier cannot be empty`.
 */
export function detailMessages(detail: unknown): string[] {
  if (Array.isArray(detail)) {
    return detail.map((item: unknown) => {
      if (item !== null && typeof item === 'object' && 'msg' in item) {
        const { loc, msg } = item as { loc?: unknown; msg: unknown };
        const location = Array.isArray(loc) ? loc.map(String).join('.') : '';
        return location ? `${location}: ${String(msg)}` : String(msg);
      }
      return typeof item === 'string' ? item : JSON.stringify(item);
    });
  }
  if (typeof detail === 'string') return [detail];
  return [JSON.stringify(detail)];
}

function describeDetail(detail: unknown): string {
  return detailMessages(detail).join('; ');
}

/** The text reported for a failed state: `${err.name}: ${err.message}`. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return `Error: ${String(err)}`;
}
