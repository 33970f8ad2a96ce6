/**
 * The client for graphs and runs: upsert a graph, trigger a run, follow it to the end.
 * @module
 */
import { ApiError, ConfigurationError, GraphValidationError, NotFoundError, RunTimeoutError, detailMessages } from './errors.js';
import { ApiClient, Backoff, DEFAULT_TIMEOUT_MS, sleep } from './http.js';
import type { z } from 'zod';
import {
  CronTrigger,
  GraphNodeModel,
  type GraphTemplate,
  RetryPolicyModel,
  type RunCancelled,
  type SignalSent,
  type RunEvent,
  type RunState,
  type RunSummary,
  StoreConfigModel,
  type StreamChunk,
  type TriggerResult,
} from './models.js';
import type {
  ApiKeyInfo,
  AuditLogResponse,
  Budget,
  CreatedKeyResponse,
  DeleteLimitResponse,
  GraphTrigger,
  KeyRole,
  LimitRequest,
  LimitResponse,
  ListKeysResponse,
  ListLimitsResponse,
  RunStatesResponse,
  TriggerManyResponse,
  TriggerRequest,
} from './wire.js';

// Idempotent reads and PUTs are repeated this many times on network errors and 5xx.
const READ_ATTEMPTS = 5;
// The server sends a keep-alive comment every 15 s: a stream silent for this long is dead.
const STREAM_SILENCE_MS = 45_000;
// States per request when reading a run: the server pages them.
const STATES_PAGE = 1000;
const RUN_EVENTS = new Set(['snapshot', 'change', 'finished']);

/** Options of {@link StateManager.watchRun}. */
export interface WatchOptions {
  /** Stops following: the iteration then throws the abort reason. */
  signal?: AbortSignal;
}

/** Options of {@link StateManager.streamState}. */
export interface StreamStateOptions extends WatchOptions {
  /** The attempt to follow (from 1). Default: the state's latest. */
  attempt?: number;
  /** The first chunk's offset. Default 0. */
  fromOffset?: number;
}

/** Settings of a {@link StateManager}. */
export interface StateManagerConfig {
  /** State manager base URL. Default: env `EXOSPHERE_STATE_MANAGER_URI`. */
  stateManagerUri?: string;
  /** API key sent as `x-api-key`. Default: env `EXOSPHERE_API_KEY`. */
  key?: string;
  /** API version prefix. Default `v0`. */
  stateManagerVersion?: string;
  /** Bound on one request in ms. Default 30000. */
  timeoutMs?: number;
}

/** How `upsertGraph` waits for a validation the server reports as `PENDING`. */
export interface UpsertOptions {
  /** Give up after this many ms. Default 60000. */
  validationTimeoutMs?: number;
  /** Re-read the graph this often, in ms. Default 1000. */
  pollingIntervalMs?: number;
  /** The priority of runs whose trigger gives none (default 0; see {@link TriggerOptions}). */
  priority?: number;
  /** The budget of runs whose trigger gives none. */
  budget?: Budget;
}

/** Additive fields of a trigger. */
export interface TriggerOptions {
  /** Higher is claimed first; each point is worth one second of waiting, so lower ones still run. Default: the graph's, else 0. */
  priority?: number;
  /** `{ tokens, cost_usd }` (either or both). Default: the graph's. */
  budget?: Budget;
}

/**
 * Talks to the state manager on behalf of one namespace: graphs and runs. Errors are thrown as
 * typed errors (see `errors`) carrying the server's message.
 *
 * @example
 * ```ts
 * const sm = new StateManager('MyProject', {
 *   stateManagerUri: process.env.EXOSPHERE_STATE_MANAGER_URI || 'http://localhost:8000',
 *   key: process.env.EXOSPHERE_API_KEY || '',
 * });
 * const { run_id } = await sm.trigger('my-graph', { user_id: '42' });
 * const run = await sm.waitForRun(run_id, 60_000);
 * console.log(run.status); // SUCCESS
 * ```
 */
export class StateManager {
  readonly namespace: string;
  private readonly api: ApiClient;

  constructor(namespace: string, config: StateManagerConfig = {}) {
    const uri = config.stateManagerUri || process.env.EXOSPHERE_STATE_MANAGER_URI || '';
    const key = config.key || process.env.EXOSPHERE_API_KEY || '';
    const problems: string[] = [];
    if (typeof namespace !== 'string' || !namespace.trim()) problems.push(`namespace must be a non-empty string, got ${JSON.stringify(namespace)}`);
    if (!uri) problems.push('stateManagerUri is not set: pass it or set EXOSPHERE_STATE_MANAGER_URI');
    else if (!/^https?:\/\//.test(uri)) problems.push(`stateManagerUri must start with http:// or https://, got "${uri}"`);
    if (problems.length) throw new ConfigurationError(problems, 'StateManager configuration');
    this.namespace = namespace;
    const base = `${uri.replace(/\/+$/, '')}/${config.stateManagerVersion ?? 'v0'}`;
    this.api = new ApiClient(base, key, config.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  }

  /**
   * Start a run of `graphName`; resolves to `{ status: 'CREATED', run_id }`.
   *
   * `inputs` override the first node's template inputs, `store` seeds the run's key/value store,
   * and `startDelay` (ms) postpones the first node. `deadlineSeconds` cancels the run (reason
   * `deadline exceeded`) if it is still pending that long after the trigger (default: the graph's).
   * With `idempotencyKey`, a second trigger of this graph with the same key (within the server's key
   * time, 24 h by default) starts nothing and resolves to the first run's id with `duplicate: true`;
   * such a trigger is also resent after any failure that may pass, since resending cannot start a
   * second run. `options` carry the run's `priority` and `budget` (see {@link TriggerOptions}).
   *
   * @example
   * ```ts
   * const { run_id } = await sm.trigger('my-graph', { user_id: '12345' }, { cursor: '0' }, 0, undefined, 'order-1234');
   * await sm.trigger('my-graph', {}, {}, 0, undefined, undefined, { priority: 10, budget: { tokens: 200_000 } });
   * ```
   */
  async trigger(
    graphName: string,
    inputs?: Record<string, string>,
    store?: Record<string, string>,
    startDelay = 0,
    deadlineSeconds?: number,
    idempotencyKey?: string,
    options: TriggerOptions = {},
  ): Promise<TriggerResult> {
    const body: TriggerRequest = { start_delay: startDelay, inputs: inputs ?? {}, store: store ?? {} };
    if (deadlineSeconds !== undefined) body.deadline_seconds = deadlineSeconds;
    if (idempotencyKey !== undefined) body.idempotency_key = idempotencyKey;
    if (options.priority !== undefined) body.priority = options.priority;
    if (options.budget !== undefined) body.budget = options.budget;
    return this.api.requestWithRetry<TriggerResult>('POST', `${this.graphPath(graphName)}/trigger`, {
      json: body,
      action: `Triggering graph "${graphName}"`,
      maxAttempts: READ_ATTEMPTS,
      // A trigger creates a run: without a key, only send it again when the first one surely never left.
      retryIf: (error: ApiError) => idempotencyKey !== undefined || !error.requestSent,
    });
  }

  /**
   * Start many runs of `graphName` in one request; resolves to one trigger answer per run, in order.
   *
   * Each entry is a trigger's body (`inputs`, `store`, `start_delay`, `idempotency_key`, all optional).
   * The server starts them in one transaction, all or none; a bad entry is refused with a message
   * naming its position (`runs[3]: ...`). At most 1,000 runs per call.
   *
   * @example
   * ```ts
   * const started = await sm.triggerMany('my-graph', [{ inputs: { user_id: '1' } }, { inputs: { user_id: '2' } }]);
   * console.log(started.map((run) => run.run_id));
   * ```
   */
  async triggerMany(graphName: string, runs: Partial<TriggerRequest>[]): Promise<TriggerResult[]> {
    const keyed = runs.every((run) => run.idempotency_key !== undefined && run.idempotency_key !== null);
    const answer = await this.api.requestWithRetry<TriggerManyResponse>('POST', `${this.graphPath(graphName)}/trigger-many`, {
      json: { runs },
      action: `Triggering ${runs.length} runs of graph "${graphName}"`,
      maxAttempts: READ_ATTEMPTS,
      // Resending cannot start runs twice only when every run carries an idempotency key.
      retryIf: (error: ApiError) => keyed || !error.requestSent,
    });
    return answer.runs;
  }

  /**
   * Read a graph template, with `validation_status`, `validation_errors` and `validation_warnings`.
   *
   * @example
   * ```ts
   * const graph = await sm.getGraph('my-graph');
   * console.log(graph.validation_status); // VALID
   * ```
   */
  async getGraph(graphName: string): Promise<GraphTemplate> {
    return this.read<GraphTemplate>(this.graphPath(graphName), `Reading graph "${graphName}"`);
  }

  /**
   * Create or replace a graph template and wait until the server has validated it. Resolves to the
   * validated graph. Throws {@link GraphValidationError} listing the server's errors (which nodes
   * and fields are wrong) when the graph is refused, `INVALID`, or still `PENDING` after
   * `options.validationTimeoutMs`. The models are parsed first, so what is sent has their
   * defaults filled (as the Python SDK sends them).
   *
   * Nodes no runtime has registered yet do not make the graph invalid: they are listed under
   * `validation_warnings`, and their states wait until a runtime registers them.
   *
   * The original SDK's call form also works: after `storeConfig` come `validationTimeout` and
   * `pollingInterval`, both numbers in seconds (default 60 and 1); it takes no cron triggers.
   * The form is told by the 6th argument: an array (or nothing) is ours, a number the original's.
   *
   * @example
   * ```ts
   * const graph = await sm.upsertGraph(
   *   'my-graph',
   *   [{ node_name: 'greeting', namespace: 'MyProject', identifier: 'greeter',
   *      inputs: { name: '${{ store.name }}' }, next_nodes: [] }],
   *   {},                                                   // secrets
   *   { max_retries: 2, strategy: 'FIXED', backoff_factor: 1000 },
   *   { required_keys: ['name'] },
   *   [{ expression: '0 9 * * 1-5', store: { name: 'cron' } }], // cron triggers (UTC)
   * );
   * // The original SDK's form: wait up to 120 s, re-reading the graph every 2 s while PENDING.
   * await sm.upsertGraph('my-graph', nodes, {}, undefined, undefined, 120, 2);
   * ```
   */
  upsertGraph(
    graphName: string,
    graphNodes: GraphNodeModel[],
    secrets: Record<string, string>,
    retryPolicy?: RetryPolicyModel,
    storeConfig?: StoreConfigModel,
    triggers?: CronTrigger[],
    options?: UpsertOptions,
  ): Promise<GraphTemplate>;
  /** The original SDK's form: `validationTimeout` and `pollingInterval` in seconds. */
  upsertGraph(
    graphName: string,
    graphNodes: GraphNodeModel[],
    secrets: Record<string, string>,
    retryPolicy: RetryPolicyModel | undefined,
    storeConfig: StoreConfigModel | undefined,
    validationTimeout: number | undefined,
    pollingInterval?: number,
  ): Promise<GraphTemplate>;
  async upsertGraph(
    graphName: string,
    graphNodes: GraphNodeModel[],
    secrets: Record<string, string>,
    retryPolicy?: RetryPolicyModel,
    storeConfig?: StoreConfigModel,
    triggersOrValidationTimeout?: CronTrigger[] | number,
    optionsOrPollingInterval?: UpsertOptions | number,
  ): Promise<GraphTemplate> {
    const { triggers, options } = upsertTail(graphName, triggersOrValidationTimeout, optionsOrPollingInterval);
    const parsed = parseModels(graphNodes, retryPolicy, storeConfig, triggers);
    if (parsed.problems.length) throw new GraphValidationError(graphName, 'INVALID', parsed.problems);
    const body: Record<string, unknown> = { secrets: secrets ?? {}, nodes: parsed.nodes };
    if (parsed.retryPolicy !== undefined) body.retry_policy = parsed.retryPolicy;
    if (parsed.storeConfig !== undefined) body.store_config = parsed.storeConfig;
    if (parsed.triggers !== undefined) body.triggers = parsed.triggers.map(graphTrigger);
    if (options.priority !== undefined) body.priority = options.priority;
    if (options.budget !== undefined) body.budget = options.budget;
    let graph: GraphTemplate;
    try {
      graph = await this.api.requestWithRetry<GraphTemplate>('PUT', this.graphPath(graphName), {
        json: body,
        action: `Upserting graph "${graphName}"`,
        maxAttempts: READ_ATTEMPTS,
      });
    } catch (err) {
      const status = (err as ApiError).status;
      if (status === 400 || status === 422) {
        throw new GraphValidationError(graphName, 'INVALID', detailMessages((err as ApiError).detail), { cause: err });
      }
      throw err;
    }
    return this.awaitValidation(graphName, graph, options);
  }

  private async awaitValidation(graphName: string, graph: GraphTemplate, options: UpsertOptions): Promise<GraphTemplate> {
    const timeoutMs = options.validationTimeoutMs ?? 60_000;
    const deadline = Date.now() + timeoutMs;
    // Only PENDING means "still validating"; any other status is final.
    while (graph.validation_status === 'PENDING') {
      if (Date.now() >= deadline) {
        throw new GraphValidationError(graphName, 'PENDING', [`validation did not finish within ${timeoutMs} ms`]);
      }
      await sleep(options.pollingIntervalMs ?? 1000);
      graph = await this.getGraph(graphName);
    }
    if (graph.validation_status !== 'VALID') {
      throw new GraphValidationError(graphName, String(graph.validation_status), graph.validation_errors ?? []);
    }
    return graph;
  }

  /**
   * Read a run's summary: `status` (`PENDING`, `SUCCESS`, `FAILED`), counts and `finished`.
   *
   * @example
   * ```ts
   * const run = await sm.getRun(runId);
   * console.log(run.status, run.success_count, run.errored_count);
   * ```
   */
  async getRun(runId: string): Promise<RunSummary> {
    return this.read<RunSummary>(this.runPath(runId), `Reading run ${runId}`);
  }

  /**
   * Cancel a pending run: every state of it that has not ended becomes `CANCELLED`, and nodes
   * executing for it see their `AbortSignal` abort within one heartbeat interval (nothing they
   * return is applied). Cancelling again answers the same. Rejects with {@link ConflictError} for a
   * run that has finished (the message names its status) and {@link NotFoundError} for an unknown one.
   *
   * @example
   * ```ts
   * const { cancelled_states } = await sm.cancelRun(runId, 'wrong input file');
   * ```
   */
  async cancelRun(runId: string, reason?: string): Promise<RunCancelled> {
    return this.api.requestWithRetry<RunCancelled>('POST', `${this.runPath(runId)}/cancel`, {
      json: { reason: reason ?? null },
      action: `Cancelling run ${runId}`,
      maxAttempts: READ_ATTEMPTS, // a repeated cancel answers the same
    });
  }

  /**
   * Send signal `name` to a run: every state of it waiting for it ({@link WaitForSignalSignal}) runs
   * again with `payload` as its `this.signalPayload`, and a wait for it that starts later gets it at
   * once. Rejects with {@link NotFoundError} for an unknown run and {@link ConflictError} for a run
   * that has ended or was cancelled.
   *
   * @example
   * ```ts
   * const { woken } = await sm.sendSignal(runId, 'approval', { approved: 'yes', by: 'ada' });
   * ```
   */
  async sendSignal(runId: string, name: string, payload: Record<string, string> = {}): Promise<SignalSent> {
    return this.api.requestWithRetry<SignalSent>(
      'POST',
      `${this.runPath(runId)}/signals/${encodeURIComponent(name)}`,
      {
        json: payload,
        action: `Sending signal ${name} to run ${runId}`,
        maxAttempts: READ_ATTEMPTS, // a repeated signal keeps the same payload and finds nobody left waiting
      },
    );
  }

  /**
   * Every state of a run, oldest first, with status, inputs, outputs and error.
   *
   * @example
   * ```ts
   * for (const state of await sm.getRunStates(runId)) {
   *   console.log(state.identifier, state.status, state.outputs, state.error);
   * }
   * ```
   */
  async getRunStates(runId: string): Promise<RunState[]> {
    const states: RunState[] = [];
    for (let page = 1; ; page += 1) {
      const body = await this.read<RunStatesResponse>(
        `${this.runPath(runId)}/states?page=${page}&size=${STATES_PAGE}`,
        `Reading states of run ${runId}`,
      );
      states.push(...body.states);
      if (body.states.length < STATES_PAGE || states.length >= body.total) return states;
    }
  }

  /**
   * Follow a run live: its progress now, then after each change, until it has finished. An async
   * iterable of {@link RunEvent}s (status, counts, per-node counts by status) from the server's
   * event stream; the last one has `finished: true`, and the iteration ends there. A dropped
   * connection or a restarting server is reconnected with backoff, resuming after the last event
   * seen (`Last-Event-ID`): no event older than one already yielded comes twice. Throws
   * {@link NotFoundError} for an unknown run and `AuthenticationError` for a refused key.
   *
   * @example
   * ```ts
   * for await (const event of sm.watchRun(run_id)) {
   *   console.log(event.event, event.status, `${event.success_count}/${event.total_count}`);
   * }
   * // the loop ends when the run has finished: status is SUCCESS or FAILED
   * ```
   */
  async *watchRun(runId: string, options: WatchOptions = {}): AsyncGenerator<RunEvent> {
    const { signal } = options;
    const action = `Following run ${runId}`;
    const backoff = new Backoff(200, 5_000);
    let last: number | undefined;
    for (;;) {
      const headers: Record<string, string> = last === undefined ? {} : { 'Last-Event-ID': String(last) };
      try {
        for await (const sse of this.api.streamEvents(`${this.runPath(runId)}/events`, {
          headers,
          silenceMs: STREAM_SILENCE_MS,
          action,
          signal,
        })) {
          if (sse.event === 'gone') throw new NotFoundError(404, `Run ${runId} was deleted`, action);
          if (!RUN_EVENTS.has(sse.event)) continue; // an event kind this SDK does not know yet
          const event = { ...(JSON.parse(sse.data) as Omit<RunEvent, 'event'>), event: sse.event } as RunEvent;
          backoff.reset();
          if (last !== undefined && event.version <= last && !event.finished) continue;
          last = event.version;
          yield event;
          if (event.finished) return;
        }
      } catch (err) {
        if (!(err instanceof ApiError) || !err.retryable || signal?.aborted) throw err;
      }
      // A dropped connection, or the server ended the stream (it is stopping): reconnect.
      await sleep(backoff.nextDelay(), signal);
      if (signal?.aborted) throw signal.reason;
    }
  }

  /**
   * Follow what a running node streams (`this.stream(text)`): its chunks from `fromOffset`, live,
   * until the attempt ends; then the iteration ends. Follows `attempt` (counted from 1 by claims of
   * the state), by default the state's latest, or its first while it waits to be claimed; a retried
   * state is a new state with its own stream. A dropped connection or a restarting server is
   * reconnected with backoff, resuming after the last chunk yielded: no chunk is lost or comes
   * twice. Throws {@link NotFoundError} for a state not in this namespace.
   *
   * @example
   * ```ts
   * for await (const chunk of sm.streamState(stateId)) process.stdout.write(chunk.text);
   * ```
   */
  async *streamState(stateId: string, options: StreamStateOptions = {}): AsyncGenerator<StreamChunk> {
    const { signal } = options;
    const action = `Following the stream of state ${stateId}`;
    const path = `/namespace/${encodeURIComponent(this.namespace)}/state/${encodeURIComponent(stateId)}/stream`;
    const backoff = new Backoff(200, 5_000);
    let attempt = options.attempt;
    let position = options.fromOffset ?? 0;
    for (;;) {
      const query = new URLSearchParams({ from: String(position), ...(attempt === undefined ? {} : { attempt: String(attempt) }) });
      try {
        for await (const sse of this.api.streamEvents(`${path}?${query}`, { silenceMs: STREAM_SILENCE_MS, action, signal })) {
          if (sse.event !== 'chunk' && sse.event !== 'end') continue; // an event kind this SDK does not know yet
          const event = JSON.parse(sse.data) as StreamChunk;
          backoff.reset();
          attempt = event.attempt; // a reconnect follows the same attempt
          if (sse.event === 'end') return;
          if (event.offset < position) continue;
          position = event.offset + 1;
          yield event;
        }
      } catch (err) {
        if (!(err instanceof ApiError) || !err.retryable || signal?.aborted) throw err;
      }
      // A dropped connection, or the server ended the stream (it is stopping): reconnect.
      await sleep(backoff.nextDelay(), signal);
      if (signal?.aborted) throw signal.reason;
    }
  }

  /**
   * Wait until a run has finished and return its summary (see {@link StateManager.getRun}).
   * Follows the run's event stream ({@link StateManager.watchRun}), so it returns as soon as the
   * run ends. Throws {@link RunTimeoutError} when `timeoutMs` passes first (default: wait forever).
   *
   * @example
   * ```ts
   * const { run_id } = await sm.trigger('my-graph');
   * const run = await sm.waitForRun(run_id, 120_000);
   * if (run.status !== 'SUCCESS') console.error(await sm.getRunStates(run_id));
   * ```
   */
  async waitForRun(runId: string, timeoutMs?: number): Promise<RunSummary> {
    const controller = new AbortController();
    const timeout = new RunTimeoutMarker();
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => controller.abort(timeout), timeoutMs);
    let seen: { status: string; [key: string]: unknown } | undefined;
    try {
      for await (const event of this.watchRun(runId, { signal: controller.signal })) {
        const { event: _kind, version: _version, nodes: _nodes, ...summary } = event;
        seen = summary;
      }
    } catch (err) {
      if (err === timeout) throw new RunTimeoutError(runId, timeoutMs ?? 0, seen);
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return this.getRun(runId);
  }

  /**
   * Create an API key with `role` (`admin`, `operator`, `runtime` or `viewer`) for one `namespace`,
   * or every namespace when omitted. The answer's `key` is the secret, shown this once (the server
   * keeps only its SHA-256). Needs an admin key for every namespace.
   *
   * @example
   * ```ts
   * const created = await sm.createKey('etl-runtime', 'runtime', 'etl');
   * console.log(created.id, created.key);
   * ```
   */
  async createKey(name: string, role: KeyRole, namespace?: string): Promise<CreatedKeyResponse> {
    return this.api.requestWithRetry<CreatedKeyResponse>('POST', '/keys', {
      json: { name, role, namespace: namespace ?? null },
      action: `Creating API key "${name}"`,
      maxAttempts: READ_ATTEMPTS,
      // A repeat that did arrive would make a second key: only resend what surely never left.
      retryIf: (error: ApiError) => !error.requestSent,
    });
  }

  /**
   * Every API key, revoked ones too, without secrets.
   *
   * @example
   * ```ts
   * for (const key of (await sm.listKeys()).keys) console.log(key.id, key.name, key.role, key.revoked_at);
   * ```
   */
  async listKeys(): Promise<ListKeysResponse> {
    return this.read<ListKeysResponse>('/keys', 'Listing API keys');
  }

  /**
   * Revoke a key: every replica refuses it from its next request. Revoking twice is harmless.
   *
   * @example
   * ```ts
   * const revoked = await sm.revokeKey('key_0123456789abcdef');
   * console.log(revoked.revoked_at);
   * ```
   */
  async revokeKey(keyId: string): Promise<ApiKeyInfo> {
    return this.api.requestWithRetry<ApiKeyInfo>('DELETE', `/keys/${encodeURIComponent(keyId)}`, {
      action: `Revoking API key ${keyId}`,
      maxAttempts: READ_ATTEMPTS,
    });
  }

  /**
   * Create or replace the namespace's limit `name` (the budgets given replace all three). Graph nodes
   * use it with `limits: [{ name, tokens, key }]`; a claim then hands out only states whose limits
   * have room, across every runtime and replica.
   *
   * @example
   * ```ts
   * await sm.setLimit('openai', { requests_per_minute: 500, tokens_per_minute: 90_000 });
   * ```
   */
  async setLimit(name: string, budgets: LimitRequest): Promise<LimitResponse> {
    return this.api.requestWithRetry<LimitResponse>('PUT', this.limitPath(name), {
      json: budgets,
      action: `Setting limit ${name}`,
      maxAttempts: READ_ATTEMPTS, // setting the same budgets again changes nothing
    });
  }

  /**
   * One limit of the namespace, with `paused_until` while a provider's 429 pauses it.
   *
   * @example
   * ```ts
   * console.log((await sm.getLimit('openai')).requests_per_minute);
   * ```
   */
  async getLimit(name: string): Promise<LimitResponse> {
    return this.read<LimitResponse>(this.limitPath(name), `Reading limit ${name}`);
  }

  /**
   * The namespace's limits, by name.
   *
   * @example
   * ```ts
   * for (const limit of (await sm.listLimits()).limits) console.log(limit.name, limit.requests_per_minute);
   * ```
   */
  async listLimits(): Promise<ListLimitsResponse> {
    return this.read<ListLimitsResponse>(`/namespace/${encodeURIComponent(this.namespace)}/limits`, 'Listing limits');
  }

  /**
   * Remove a limit; states of nodes that use it wait until it is defined again.
   *
   * @example
   * ```ts
   * await sm.deleteLimit('openai');
   * ```
   */
  async deleteLimit(name: string): Promise<DeleteLimitResponse> {
    return this.api.requestWithRetry<DeleteLimitResponse>('DELETE', this.limitPath(name), {
      action: `Deleting limit ${name}`,
      maxAttempts: READ_ATTEMPTS,
    });
  }

  private limitPath(name: string): string {
    return `/namespace/${encodeURIComponent(this.namespace)}/limits/${encodeURIComponent(name)}`;
  }

  /**
   * The newest `limit` admin and operator actions (who, what, when, namespace, target), or the
   * newest older than entry id `before`.
   *
   * @example
   * ```ts
   * for (const e of (await sm.auditLog(20)).entries) console.log(e.at, e.key_name, e.action, e.target);
   * ```
   */
  async auditLog(limit = 100, before?: number): Promise<AuditLogResponse> {
    const query = new URLSearchParams({ limit: String(limit), ...(before !== undefined ? { before: String(before) } : {}) });
    return this.read<AuditLogResponse>(`/audit?${query}`, 'Reading the audit log');
  }

  private read<T>(path: string, action: string): Promise<T> {
    return this.api.requestWithRetry<T>('GET', path, { action, maxAttempts: READ_ATTEMPTS });
  }

  private graphPath(graphName: string): string {
    return `/namespace/${encodeURIComponent(this.namespace)}/graph/${encodeURIComponent(graphName)}`;
  }

  private runPath(runId: string): string {
    return `/namespace/${encodeURIComponent(this.namespace)}/run/${encodeURIComponent(runId)}`;
  }
}

/** A parsed cron trigger as the wire's trigger; `inputs` and `store` only when given, as before they existed. */
function graphTrigger(trigger: z.output<typeof CronTrigger>): GraphTrigger {
  const value: GraphTrigger['value'] = { expression: trigger.expression };
  if (Object.keys(trigger.inputs).length) value.inputs = trigger.inputs;
  if (Object.keys(trigger.store).length) value.store = trigger.store;
  return { type: 'CRON', value };
}

class RunTimeoutMarker extends Error {}

/**
 * The triggers and wait options of an `upsertGraph` call, in either form: ours
 * (`triggers?: CronTrigger[], options?: UpsertOptions`) or the original SDK's
 * (`validationTimeout?: number, pollingInterval?: number`, in seconds).
 */
function upsertTail(
  graphName: string,
  sixth: unknown,
  seventh: unknown,
): { triggers: unknown; options: UpsertOptions } {
  const absent = (value: unknown) => value === undefined || value === null;
  const original = typeof sixth === 'number' || (absent(sixth) && typeof seventh === 'number');
  if (!original) {
    if (!absent(seventh) && typeof seventh !== 'object') {
      throw new GraphValidationError(graphName, 'INVALID', [
        `the 7th argument of upsertGraph must be UpsertOptions ({ validationTimeoutMs, pollingIntervalMs }), got ${describeArgument(seventh)}`,
      ]);
    }
    return { triggers: sixth ?? undefined, options: (seventh ?? {}) as UpsertOptions };
  }
  const problems: string[] = [];
  const seconds = (value: unknown, name: string, fallback: number): number => {
    if (absent(value)) return fallback;
    if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return value;
    problems.push(`${name} must be a number of seconds >= 0 (the original SDK's form), got ${describeArgument(value)}`);
    return fallback;
  };
  const validationTimeout = seconds(sixth, 'validationTimeout (6th argument)', 60);
  const pollingInterval = seconds(seventh, 'pollingInterval (7th argument)', 1);
  if (problems.length) throw new GraphValidationError(graphName, 'INVALID', problems);
  return {
    triggers: undefined,
    options: { validationTimeoutMs: validationTimeout * 1000, pollingIntervalMs: pollingInterval * 1000 },
  };
}

function describeArgument(value: unknown): string {
  return Array.isArray(value) ? 'an array' : `${typeof value} ${JSON.stringify(value) ?? String(value)}`;
}

interface ParsedModels {
  problems: string[];
  nodes: z.output<typeof GraphNodeModel>[];
  retryPolicy?: z.output<typeof RetryPolicyModel>;
  storeConfig?: z.output<typeof StoreConfigModel>;
  triggers?: z.output<typeof CronTrigger>[];
}

/**
 * The models parsed (defaults filled, names trimmed), or every problem they have before anything
 * is sent, naming the node and field.
 */
function parseModels(nodes: unknown, retryPolicy: unknown, storeConfig: unknown, triggers: unknown): ParsedModels {
  const result: ParsedModels = { problems: [], nodes: [] };
  if (!Array.isArray(nodes)) return { ...result, problems: ['graphNodes must be an array of GraphNodeModel'] };
  const parse = <S extends z.ZodTypeAny>(schema: S, value: unknown, where: string): z.output<S> | undefined => {
    const parsed = schema.safeParse(value);
    if (parsed.success) return parsed.data as z.output<S>;
    for (const issue of parsed.error.issues) result.problems.push(`${[where, ...issue.path].join('.')}: ${issue.message}`);
    return undefined;
  };
  nodes.forEach((node: unknown, index) => {
    const identifier = (node as { identifier?: unknown } | null)?.identifier;
    const where = typeof identifier === 'string' && identifier ? `node "${identifier}"` : `nodes[${index}]`;
    const parsed = parse(GraphNodeModel, node, where);
    if (parsed) result.nodes.push(parsed);
  });
  if (retryPolicy !== undefined) result.retryPolicy = parse(RetryPolicyModel, retryPolicy, 'retryPolicy');
  if (storeConfig !== undefined) result.storeConfig = parse(StoreConfigModel, storeConfig, 'storeConfig');
  if (triggers !== undefined) {
    if (!Array.isArray(triggers)) {
      result.problems.push(`triggers (6th argument) must be an array of CronTrigger, or a number of seconds (validationTimeout, the original SDK's form), got ${describeArgument(triggers)}`);
    } else {
      result.triggers = triggers.flatMap((trigger: unknown, index) => parse(CronTrigger, trigger, `triggers[${index}]`) ?? []);
    }
  }
  return result;
}
