/**
 * Delivering `executed` results together: results that finish while a call is in flight share the
 * next call, and that call also claims the runtime's next states (eager dispatch).
 *
 * One HTTP request and one server transaction then carry many results, which is what lets a busy
 * runtime go past a few hundred states per second. A server without the batch endpoint (an older
 * Exosphere or the original ExosphereHost) answers 404/405 once, and the runtime falls back to one
 * call per result. The Python SDK's `_batching.py` works the same way.
 * @module
 */
import { ApiError, AuthenticationError, ServerUnavailableError, errorForStatus } from './errors.js';
import type { ApiClient } from './http.js';
import type { ClaimedState, EagerClaim, ExecutedManyRequest, ExecutedManyResponse } from './wire.js';

/** Most results in one call. */
export const MAX_BATCH = 200;

/** The server has no batch endpoint (or could not take this batch): deliver this result on its own. */
export class BatchUnsupportedError extends Error {}

/** One result of a batch: what the single `executed` call would send, with its state's id. */
export type ExecutedItem = ExecutedManyRequest['results'][number];

/**
 * Where a batch gets the `claim` it sends along and hands the claimed states: `reserve()` gives the
 * `claim` field of the next call (its slots reserved) or undefined; `settle(claim, states)` gives
 * the reservation back and takes the states the answer carried.
 */
export interface EagerClaims {
  reserve(): EagerClaim | undefined;
  settle(claim: EagerClaim | undefined, states: ClaimedState[]): void;
}

interface Pending {
  item: ExecutedItem;
  action: string;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * @example
 * ```ts
 * const batcher = new ResultBatcher(api, '/namespace/demo/states/executed', claims, stop.signal);
 * await batcher.deliver({ state_id, outputs: [{ text: 'hi' }], lease_id }, `Reporting state ${state_id}`);
 * ```
 */
export class ResultBatcher {
  supported = true;
  private pending: Pending[] = [];
  private sending = false;

  constructor(
    private readonly api: ApiClient,
    private readonly path: string,
    private readonly claims: EagerClaims | undefined,
    private readonly stop: AbortSignal,
  ) {}

  /** Deliver one result; rejects with the item's own ApiError (named by `action`), or BatchUnsupportedError. */
  deliver(item: ExecutedItem, action: string): Promise<void> {
    if (!this.supported) return Promise.reject(new BatchUnsupportedError());
    const delivered = new Promise<void>((resolve, reject) => this.pending.push({ item, action, resolve, reject }));
    if (!this.sending) void this.sendAll();
    return delivered;
  }

  private async sendAll(): Promise<void> {
    this.sending = true;
    try {
      while (this.pending.length) {
        const batch = this.pending.splice(0, MAX_BATCH);
        await this.send(batch);
      }
    } finally {
      this.sending = false;
    }
  }

  private async send(batch: Pending[]): Promise<void> {
    const claim = this.claims?.reserve();
    const body: ExecutedManyRequest = { results: batch.map((p) => p.item) };
    if (claim) body.claim = claim;
    let claimed: ClaimedState[] = [];
    try {
      const answer = await this.api.requestWithRetry<ExecutedManyResponse | null>('POST', this.path, {
        json: body,
        action: `Reporting ${batch.length} result(s)`,
        signal: this.stop,
      });
      const results = Array.isArray(answer?.results) ? answer.results : [];
      claimed = Array.isArray(answer?.states) ? answer.states : [];
      batch.forEach((pending, index) => {
        const result = results[index] as { status_code?: unknown; detail?: unknown } | undefined;
        // No answer for this item (a body of another shape): sent again on its own, it gets its own
        // answer (a repeated result is answered as the first time).
        if (result === undefined) pending.reject(new BatchUnsupportedError());
        else if (typeof result.status_code === 'number') pending.reject(errorForStatus(result.status_code, result.detail, pending.action));
        else pending.resolve();
      });
    } catch (err) {
      if (err instanceof ApiError && (err.status === 404 || err.status === 405)) this.supported = false;
      // A refusal of the whole call (say a 422 for one bad item) must not fail the other results in
      // it: each is then sent on its own and gets its own answer. A wrong key fails them all.
      const alone = err instanceof ApiError && !(err instanceof AuthenticationError) && !(err instanceof ServerUnavailableError);
      for (const pending of batch) pending.reject(alone ? new BatchUnsupportedError() : err);
    } finally {
      // States claimed by an answer that never arrived are not lost: their leases expire.
      this.claims?.settle(claim, claimed);
    }
  }
}
