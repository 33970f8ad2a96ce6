/**
 * The one place that talks HTTP: the global `fetch` (pooled keep-alive connections), error
 * mapping, timeouts, and retries with backoff and jitter.
 *
 * Every request goes through {@link ApiClient}, which turns an error answer into a typed
 * {@link ApiError} carrying the server's message, and a network failure into a
 * {@link ServerUnavailableError}. {@link ApiClient.requestWithRetry} repeats requests that may
 * succeed later (network errors, 408, 429, 5xx); every other 4xx is final.
 * @module
 */
import { ApiError, ServerUnavailableError, errorForStatus } from './errors.js';
import type { Logger } from './log.js';
import { VERSION } from './version.js';

export const DEFAULT_TIMEOUT_MS = 30_000;
// Failures are logged at WARN on the first attempt and then once every this many attempts.
const LOG_EVERY_N_ATTEMPTS = 10;
// Connection errors that prove the request never reached the server.
const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

/**
 * Capped exponential backoff with "equal jitter": each delay is in `[d/2, d]`. The lower half keeps
 * a retry from ever spinning; the random upper half keeps many clients from reconnecting in
 * lockstep after an outage.
 *
 * @example
 * ```ts
 * const backoff = new Backoff(100, 5_000);
 * backoff.nextDelay(); // 50-100 ms, then 100-200 ms, ... never more than 5 s
 * backoff.reset();     // after a success
 * ```
 */
export class Backoff {
  attempts = 0;

  constructor(
    readonly initialMs = 100,
    readonly maximumMs = 5_000,
    readonly multiplier = 2,
  ) {}

  /** The delay before the next attempt; each call grows the following one. */
  nextDelay(): number {
    const ceiling = Math.min(this.maximumMs, this.initialMs * this.multiplier ** this.attempts);
    this.attempts += 1;
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  reset(): void {
    this.attempts = 0;
  }
}

/** Wait `ms` milliseconds; resolves early (never rejects) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Options of one request. */
export interface RequestOptions {
  /** JSON body. */
  json?: unknown;
  /** Query parameters. */
  query?: Record<string, string | number>;
  /** A body written as it is produced (each piece on the wire as soon as it is enqueued), instead of `json`. */
  stream?: { body: ReadableStream<Uint8Array>; contentType: string };
  /** Bound on the whole exchange (default: the client's timeout). */
  timeoutMs?: number;
  /** What the SDK is doing, used in error messages: `Reading graph "g"`. */
  action?: string;
  /** Aborts the request; the abort reason is thrown as is. */
  signal?: AbortSignal;
}

/** Options of {@link ApiClient.requestWithRetry}. */
export interface RetryOptions extends RequestOptions {
  backoff?: Backoff;
  /** Unlimited by default. */
  maxAttempts?: number;
  /** Which failures to repeat (default: {@link ApiError.retryable}). */
  retryIf?: (error: ApiError) => boolean;
  /** Stop retrying as soon as this returns true; the last error is thrown. */
  giveUp?: () => boolean;
}

/**
 * A client of one state manager with the API key on every request.
 * `baseUrl` is the versioned prefix, e.g. `http://localhost:8000/v0`.
 *
 * @example
 * ```ts
 * const api = new ApiClient('http://localhost:8000/v0', 'secret');
 * const graph = await api.request('GET', '/namespace/demo/graph/g', { action: 'Reading graph g' });
 * ```
 */
export class ApiClient {
  private readonly headers: Record<string, string>;

  constructor(
    readonly baseUrl: string,
    key: string,
    private readonly timeoutMs = DEFAULT_TIMEOUT_MS,
    private readonly logger?: Logger,
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.headers = { accept: 'application/json', 'user-agent': `exospherehost-typescript/${VERSION}` };
    // A keyless local development server accepts any request; send the header only when set.
    if (key) this.headers['x-api-key'] = key;
  }

  /**
   * Send one request and return the decoded JSON body (`undefined` when empty). Throws an
   * {@link ApiError} subclass for any status outside 2xx and {@link ServerUnavailableError} when
   * no answer arrived.
   */
  async request<T = unknown>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    const { json, query, action = `${method} ${path}`, signal } = options;
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const url = new URL(this.baseUrl + path);
    for (const [name, value] of Object.entries(query ?? {})) url.searchParams.set(name, String(value));

    // Serialised before the request, so a body that is not JSON (a bigint, a cycle) throws its own
    // TypeError instead of passing for a network failure that would be retried for ever.
    const body = json === undefined ? undefined : JSON.stringify(json);
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new TimeoutMarker()), timeoutMs);
    const forward = () => controller.abort(signal?.reason);
    signal?.addEventListener('abort', forward, { once: true });
    try {
      if (signal?.aborted) throw signal.reason;
      const init: RequestInit = { method, headers: { ...this.headers }, signal: controller.signal };
      if (body !== undefined) {
        init.body = body;
        (init.headers as Record<string, string>)['content-type'] = 'application/json';
      } else if (options.stream) {
        init.body = options.stream.body;
        (init as { duplex?: string }).duplex = 'half'; // fetch's requirement for a streamed request body
        (init.headers as Record<string, string>)['content-type'] = options.stream.contentType;
      }
      const response = await fetch(url, init);
      const text = await response.text();
      if (!response.ok) throw errorForStatus(response.status, parseDetail(text, response.statusText), action);
      return (text ? parseJson(text) : undefined) as T;
    } catch (err) {
      if (err instanceof ApiError) throw err;
      if (signal?.aborted) throw signal.reason;
      throw unavailable(err, action, timeoutMs, controller.signal.reason instanceof TimeoutMarker);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', forward);
    }
  }

  /**
   * Open a server-sent event stream and yield its events until the server ends it. Throws an
   * {@link ApiError} subclass when the server refuses the stream (before any event) and
   * {@link ServerUnavailableError} when the connection fails or drops, or stays silent for
   * `silenceMs`. Leaving the loop early closes the connection.
   */
  async *streamEvents(path: string, options: StreamOptions): AsyncGenerator<ServerSentEvent> {
    const { action = `GET ${path}`, signal } = options;
    const controller = new AbortController();
    let timer = setTimeout(() => controller.abort(new TimeoutMarker()), this.timeoutMs);
    const rearm = (ms: number) => {
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(new TimeoutMarker()), ms);
    };
    const forward = () => controller.abort(signal?.reason);
    signal?.addEventListener('abort', forward, { once: true });
    try {
      if (signal?.aborted) throw signal.reason;
      const headers = { ...this.headers, accept: 'text/event-stream', ...options.headers };
      const response = await fetch(this.baseUrl + path, { headers, signal: controller.signal });
      if (!response.ok) {
        const text = await response.text();
        throw errorForStatus(response.status, parseDetail(text, response.statusText), action);
      }
      if (!response.body) return;
      rearm(options.silenceMs);
      const decoder = new TextDecoder();
      const body = response.body;
      async function* text(): AsyncGenerator<string> {
        for await (const chunk of body) {
          rearm(options.silenceMs);
          yield decoder.decode(chunk, { stream: true });
        }
      }
      yield* parseEventStream(text());
    } catch (err) {
      if (err instanceof ApiError) throw err;
      if (signal?.aborted) throw signal.reason;
      throw unavailable(err, action, options.silenceMs, controller.signal.reason instanceof TimeoutMarker);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', forward);
      controller.abort(); // leaving early (or an error) closes the connection
    }
  }

  /**
   * Like {@link ApiClient.request}, but repeat retryable failures with backoff until one is
   * accepted, `maxAttempts` is reached, `giveUp()` returns true, or `signal` aborts.
   */
  async requestWithRetry<T = unknown>(method: string, path: string, options: RetryOptions = {}): Promise<T> {
    const backoff = options.backoff ?? new Backoff();
    const shouldRetry = options.retryIf ?? ((error: ApiError) => error.retryable);
    const action = options.action ?? `${method} ${path}`;
    for (let attempt = 1; ; attempt += 1) {
      try {
        const result = await this.request<T>(method, path, options);
        if (attempt > 1) this.logger?.info(`${action} succeeded after ${attempt} attempts`);
        return result;
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        const outOfAttempts = options.maxAttempts !== undefined && attempt >= options.maxAttempts;
        if (!shouldRetry(err) || outOfAttempts || options.giveUp?.() || options.signal?.aborted) throw err;
        const delay = backoff.nextDelay();
        const line = `${err.message}; retrying in ${Math.round(delay)} ms (attempt ${attempt})`;
        if (attempt % LOG_EVERY_N_ATTEMPTS === 1) this.logger?.warn(line);
        else this.logger?.debug(line);
        await sleep(delay, options.signal);
        if (options.signal?.aborted) throw err;
      }
    }
  }
}

/** One event of a `text/event-stream` answer; `id` is `undefined` when the event set none. */
export interface ServerSentEvent {
  /** The event's name (`message` when unnamed). */
  event: string;
  /** The `data:` lines joined by newlines. */
  data: string;
  id?: string;
}

/** Options of {@link ApiClient.streamEvents}. */
export interface StreamOptions {
  headers?: Record<string, string>;
  /** A stream silent (not even a keep-alive comment) for this long is dead: it fails as unavailable. */
  silenceMs: number;
  action?: string;
  /** Ends the stream; the abort reason is thrown as is. */
  signal?: AbortSignal;
}

/**
 * Events from the text chunks of a server-sent event stream, by the WHATWG rules: comments, fields,
 * a blank line ends an event, lines end with CRLF, LF or CR.
 *
 * @example
 * ```ts
 * for await (const event of parseEventStream(chunks)) console.log(event.event, event.id, event.data);
 * ```
 */
export async function* parseEventStream(chunks: AsyncIterable<string>): AsyncGenerator<ServerSentEvent> {
  let buffer = '';
  let event = '';
  let data: string[] = [];
  let id: string | undefined;
  for await (const chunk of chunks) {
    buffer += chunk;
    for (;;) {
      const end = buffer.search(/\r\n|\r|\n/);
      // A CR at the very end may be the first half of a CRLF: wait for the next chunk.
      if (end < 0 || (buffer[end] === '\r' && end === buffer.length - 1)) break;
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + (buffer.startsWith('\r\n', end) ? 2 : 1));
      if (line === '') {
        if (data.length) yield { event: event || 'message', data: data.join('\n'), ...(id === undefined ? {} : { id }) };
        event = '';
        data = [];
        id = undefined;
        continue;
      }
      if (line.startsWith(':')) continue; // a comment: the server's keep-alive
      const colon = line.indexOf(':');
      const name = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (name === 'event') event = value;
      else if (name === 'data') data.push(value);
      else if (name === 'id' && !value.includes('\0')) id = value;
    }
  }
}

class TimeoutMarker extends Error {}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function parseDetail(text: string, statusText: string): unknown {
  if (!text) return statusText;
  const body = parseJson(text);
  if (body !== null && typeof body === 'object' && 'detail' in body) return (body as { detail: unknown }).detail;
  return body;
}

function unavailable(err: unknown, action: string, timeoutMs: number, timedOut: boolean): ServerUnavailableError {
  // "server unavailable" leads: it is what a runtime's log says while a server restarts.
  if (timedOut) {
    return new ServerUnavailableError(undefined, `server unavailable (no answer within ${timeoutMs} ms)`, action, { cause: err });
  }
  const cause = err instanceof Error ? (err.cause as { code?: string; message?: string } | undefined) : undefined;
  const code = cause?.code;
  const reason = cause?.message ?? (err instanceof Error ? err.message : String(err));
  const message = code && !reason.includes(code) ? `${code} (${reason})` : reason;
  const error = new ServerUnavailableError(undefined, `server unavailable (${message})`, action, { cause: err });
  error.requestSent = !(code && NOT_SENT_CODES.has(code));
  return error;
}
