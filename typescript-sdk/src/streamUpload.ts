/**
 * Sends what a node streams (`this.stream(text)`) to the server: one attempt's chunks, in order,
 * durably.
 *
 * Chunks go in long requests: a request opens when the node streams while none is open, and its
 * body (one JSON string per line) is written as the node streams, each chunk on the wire at once,
 * for up to {@link REQUEST_MS}; the answer then confirms every chunk of it as stored. So a node
 * streaming fast costs about one request a second, and a chunk reaches readers in milliseconds.
 *
 * A request that fails is sent again from the first chunk it carried: the server keeps a chunk
 * already stored at its offset, so nothing is stored twice. `close()` sends what is left and
 * resolves once the server has it all (the runtime calls it before it reports the attempt's
 * result), or once the lease is lost, which ends the stream.
 * @module
 */
import { ApiError, ConflictError, NotFoundError } from './errors.js';
import { type ApiClient, Backoff, sleep } from './http.js';
import type { Logger } from './log.js';
import type { StreamAppendResponse } from './wire.js';

/** How long one request stays open for more chunks. */
export const REQUEST_MS = 1_000;
const END = Symbol('end');
type Item = string | typeof END;

const line = (text: string): string => `${JSON.stringify(text)}\n`;

/**
 * The stream of one attempt, on its way to `path` (`.../state/{state_id}/stream`).
 *
 * @example
 * ```ts
 * const upload = new StreamUpload(api, '/namespace/ns/state/s1/stream', leaseId, logger, signal);
 * upload.append('Hello ');
 * upload.append('world');
 * await upload.close(); // both chunks are stored on the server now
 * ```
 */
export class StreamUpload {
  private readonly queue: Item[] = [];
  private wake: (() => void) | undefined;
  private sending: Promise<void> | undefined;
  private confirmed = 0;
  private unconfirmed: string[] = [];
  private ended = false;
  private readonly encoder = new TextEncoder();

  constructor(
    private readonly api: ApiClient,
    private readonly path: string,
    private readonly leaseId: string,
    private readonly logger: Logger,
    private readonly signal: AbortSignal,
  ) {}

  /** Queue one chunk; it is sent at once when a request is open, else opens one. */
  append(text: string): void {
    if (typeof text !== 'string') throw new TypeError(`stream() takes text (a string), got ${typeof text}`);
    if (this.ended) throw new Error("This attempt's stream is closed: stream() only works while execute() runs");
    if (!text) return;
    this.push(text);
    this.sending ??= this.sendAll();
  }

  /** Send what is left and resolve once the server has stored it (or the lease is lost). */
  async close(): Promise<void> {
    this.ended = true;
    if (!this.sending) return;
    this.push(END);
    await this.sending;
  }

  private push(item: Item): void {
    this.queue.push(item);
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** Stop sending at once (the attempt was given up): chunks not confirmed yet are dropped. */
  cancel(): void {
    this.ended = true;
    this.unconfirmed = [];
    this.queue.splice(0);
    this.push(END);
  }

  /** Every queued item, waiting for one (up to `ms` when given); [] when none came in time. */
  private async take(ms?: number): Promise<Item[]> {
    if (!this.queue.length && (ms === undefined || ms > 0)) {
      await new Promise<void>((resolve) => {
        const timer =
          ms === undefined
            ? undefined
            : setTimeout(() => {
                this.wake = undefined;
                resolve();
              }, ms);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    return this.queue.splice(0);
  }

  private async sendAll(): Promise<void> {
    const backoff = new Backoff(100, 2_000);
    const state = { closing: false };
    for (;;) {
      if (!this.unconfirmed.length) {
        if (state.closing) return;
        const [first, ...rest] = await this.take();
        this.queue.unshift(...rest);
        if (first === END || first === undefined) return;
        this.unconfirmed.push(first);
      }
      try {
        const answer = await this.api.request<StreamAppendResponse>('POST', this.path, {
          query: { lease_id: this.leaseId, offset: this.confirmed },
          stream: { body: this.body(state), contentType: 'application/x-ndjson' },
          action: `Streaming from ${this.path}`,
          signal: this.signal,
        });
        backoff.reset();
        this.confirmed = answer.next_offset;
        this.unconfirmed = [];
      } catch (err) {
        if (this.signal.aborted) return;
        if (err instanceof ConflictError || err instanceof NotFoundError) {
          this.logger.warn(`Stream ended early: ${err.message}`); // the lease is lost: the attempt is over
          this.ended = true;
          return;
        }
        if (!(err instanceof ApiError) || !err.retryable) {
          this.logger.error(`Stream chunks ${this.confirmed} and later not stored: ${String(err)}`);
          return;
        }
        await sleep(backoff.nextDelay(), this.signal);
      }
    }
  }

  /** The request's lines: the unconfirmed chunks, then new ones as they come, for {@link REQUEST_MS}. */
  private body(state: { closing: boolean }): ReadableStream<Uint8Array> {
    const deadline = Date.now() + REQUEST_MS;
    let first = true;
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        if (first) {
          first = false;
          controller.enqueue(this.encoder.encode(this.unconfirmed.map(line).join('')));
          if (state.closing) controller.close();
          return;
        }
        const items = await this.take(deadline - Date.now());
        const texts = items.filter((item): item is string => item !== END);
        if (texts.length) {
          this.unconfirmed.push(...texts);
          controller.enqueue(this.encoder.encode(texts.map(line).join('')));
        }
        if (texts.length < items.length) state.closing = true;
        if (state.closing || !items.length) controller.close();
      },
    });
  }
}
