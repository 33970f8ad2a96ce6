/**
 * The runtime: registers node classes, claims states, runs them, and reports every result.
 *
 * How work flows (each an async loop, supervised: an unexpected error is logged with its stack and
 * the loop starts again after a backoff, so no loop ever ends quietly):
 *
 * * the *claimer* long-polls `states/enqueue` for as many states as there are free execution
 *   slots plus a prefetch: as many states as the workers finish during one claim round trip
 *   (measured), at least `workers / 2` (or 1) and at most `batchSize`. Fast nodes are claimed in big
 *   batches, slow ones a few at a time, so states are never hoarded;
 * * `workers` *worker* loops run one state at a time, so `workers` bounds the concurrent `execute`
 *   calls; a finished state frees its slot at once;
 * * each outcome is then *delivered* on its own, retrying with backoff until the server accepts it
 *   or says the lease is lost (409); `executed` results that finish while a report is in flight
 *   share the next request (`batching.ts`);
 * * a report of results also *claims* (eager dispatch): it asks for the free slots no claim in
 *   flight has asked for (at least one while a worker is idle), and the server answers with states
 *   claimed in the transaction that applied the results. A chain costs one request per hop;
 * * the *heartbeat* keeps the lease of every held state alive (every lease/3).
 *
 * The Python SDK's runtime works the same way, with the same defaults.
 *
 * On SIGINT/SIGTERM (or `stop()`) the runtime stops claiming, hands unstarted states back, gives
 * running nodes `shutdownGraceMs` to finish, then hands back what is still running. A second signal
 * stops at once. A runtime whose claims the server refuses for good (a revoked key, say) stops the
 * same way, logs why, and `done` rejects with the server's refusal.
 * @module
 */
import { hostname } from 'node:os';
import {
  ApiError,
  AuthenticationError,
  ConfigurationError,
  ConflictError,
  ExosphereError,
  NotFoundError,
  ServerUnavailableError,
  describeError,
} from './errors.js';
import { BatchUnsupportedError, type ExecutedItem, MAX_BATCH, ResultBatcher } from './batching.js';
import { ApiClient, Backoff, sleep } from './http.js';
import { type Logger, defaultLogger } from './log.js';
import { type NodeClass, type Outcome, checkNodeClasses, failed, needsSecrets, nodeRegistration, runNode } from './node.js';
import { StreamUpload } from './streamUpload.js';
import type { ClaimedState, EagerClaim, EnqueueRequest, EnqueueResponse, RegisterNodesRequest, SecretsResponse } from './wire.js';
import { inStateTraceContext } from './tracing.js';

/** How long one claim request may wait on the server for work (the server caps it at 60 s). */
export const CLAIM_WAIT_MS = 25_000;
const DEFAULT_LEASE_MS = 60_000;
// Which process of a runtime claims, as recorded on each state it runs.
const RUNTIME_INSTANCE = `${hostname()}:${process.pid}`;
// Attempts at reading secrets while the server answers 500 before the state is failed.
const SECRETS_SERVER_ERROR_ATTEMPTS = 5;
// Failing claims are logged at WARN on the first failure and then once every this many attempts.
const LOG_EVERY_N_FAILURES = 10;
// How long a background loop that failed unexpectedly waits before it starts again (first, most).
const RESTART_BACKOFF_MS = [500, 30_000] as const;
// Weight of the newest sample in the running averages of execution and claim round-trip times.
const EWMA_WEIGHT = 0.2;
// Most states one claim takes unless `batchSize` says otherwise. The claims are sized below it by the
// free slots and the measured prefetch, so it only caps fast nodes: there, past about a hundred a
// bigger batch no longer lowers the server's cost per state (16, the original default, left four
// workers of fast nodes well below a tuned runtime's throughput).
export const DEFAULT_BATCH_SIZE = 100;

// A claim answered later than this probably waited on the server for work: not a round-trip sample.
const ROUND_TRIP_SAMPLE_LIMIT_MS = 250;

/** Settings of a {@link Runtime}. Every field is optional. */
export interface RuntimeOptions {
  /** State manager base URL, e.g. `http://localhost:8000`. Default: env `EXOSPHERE_STATE_MANAGER_URI`. */
  stateManagerUri?: string;
  /** API key sent as `x-api-key`. Default: env `EXOSPHERE_API_KEY`. */
  key?: string;
  /** API version prefix. Default `v0`. */
  stateManagerVersion?: string;
  /**
   * Most states taken in one claim (1..1000). Default 100. Below it the claims adapt: as many as the
   * free slots and the measured prefetch call for, so fast nodes get big batches and slow nodes are
   * still claimed a few at a time.
   */
  batchSize?: number;
  /**
   * Most `execute` calls running at once. Default 4. The runtime claims as many states as it has
   * free slots for, plus as many as its workers finish during one claim round trip, so the
   * defaults keep up with fast nodes too.
   */
  workers?: number;
  /** Pause between empty claims in ms, used only with servers that cannot long-poll. Default 1000. */
  pollInterval?: number;
  /** How long a claim stays valid without a heartbeat, in ms (3000..86400000). Default 60000. */
  leaseMs?: number;
  /** How long running nodes may finish after SIGINT/SIGTERM or `stop()`, in ms. Default 30000. */
  shutdownGraceMs?: number;
  /** Stop gracefully on SIGINT/SIGTERM. Default true. */
  handleSignals?: boolean;
  /** Where to log. Default: stderr, level from `EXOSPHERE_LOG_LEVEL`. */
  logger?: Logger;
}

/** A state this runtime holds, from the claim until its outcome is delivered or handed back. */
interface Claim {
  stateId: string;
  nodeName: string;
  inputs: Record<string, unknown>;
  leaseId: string | undefined;
  /** The state's `execute` span (W3C traceparent), when the server exports traces. */
  traceparent: string | undefined;
  /** The payload of the signal that woke the state (it threw WaitForSignalSignal before). */
  signalPayload: Record<string, string> | undefined;
  /** The lease is gone: drop the state silently. */
  lost: boolean;
  /** Aborted when the runtime gives the state up (lease lost, or shutdown out of grace). */
  abort: AbortController;
  /** The state no longer takes an execution slot: executed (its outcome may still be on its way), handed back or given up. */
  slotFreed: boolean;
  /** What the node streams (`this.stream`), once it does. */
  stream?: StreamUpload;
}

/**
 * Serves node classes for one namespace: registers them, then runs the states the server hands out.
 *
 * `start()` resolves once the runtime is registered and working; the runtime then runs until
 * `stop()`, SIGINT or SIGTERM. `done` (or `join()`) resolves when it has stopped, and rejects when
 * it stopped because it could not go on (see {@link Runtime.done}).
 * Configuration problems are all reported at once in one {@link ConfigurationError}.
 *
 * @example
 * ```ts
 * const runtime = new Runtime('MyProject', 'DataProcessor', [SampleNode], {
 *   stateManagerUri: 'http://localhost:8000',
 *   key: process.env.EXOSPHERE_API_KEY,
 * });
 * await runtime.start();   // registered, claiming work
 * // ...
 * await runtime.stop();    // graceful: running nodes finish, unstarted states are handed back
 * ```
 */
export class Runtime {
  readonly namespace: string;
  readonly name: string;
  /**
   * Resolves when the runtime has stopped. Rejects, with the server's refusal (e.g. an
   * {@link AuthenticationError} for a revoked key), when the runtime stopped because it could not go
   * on: every further claim would be refused the same way. Left unhandled, that rejection ends the
   * process with a non-zero exit code, as it should for a worker whose runtime is its main task;
   * a program that must outlive its runtime handles it:
   *
   * @example
   * ```ts
   * await runtime.start();
   * runtime.done.catch((err) => alertOperators(`runtime stopped: ${err.message}`));
   * ```
   */
  readonly done: Promise<void>;

  private readonly nodes = new Map<string, NodeClass>();
  private readonly uri: string;
  private readonly key: string;
  private readonly version: string;
  private readonly batchSize: number;
  private readonly workers: number;
  private readonly pollInterval: number;
  private readonly leaseMs: number;
  private readonly graceMs: number;
  private readonly handleSignals: boolean;
  private readonly logger: Logger;
  private readonly minPrefetch: number;
  private readonly maxHeld: number;

  private phase: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new';
  private api!: ApiClient;
  private readonly held = new Map<string, Claim>();
  private batcher!: ResultBatcher;
  /** Claimed states not yet executed: queued or running. */
  private inSlots = 0;
  /** States asked for by claims in flight (the long-poll and eager claims). */
  private asked = 0;
  /** Running averages (ms) that size the prefetch; undefined until measured. */
  private executionMs: number | undefined;
  private roundTripMs: number | undefined;
  private readonly deliveries = new Set<Promise<void>>();
  private readonly queue: Claim[] = [];
  private readonly idleWorkers: ((claim: Claim | null) => void)[] = [];
  private slotFreed: () => void = () => {};
  private readonly stopping = new AbortController();
  private readonly stopNow = new AbortController();
  private resolveDone!: () => void;
  private rejectDone!: (reason: Error) => void;
  /** Why the runtime could not go on; `done` rejects with it. */
  private failure: Error | undefined;
  private stopSignal: 'SIGINT' | 'SIGTERM' | undefined;

  constructor(namespace: string, name: string, nodes: readonly NodeClass[], options: RuntimeOptions = {}) {
    this.namespace = namespace;
    this.name = name;
    this.uri = options.stateManagerUri || process.env.EXOSPHERE_STATE_MANAGER_URI || '';
    this.key = options.key || process.env.EXOSPHERE_API_KEY || '';
    this.version = options.stateManagerVersion ?? 'v0';
    this.batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
    this.workers = options.workers ?? 4;
    this.pollInterval = options.pollInterval ?? 1000;
    this.leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.graceMs = options.shutdownGraceMs ?? 30_000;
    this.handleSignals = options.handleSignals ?? true;
    this.logger = options.logger ?? defaultLogger();
    const problems = this.checkSettings();
    problems.push(...(nodes?.length ? checkNodeClasses(nodes) : ['nodes must list at least one node class']));
    if (problems.length) throw new ConfigurationError(problems, 'Runtime configuration');
    for (const node of nodes) this.nodes.set(node.name, node);
    // States waiting for or in `execute` never exceed the workers plus the prefetch, so a busy
    // runtime does not sit on work another runtime could start now.
    this.minPrefetch = Math.min(this.batchSize, Math.max(1, Math.floor(this.workers / 2)));
    // Executed states whose outcome is still on its way to the server also hold a lease; past this
    // many, claiming waits for the server to take results.
    this.maxHeld = this.workers + this.batchSize + MAX_BATCH;
    this.done = new Promise((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
  }

  /**
   * Register the nodes and start working. Resolves once the runtime is registered and claiming;
   * while the server is unreachable it keeps retrying. Rejects (and the runtime stops) when the
   * server refuses the registration, e.g. with a wrong key: awaited at the top of a program, that
   * ends it with a non-zero exit code. A refusal that comes later rejects {@link Runtime.done}.
   *
   * @example
   * ```ts
   * await runtime.start();
   * await stateManager.trigger('my-graph', { name: 'World' });
   * ```
   */
  async start(): Promise<void> {
    if (this.phase !== 'new') throw new ExosphereError(`Runtime "${this.name}" was already started`);
    this.phase = 'starting';
    this.api = new ApiClient(`${this.uri.replace(/\/+$/, '')}/${this.version}`, this.key, undefined, this.logger);
    const claims = { reserve: () => this.reserveClaim(), settle: (claim: EagerClaim | undefined, states: ClaimedState[]) => this.settleClaim(claim, states) };
    this.batcher = new ResultBatcher(this.api, `${this.namespacePath}/states/executed`, claims, this.stopNow.signal);
    if (this.handleSignals) signalHub.add(this);
    try {
      await this.register();
    } catch (err) {
      this.finishStop();
      if (this.stopping.signal.aborted) return; // stopped before the server could be reached
      throw err;
    }
    if (this.stopping.signal.aborted) return this.finishStop();
    this.phase = 'running';
    this.serve().catch((err: unknown) => {
      // Not expected (the loops are supervised), but a runtime that stops must say why.
      this.failure ??= err instanceof Error ? err : new ExosphereError(describeError(err));
      this.logger.error(`Runtime "${this.name}" stopped on an unexpected error: ${withStack(err)}`);
      this.finishStop();
    });
  }

  /**
   * Stop gracefully, as SIGTERM does; resolves when stopped (also after the runtime stopped on
   * its own because it could not go on). Calling it again stops at once, without waiting for
   * running nodes.
   */
  stop(): Promise<void> {
    this.requestStop('stop() called');
    return this.done.catch(() => undefined);
  }

  /** Wait until the runtime has stopped; the same as awaiting {@link Runtime.done} (which may reject). */
  join(): Promise<void> {
    return this.done;
  }

  /** @internal Called by the process signal handler. */
  onSignal(signal: 'SIGINT' | 'SIGTERM'): void {
    this.stopSignal ??= signal;
    this.requestStop(`${signal} received`);
  }

  private requestStop(reason: string): void {
    if (this.phase === 'new') return this.finishStop();
    if (this.phase === 'stopped') return;
    if (this.stopping.signal.aborted) {
      this.logger.warn(`${reason} again: stopping now without waiting for running nodes`);
      this.stopNow.abort();
    } else {
      this.logger.info(`${reason}: stopping gracefully (repeat to stop at once)`);
      this.stopping.abort();
    }
  }

  /** The runtime cannot go on: say why, stop gracefully, and let `done` reject with the reason. */
  private giveUp(reason: Error): void {
    this.failure ??= reason;
    this.logger.error(`Runtime "${this.name}" cannot go on and stops: ${describeError(reason)}`);
    if (!this.stopping.signal.aborted) this.stopping.abort();
  }

  private finishStop(): void {
    if (this.phase === 'stopped') return;
    this.phase = 'stopped';
    signalHub.remove(this, this.stopSignal);
    if (this.failure) this.rejectDone(this.failure);
    else this.resolveDone();
  }

  // -- registration -------------------------------------------------------------------------------

  private async register(): Promise<void> {
    // `runtime_namespace` (and each node's `namespace`) as the original SDK sends them; the server reads the path's.
    const body: RegisterNodesRequest & { runtime_namespace: string } = {
      runtime_name: this.name,
      runtime_namespace: this.namespace,
      nodes: [...this.nodes.values()].map((node) => nodeRegistration(node, this.namespace)),
    };
    await this.api.requestWithRetry('PUT', `${this.namespacePath}/nodes/`, {
      json: body,
      action: `Registering nodes of runtime "${this.name}"`,
      backoff: new Backoff(500, 5_000),
      signal: this.stopping.signal,
    });
    this.logger.info(
      `Runtime "${this.name}" registered ${this.nodes.size} node(s) in namespace "${this.namespace}": ${[...this.nodes.keys()].join(', ')}`,
    );
  }

  // -- the loops ----------------------------------------------------------------------------------

  private async serve(): Promise<void> {
    const claimer = this.supervised('claim loop', () => this.claimLoop(), this.stopping.signal);
    // Workers and heartbeats go on through a graceful shutdown: running nodes still report, and
    // their leases are still kept.
    const heartbeat = this.supervised('heartbeat loop', () => this.heartbeatLoop(), this.stopNow.signal);
    const workers = Array.from({ length: this.workers }, (_, i) =>
      this.supervised(`worker ${i + 1}`, () => this.workerLoop(), this.stopNow.signal),
    );
    await new Promise<void>((resolve) => this.stopping.signal.addEventListener('abort', () => resolve(), { once: true }));
    this.phase = 'stopping';
    await claimer;
    const unstarted = this.queue.splice(0);
    const running = this.held.size - unstarted.length;
    this.logger.info(
      `Shutting down: handing back ${unstarted.length} unstarted state(s), waiting up to ${this.graceMs} ms for ${running} running`,
    );
    await Promise.all(unstarted.map((claim) => this.release(claim)));
    for (const wake of this.idleWorkers.splice(0)) wake(null);
    const allDone = Promise.all(workers).then(() => this.deliveriesDone());
    const graceOver = new AbortController();
    await Promise.race([allDone, sleep(this.graceMs, this.stopNow.signal).then(() => graceOver.abort())]);
    if (graceOver.signal.aborted && this.held.size > 0) {
      this.logger.warn(`Interrupting ${this.held.size} node(s) still running; their states are handed back`);
      for (const claim of this.held.values()) claim.abort.abort(new ExosphereError(`Runtime "${this.name}" stopped`));
      await allDone;
    }
    // States that an answer to a result brought after the queue was emptied: handed back too.
    await Promise.all(this.queue.splice(0).map((claim) => this.release(claim)));
    this.stopNow.abort(); // ends the heartbeat loop
    await heartbeat;
    this.logger.info(`Runtime "${this.name}" stopped`);
    this.finishStop();
  }

  /**
   * Run one background loop for the runtime's whole life. An unexpected error is logged with its
   * stack and the loop starts again after a backoff: a loop that died silently would leave a
   * process that looks alive and never claims again. Ends when the loop returns, or when `stop`
   * aborts while it waits to start the loop again.
   */
  private supervised(name: string, loop: () => Promise<void>, stop: AbortSignal): Promise<void> {
    return supervise(`Runtime "${this.name}": the ${name}`, loop, this.logger, stop);
  }

  private async deliveriesDone(): Promise<void> {
    while (this.deliveries.size) await Promise.all([...this.deliveries]);
  }

  private async claimLoop(): Promise<void> {
    const backoff = new Backoff();
    const stop = this.stopping.signal;
    while (!stop.aborted) {
      const prefetch = this.prefetch();
      const free = this.unaskedSlots(prefetch);
      // Until the queue has drained into the workers, a claim could only be small: wait, then claim
      // at least half a prefetch in one go. Half, not all: the next claim is then on its way while
      // the workers still run the rest, instead of after they have run everything.
      if (free < Math.max(1, Math.floor(prefetch / 2))) {
        await new Promise<void>((resolve) => {
          // The listener goes with the wait: this loop waits for every few states, and listeners left
          // on the signal would pile up for the runtime's whole life.
          const onStop = () => resolve();
          this.slotFreed = () => (stop.removeEventListener('abort', onStop), resolve());
          stop.addEventListener('abort', onStop, { once: true });
        });
        continue;
      }
      const started = Date.now();
      let states: ClaimedState[];
      this.asked += free;
      try {
        states = await this.claim(free);
      } catch (err) {
        if (stop.aborted) break;
        // Not an answer of the server but a bug: the supervisor logs it with its stack.
        if (!(err instanceof ApiError)) throw err;
        if (!err.retryable) {
          // Refused for good (a wrong key, a request the server cannot take): every further claim
          // would be refused the same way, and a runtime that only retried would look alive but
          // never work.
          this.giveUp(err);
          break;
        }
        const delay = backoff.nextDelay();
        const line = `${describeError(err)}; retrying in ${Math.round(delay)} ms`;
        if (backoff.attempts % LOG_EVERY_N_FAILURES === 1) this.logger.warn(line);
        else this.logger.debug(line);
        await sleep(delay, stop);
        continue;
      } finally {
        this.asked -= free;
      }
      const elapsed = Date.now() - started;
      if (states.length && elapsed < ROUND_TRIP_SAMPLE_LIMIT_MS) this.roundTripMs = average(this.roundTripMs, elapsed);
      if (backoff.attempts) {
        this.logger.info(`Claiming states works again after ${backoff.attempts} failed attempt(s)`);
        backoff.reset();
      }
      for (const state of states) this.accept(state);
      if (states.length === 0 && elapsed < CLAIM_WAIT_MS / 2) {
        // An empty answer that came back at once: the server does not long-poll.
        await sleep(this.pollInterval, stop);
      }
    }
  }

  /** States this runtime may still ask for: free slots plus the prefetch, less what claims in flight asked for. */
  private unaskedSlots(prefetch: number): number {
    const slots = this.workers + prefetch - this.inSlots;
    return Math.min(this.batchSize, slots - this.asked, this.maxHeld - this.held.size - this.asked);
  }

  /** How many states to claim beyond the free slots: what the workers finish in one round trip. */
  private prefetch(): number {
    if (this.executionMs === undefined || this.roundTripMs === undefined) return this.minPrefetch;
    const finishedPerRoundTrip = (this.workers * this.roundTripMs) / Math.max(this.executionMs, 0.001);
    return Math.floor(Math.min(this.batchSize, Math.max(this.minPrefetch, finishedPerRoundTrip)));
  }

  /** The `claim` a report of results sends along (eager dispatch); its slots stay asked for until settled. */
  private reserveClaim(): EagerClaim | undefined {
    if (this.stopping.signal.aborted) return undefined;
    let count = this.unaskedSlots(this.prefetch());
    if (count < 1 && this.inSlots < this.workers && this.held.size + this.asked < this.maxHeld) {
      // A worker is idle: its next state comes with this answer rather than after the long-poll's,
      // even when the long-poll already asked for the whole prefetch (a chain's next hop).
      count = 1;
    }
    if (count < 1) return undefined;
    this.asked += count;
    return { nodes: [...this.nodes.keys()], max: count, lease_ms: this.leaseMs };
  }

  /** Take the states a report's answer carried, and give back what its `claim` asked for. */
  private settleClaim(claim: EagerClaim | undefined, states: ClaimedState[]): void {
    if (claim) {
      this.asked -= claim.max;
      this.slotFreed(); // the claimer may ask for what this claim did not get
    }
    for (const state of states) this.accept(state);
  }

  private async claim(count: number): Promise<ClaimedState[]> {
    const action = 'Claiming states';
    const body: EnqueueRequest = {
      nodes: [...this.nodes.keys()],
      batch_size: count,
      wait_ms: CLAIM_WAIT_MS,
      lease_ms: this.leaseMs,
      // Recorded on each claimed state: which runtime, and which of its processes, ran it.
      runtime_name: this.name,
      runtime_instance: RUNTIME_INSTANCE,
    };
    const answer = await this.api.request<EnqueueResponse | null>('POST', `${this.namespacePath}/states/enqueue`, {
      json: body,
      timeoutMs: CLAIM_WAIT_MS + 30_000,
      action,
      signal: this.stopping.signal,
    });
    const states = answer !== null && typeof answer === 'object' ? (answer as { states?: unknown }).states : undefined;
    if (!Array.isArray(states)) {
      // A proxy's error page, or a body mangled on the way: treated like a lost answer and retried.
      // States the server did hand out in it come back to the queue when their lease expires.
      throw new ServerUnavailableError(undefined, `the answer is not a list of states: ${preview(answer)}`, action);
    }
    return states as ClaimedState[];
  }

  private accept(state: ClaimedState): void {
    if (typeof state?.state_id !== 'string' || typeof state.node_name !== 'string') {
      this.logger.error(`Ignoring a malformed state in the claim answer: ${JSON.stringify(state)}`);
      return;
    }
    const claim: Claim = {
      stateId: state.state_id,
      nodeName: state.node_name,
      inputs: state.inputs !== null && typeof state.inputs === 'object' ? state.inputs : {},
      leaseId: typeof state.lease_id === 'string' ? state.lease_id : undefined,
      traceparent: typeof state.traceparent === 'string' ? state.traceparent : undefined,
      signalPayload: state.signal !== null && typeof state.signal === 'object' ? state.signal : undefined,
      lost: false,
      abort: new AbortController(),
      slotFreed: false,
    };
    this.held.set(claim.stateId, claim);
    this.inSlots += 1;
    const idle = this.idleWorkers.shift();
    if (idle) idle(claim);
    else this.queue.push(claim);
  }

  private nextClaim(): Promise<Claim | null> {
    const claim = this.queue.shift();
    if (claim) return Promise.resolve(claim);
    if (this.stopping.signal.aborted) return Promise.resolve(null);
    return new Promise((resolve) => this.idleWorkers.push(resolve));
  }

  private async workerLoop(): Promise<void> {
    for (let claim = await this.nextClaim(); claim; claim = await this.nextClaim()) {
      try {
        await this.process(claim);
      } catch (err) {
        // A bug here must cost one state, never the worker.
        this.logger.error(`Unexpected error while handling state ${claim.stateId} (${claim.nodeName}): ${withStack(err)}`);
        this.finish(claim);
      }
    }
  }

  // -- one state ----------------------------------------------------------------------------------

  private async process(claim: Claim): Promise<void> {
    const givenUp = new Promise<'given-up'>((resolve) => {
      if (claim.abort.signal.aborted) resolve('given-up');
      claim.abort.signal.addEventListener('abort', () => resolve('given-up'), { once: true });
    });
    const started = performance.now();
    const outcome = await Promise.race([this.execute(claim), givenUp]);
    if (outcome === 'given-up' || outcome === undefined) return this.giveBack(claim);
    this.executionMs = average(this.executionMs, performance.now() - started);
    // The worker (and its slot) moves on to the next state while this outcome is reported.
    this.freeSlot(claim);
    const delivery = this.deliverAndFinish(claim, outcome);
    this.deliveries.add(delivery);
    void delivery.finally(() => this.deliveries.delete(delivery));
  }

  private async deliverAndFinish(claim: Claim, outcome: Outcome): Promise<void> {
    try {
      // Every chunk is stored before the result: a reader that sees the attempt end has them all.
      await claim.stream?.close();
      await this.deliver(claim, outcome);
    } catch (err) {
      // A bug here must cost one state, never leave it held for ever.
      this.logger.error(`Unexpected error while reporting state ${claim.stateId} (${claim.nodeName}): ${withStack(err)}`);
    }
    await this.giveBack(claim);
  }

  /** Done with a state: handed back when the runtime gave it up (shutdown), else just let go. */
  private async giveBack(claim: Claim): Promise<void> {
    if (claim.abort.signal.aborted && !claim.lost) await this.release(claim);
    else this.finish(claim);
  }

  /** Run the node for one state; undefined when the state is given up without anything to report. */
  private async execute(claim: Claim): Promise<Outcome | undefined> {
    const node = this.nodes.get(claim.nodeName);
    if (!node) return failed(new ExosphereError(`Runtime "${this.name}" has no node named "${claim.nodeName}"`));
    let secrets: Record<string, unknown> = {};
    if (needsSecrets(node)) {
      try {
        secrets = await this.fetchSecrets(claim);
      } catch (err) {
        if (err instanceof ConflictError || err instanceof NotFoundError) {
          // The server already moved the state on: it marks it ERRORED itself when it cannot
          // decrypt the graph's secrets, so there is nothing to run and nothing to report.
          this.logger.error(`Giving up state ${claim.stateId} (${claim.nodeName}) without running it: ${err.message}`);
          return undefined;
        }
        return failed(err);
      }
    }
    // runNode never rejects; when the state is given up it keeps running, unobserved.
    return inStateTraceContext(claim.traceparent, () =>
      runNode(node, claim.inputs, secrets, claim.abort.signal, claim.signalPayload, this.streamSink(claim)),
    );
  }

  /** Where the node's `stream` calls go: the attempt's upload (a server without leases cannot take one). */
  private streamSink(claim: Claim): ((text: string) => void) | undefined {
    if (claim.leaseId === undefined) return undefined;
    const upload = new StreamUpload(this.api, this.statePath(claim, 'stream'), claim.leaseId, this.logger, claim.abort.signal);
    claim.stream = upload;
    return (text) => upload.append(text);
  }

  private async fetchSecrets(claim: Claim): Promise<Record<string, unknown>> {
    let serverErrors = 0;
    // An unreachable or restarting server is waited for while the lease holds; a server that keeps
    // answering 500 (say, it cannot decrypt the secrets) would be waited for for ever.
    const retryIf = (error: ApiError): boolean => {
      if (error instanceof ServerUnavailableError || error.status === 408 || error.status === 429) return true;
      serverErrors += 1;
      return error.retryable && serverErrors < SECRETS_SERVER_ERROR_ATTEMPTS;
    };
    const answer = await this.api.requestWithRetry<SecretsResponse | null>('GET', this.statePath(claim, 'secrets'), {
      action: `Reading secrets for state ${claim.stateId}`,
      signal: claim.abort.signal,
      retryIf,
    });
    const secrets = answer?.secrets;
    return secrets !== null && typeof secrets === 'object' ? secrets : {};
  }

  /** Report an outcome, retrying until the server accepts it or the lease is lost. */
  private async deliver(claim: Claim, outcome: Outcome): Promise<void> {
    const body: Record<string, unknown> = { ...outcome.body };
    if (claim.leaseId !== undefined) body.lease_id = claim.leaseId;
    const what = `state ${claim.stateId} (${claim.nodeName})`;
    const action = `Reporting ${outcome.endpoint} for ${what}`;
    try {
      try {
        if (outcome.endpoint !== 'executed') throw new BatchUnsupportedError();
        const item = { state_id: claim.stateId, ...body } as ExecutedItem;
        await untilAborted(this.batcher.deliver(item, action), claim.abort.signal);
      } catch (err) {
        if (!(err instanceof BatchUnsupportedError)) throw err;
        await this.api.requestWithRetry('POST', this.statePath(claim, outcome.endpoint), {
          json: body,
          action,
          signal: claim.abort.signal,
        });
      }
    } catch (err) {
      if (claim.abort.signal.aborted) return;
      if (err instanceof ConflictError || err instanceof NotFoundError) {
        this.logger.warn(`Result of ${what} discarded: ${err.message}`);
      } else if (err instanceof ApiError && outcome.endpoint !== 'errored' && !err.retryable && !(err instanceof AuthenticationError)) {
        // The server refused this result for good (e.g. 422): fail the state visibly instead, so
        // the graph's retry policy applies.
        const refused = failed(err);
        const usage = outcome.endpoint === 'executed' ? outcome.body.usage : undefined; // still counts
        await this.deliver(claim, usage === undefined ? refused : { endpoint: 'errored', body: { ...refused.body, usage } });
      } else {
        // Nothing else can be sent: the state's lease expires and the server retries it.
        this.logger.error(`Could not report ${what}: ${describeError(err)}`);
      }
      return;
    }
    if (outcome.endpoint === 'errored') this.logger.warn(`${what} failed: ${outcome.body.error}`);
    else this.logger.debug(`${what} reported ${outcome.endpoint}`);
  }

  private freeSlot(claim: Claim): void {
    if (claim.slotFreed) return;
    claim.slotFreed = true;
    this.inSlots -= 1;
    this.slotFreed();
  }

  private finish(claim: Claim): void {
    this.freeSlot(claim);
    claim.stream?.cancel(); // a no-op once closed; else the attempt was given up
    this.held.delete(claim.stateId);
    this.slotFreed();
  }

  // -- leases -------------------------------------------------------------------------------------

  private async heartbeatLoop(): Promise<void> {
    const interval = this.leaseMs / 3;
    const stop = this.stopNow.signal;
    for (;;) {
      await sleep(interval, stop);
      if (stop.aborted) return;
      const claims = [...this.held.values()].filter((claim) => claim.leaseId !== undefined && !claim.lost);
      await Promise.all(claims.map((claim) => this.heartbeat(claim, interval)));
    }
  }

  private async heartbeat(claim: Claim, timeoutMs: number): Promise<void> {
    try {
      await this.api.request('POST', this.statePath(claim, 'heartbeat'), {
        json: { lease_id: claim.leaseId, lease_ms: this.leaseMs },
        timeoutMs,
        action: `Heartbeat for state ${claim.stateId}`,
      });
    } catch (err) {
      if ((err instanceof ConflictError || err instanceof NotFoundError) && this.held.has(claim.stateId)) {
        this.logger.warn(`Abandoning state ${claim.stateId} (${claim.nodeName}): ${err.message}`);
        claim.lost = true;
        claim.abort.abort(err);
      } else {
        this.logger.debug(describeError(err));
      }
    }
  }

  /** Hand a claimed state back so that another runtime can take it at once. */
  private async release(claim: Claim): Promise<void> {
    try {
      if (claim.leaseId === undefined) {
        this.logger.warn(`Cannot hand back state ${claim.stateId}: the server gave no lease for it`);
        return;
      }
      await this.api.requestWithRetry('POST', this.statePath(claim, 'release'), {
        json: { lease_id: claim.leaseId },
        action: `Handing back state ${claim.stateId}`,
        backoff: new Backoff(50, 500),
        maxAttempts: 3,
      });
    } catch (err) {
      this.logger.warn(describeError(err));
    } finally {
      this.finish(claim);
    }
  }

  // -- settings and paths -------------------------------------------------------------------------

  private checkSettings(): string[] {
    const problems: string[] = [];
    for (const [label, value] of [['namespace', this.namespace], ['name', this.name]] as const) {
      if (typeof value !== 'string' || !value.trim()) problems.push(`${label} must be a non-empty string, got ${JSON.stringify(value)}`);
    }
    if (!this.uri) problems.push('stateManagerUri is not set: pass it or set EXOSPHERE_STATE_MANAGER_URI');
    else if (!/^https?:\/\//.test(this.uri)) problems.push(`stateManagerUri must start with http:// or https://, got "${this.uri}"`);
    const integers = [['batchSize', this.batchSize, 1, 1000], ['workers', this.workers, 1, 10_000]] as const;
    for (const [label, value, min, max] of integers) {
      if (!Number.isInteger(value) || value < min || value > max) problems.push(`${label} must be an integer from ${min} to ${max}, got ${String(value)}`);
    }
    const numbers = [['pollInterval', this.pollInterval, 0, Infinity], ['shutdownGraceMs', this.graceMs, 0, Infinity], ['leaseMs', this.leaseMs, 3_000, 86_400_000]] as const;
    for (const [label, value, min, max] of numbers) {
      if (typeof value !== 'number' || Number.isNaN(value) || value < min || value > max) {
        problems.push(`${label} must be a number of milliseconds from ${min} to ${max}, got ${String(value)}`);
      }
    }
    return problems;
  }

  private get namespacePath(): string {
    return `/namespace/${encodeURIComponent(this.namespace)}`;
  }

  private statePath(claim: Claim, action: string): string {
    return `${this.namespacePath}/state/${encodeURIComponent(claim.stateId)}/${action}`;
  }
}

/**
 * @internal Run `loop` until it returns; when it throws, log the error with its stack and run it
 * again after a capped, growing backoff. Gives up only when `stop` aborts while it waits to start again.
 *
 * @example
 * ```ts
 * await supervise('the claim loop', () => claimLoop(), logger, stopping.signal);
 * ```
 */
export async function supervise(what: string, loop: () => Promise<void>, logger: Logger, stop: AbortSignal): Promise<void> {
  const backoff = new Backoff(...RESTART_BACKOFF_MS);
  for (;;) {
    try {
      await loop();
      return;
    } catch (err) {
      const delay = backoff.nextDelay();
      logger.error(`${what} failed unexpectedly; starting it again in ${Math.round(delay)} ms: ${withStack(err)}`);
      await sleep(delay, stop);
      if (stop.aborted) return;
    }
  }
}

/** An unexpected error as an operator needs it: name, message and stack frames, and its cause's. */
function withStack(err: unknown): string {
  if (!(err instanceof Error)) return describeError(err);
  // `stack` starts with the name the error had when it was made (a subclass's own `name` field is
  // set later), so the header is written anew and only the frames are taken from it.
  const frames = (err.stack ?? '').split('\n').filter((line) => /^\s+at /.test(line));
  const cause = err.cause === undefined ? '' : `\nCaused by: ${withStack(err.cause)}`;
  return [describeError(err), ...frames].join('\n') + cause;
}

function average(current: number | undefined, sample: number): number {
  return current === undefined ? sample : current + EWMA_WEIGHT * (sample - current);
}

/** `promise`, or the abort reason as soon as `signal` aborts (the promise itself goes on). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => (signal.removeEventListener('abort', onAbort), resolve(value)),
      (err: unknown) => (signal.removeEventListener('abort', onAbort), reject(err)),
    );
  });
}

/** The start of an unexpected answer, for a log line. */
function preview(answer: unknown): string {
  const text = answer === undefined ? 'an empty body' : JSON.stringify(answer);
  return text.length > 200 ? `${text.slice(0, 200)}...` : text;
}

/**
 * One SIGINT/SIGTERM listener for all runtimes of the process. When the last runtime stopped by a
 * signal is done and nobody else listens for it, the signal is raised again so the process ends
 * as it would have without us, only after a graceful shutdown.
 */
const signalHub = (() => {
  const runtimes = new Set<Runtime>();
  const signals = ['SIGINT', 'SIGTERM'] as const;
  const listener = (signal: 'SIGINT' | 'SIGTERM') => {
    for (const runtime of runtimes) runtime.onSignal(signal);
  };
  return {
    add(runtime: Runtime): void {
      if (runtimes.size === 0) for (const signal of signals) process.on(signal, listener);
      runtimes.add(runtime);
    },
    remove(runtime: Runtime, stoppedBy: 'SIGINT' | 'SIGTERM' | undefined): void {
      if (!runtimes.delete(runtime) || runtimes.size > 0) return;
      for (const signal of signals) process.off(signal, listener);
      if (stoppedBy && process.listenerCount(stoppedBy) === 0) process.kill(process.pid, stoppedBy);
    },
  };
})();
