/**
 * The graph models of the `v0` wire protocol, and the shapes the state manager answers with (the
 * latter generated from the server's OpenAPI document, see `wire.ts`).
 *
 * Enums are plain objects, so both `RetryStrategyEnum.FIXED` and the string `'FIXED'` type-check.
 * Each model is both a zod schema (a value: `RetryPolicyModel.parse({})` fills the defaults the Python
 * SDK's pydantic models use, e.g. `{ max_retries: 3, strategy: 'EXPONENTIAL', ... }`) and a type
 * (what you may write: fields with a default are optional).
 *
 * @example
 * ```ts
 * import type { GraphNodeModel } from 'exospherehost';
 * import { UnitesStrategyEnum } from 'exospherehost';
 *
 * const nodes: GraphNodeModel[] = [
 *   { node_name: 'Split', namespace: 'demo', identifier: 'split',
 *     inputs: { text: '${{ store.text }}' }, next_nodes: ['count'] },
 *   { node_name: 'Count', namespace: 'demo', identifier: 'count',
 *     inputs: { chunk: '${{ split.outputs.chunk }}' }, next_nodes: ['sum'] },
 *   { node_name: 'Sum', namespace: 'demo', identifier: 'sum',
 *     unites: { identifier: 'split', strategy: UnitesStrategyEnum.ALL_DONE } },
 * ];
 * ```
 * @module
 */
import { z } from 'zod';
import { StateStatus } from './generated/stateMachine.js';
import type {
  CancelRunResponse,
  GraphResponse,
  RunProgressResponse,
  RunResponse,
  SendSignalResponse,
  StateResponse,
  TriggerResponse,
} from './wire.js';

/** When a `unites` node fires: after every descendant of its target succeeded, or after all are done. */
export const UnitesStrategyEnum = {
  ALL_SUCCESS: 'ALL_SUCCESS',
  ALL_DONE: 'ALL_DONE',
} as const;
export type UnitesStrategyEnum = (typeof UnitesStrategyEnum)[keyof typeof UnitesStrategyEnum];

/** How the delay before an automatic retry grows with the attempt number. */
export const RetryStrategyEnum = {
  EXPONENTIAL: 'EXPONENTIAL',
  EXPONENTIAL_FULL_JITTER: 'EXPONENTIAL_FULL_JITTER',
  EXPONENTIAL_EQUAL_JITTER: 'EXPONENTIAL_EQUAL_JITTER',
  LINEAR: 'LINEAR',
  LINEAR_FULL_JITTER: 'LINEAR_FULL_JITTER',
  LINEAR_EQUAL_JITTER: 'LINEAR_EQUAL_JITTER',
  FIXED: 'FIXED',
  FIXED_FULL_JITTER: 'FIXED_FULL_JITTER',
  FIXED_EQUAL_JITTER: 'FIXED_EQUAL_JITTER',
} as const;
export type RetryStrategyEnum = (typeof RetryStrategyEnum)[keyof typeof RetryStrategyEnum];

/**
 * Status of one node execution (a *state*): {@link StateStatus} under the name earlier releases gave it.
 * Statuses, their groups and moves are generated from the Python SDK (`src/generated/stateMachine.ts`).
 */
export const StateStatusEnum = StateStatus;
export type StateStatusEnum = StateStatus;

/** Validation status of a graph template. */
export const GraphValidationStatus = {
  VALID: 'VALID',
  INVALID: 'INVALID',
  PENDING: 'PENDING',
  ONGOING: 'ONGOING',
} as const;
export type GraphValidationStatus = (typeof GraphValidationStatus)[keyof typeof GraphValidationStatus];

const nonEmpty = (what: string) =>
  z.string().trim().min(1, { message: `${what} cannot be empty` });

/**
 * Makes a node wait for every descendant of one state of `identifier`. A zod schema and its type.
 *
 * @example
 * ```ts
 * const unites: UnitesModel = { identifier: 'split', strategy: UnitesStrategyEnum.ALL_DONE };
 * ```
 */
export const UnitesModel = z.object({
  /** Identifier of the node whose descendants are awaited. */
  identifier: nonEmpty('Unites identifier'),
  /** Default `ALL_SUCCESS`. */
  strategy: z.enum(['ALL_SUCCESS', 'ALL_DONE']).default(UnitesStrategyEnum.ALL_SUCCESS),
});
export type UnitesModel = z.input<typeof UnitesModel>;

/**
 * One node of a graph template. Input values are strings and may hold placeholders:
 * `${{ <identifier>.outputs.<field> }}` or `${{ store.<key> }}`. A zod schema and its type.
 *
 * @example
 * ```ts
 * const node: GraphNodeModel = {
 *   node_name: 'greeting', namespace: 'demo', identifier: 'greeter',
 *   inputs: { name: '${{ store.name }}' }, next_nodes: ['summary'],
 * };
 * // A child graph: a run of `summarise` starts when this node is reached; its final outputs are this node's.
 * const summary: GraphNodeModel = {
 *   graph_name: 'summarise', namespace: 'demo', identifier: 'summary',
 *   inputs: { text: '${{ greeter.outputs.greeting }}' },
 * };
 * ```
 */
export const GraphNodeModel = z.object({
  /**
   * Name of the registered node to run (its class's static `name`); for a node that names a graph
   * (`graph_name`), a label that defaults to the graph's name.
   */
  node_name: nonEmpty('Node name').optional(),
  /** Namespace where the node is registered. */
  namespace: nonEmpty('Namespace'),
  /** Unique name of this node inside the graph (`store` is reserved). */
  identifier: nonEmpty('Node identifier').refine((value) => value !== 'store', {
    message: "Node identifier cannot be reserved word 'store'",
  }),
  /** Input values, possibly with placeholders (default `{}`). */
  inputs: z.record(z.string()).default({}),
  /** Identifiers of the nodes that follow (default `null`: none). */
  next_nodes: z
    .array(nonEmpty('Next node identifier'))
    .refine((items) => new Set(items).size === items.length, { message: 'Next node identifiers are not unique' })
    .nullish()
    .transform((items) => items ?? null),
  /** Wait for every descendant of another node first (default `null`). */
  unites: UnitesModel.nullish().transform((unites) => unites ?? null),
  /**
   * Seconds from claim to result before an attempt fails with `Timed out after N s` (and goes
   * through the retry policy); default `null`: the graph's `timeout_seconds`, else none.
   */
  timeout_seconds: z
    .number()
    .positive()
    .max(100 * 365 * 86_400)
    .nullish()
    .transform((seconds) => seconds ?? null),
  /**
   * Named limits of the namespace its states are charged to when claimed (default `[]`): `tokens`
   * is the estimate (an integer or a placeholder), `key` splits the limit into one bucket per value.
   */
  limits: z
    .array(
      z.object({
        name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/, 'Limit names are 1 to 128 letters, digits or _ . : -'),
        tokens: z.string().default('0'),
        key: z.string().nullish().transform((key) => key ?? null),
      }),
    )
    .default([]),
  /** At most this many of its states claimed at once, across every runtime and replica (default `null`). */
  concurrency: z.number().int().positive().nullish().transform((n) => n ?? null),
  /**
   * Run this graph of the same namespace as a child run instead of a node class (default `null`).
   * `inputs` are the inputs of its first node; the node's outputs are the child run's final outputs
   * (each field a JSON list when several states end it).
   */
  graph_name: nonEmpty('Graph name')
    .nullish()
    .transform((name) => name ?? null),
})
  .refine((node) => node.node_name !== undefined || node.graph_name !== null, {
    message: 'Node name is required (or graph_name, for a node that runs a graph)',
    path: ['node_name'],
  })
  .transform(({ node_name, ...node }) => ({ node_name: node_name ?? node.graph_name ?? '', ...node }));
export type GraphNodeModel = z.input<typeof GraphNodeModel>;

/**
 * Automatic retries of failed states, for every node of a graph. Delays are in milliseconds.
 * A zod schema and its type.
 *
 * @example
 * ```ts
 * const retryPolicy: RetryPolicyModel = { max_retries: 5, strategy: RetryStrategyEnum.LINEAR, backoff_factor: 500 };
 * ```
 */
export const RetryPolicyModel = z.object({
  /** Retries after the first attempt (default 3). */
  max_retries: z.number().int().min(0).default(3),
  /** Default `EXPONENTIAL`. */
  strategy: z
    .enum(Object.values(RetryStrategyEnum) as [RetryStrategyEnum, ...RetryStrategyEnum[]])
    .default(RetryStrategyEnum.EXPONENTIAL),
  /** Base delay in milliseconds (default 2000). */
  backoff_factor: z.number().int().positive().default(2000),
  /** Default 2. */
  exponent: z.number().int().positive().default(2),
  /** Upper bound of a delay in milliseconds (default `null`: no bound). */
  max_delay: z
    .number()
    .int()
    .positive()
    .nullish()
    .transform((delay) => delay ?? null),
});
export type RetryPolicyModel = z.input<typeof RetryPolicyModel>;

/**
 * Store keys trimmed; each one empty, holding '.', or repeated is reported to zod under its path
 * (the rules of the Python SDK, so both SDKs refuse the same store configs before sending them).
 */
function checkStoreKeys(keys: string[], paths: (string | number)[], context: z.RefinementCtx): string[] {
  const seen = new Set<string>();
  return keys.map((raw, index) => {
    const key = raw.trim();
    let message: string | undefined;
    if (!key) message = 'Key cannot be empty';
    else if (key.includes('.')) message = `Key '${key}' cannot contain '.'`;
    else if (seen.has(key)) message = `Key '${key}' is duplicated`;
    if (message) context.addIssue({ code: z.ZodIssueCode.custom, message, path: [paths[index]!] });
    seen.add(key);
    return key;
  });
}

/**
 * The per-run key/value store of a graph: keys a trigger must give, and defaults.
 * A zod schema and its type.
 *
 * @example
 * ```ts
 * const storeConfig: StoreConfigModel = { required_keys: ['cursor'], default_values: { batch: '100' } };
 * ```
 */
export const StoreConfigModel = z.object({
  /** Keys every trigger must give (default `[]`); trimmed, unique, without '.'. */
  required_keys: z
    .array(z.string())
    .default([])
    .transform((keys, context) => checkStoreKeys(keys, keys.map((_, index) => index), context)),
  /** Values of keys a trigger does not give (default `{}`); keys as for `required_keys`. */
  default_values: z
    .record(z.string())
    .default({})
    .transform((values, context) => {
      const entries = Object.entries(values);
      const raw = entries.map(([key]) => key);
      const keys = checkStoreKeys(raw, raw, context);
      return Object.fromEntries(entries.map(([, value], index) => [keys[index]!, value]));
    }),
});
export type StoreConfigModel = z.input<typeof StoreConfigModel>;

/**
 * Runs a graph on a cron schedule, evaluated in UTC; each run starts with `inputs` and `store` as a
 * trigger's would (a graph with required store keys needs them here). A zod schema and its type.
 *
 * @example
 * ```ts
 * const weekdays: CronTrigger = { expression: '0 9 * * 1-5' }; // every weekday at 09:00 UTC
 * const hourly: CronTrigger = { expression: '0 * * * *', store: { cursor: '0' } };
 * ```
 */
export const CronTrigger = z.object({
  /** Standard 5-field cron expression (UTC). */
  expression: nonEmpty('Cron expression'),
  /** Override the first node's template inputs (default `{}`). */
  inputs: z.record(z.string()).default({}),
  /** The key/value store each run starts with (default `{}`). */
  store: z.record(z.string()).default({}),
});
export type CronTrigger = z.input<typeof CronTrigger>;

/** Inputs for the first node of a run. */
export interface TriggerState {
  identifier: string;
  inputs?: Record<string, string>;
}

/** A graph template as the state manager returns it (secret values are never returned: each name maps to `true`). */
export type GraphTemplate = GraphResponse;

/** The answer to a trigger: `{ status: 'CREATED', run_id, duplicate }`. */
export type TriggerResult = TriggerResponse;

/** A run's summary (`GET .../run/{run_id}`): status, counts and `finished`; a cancelled run's
 * `cancel_reason`, and `warnings` such as `no runtime serves node X (namespace N)`. */
export type RunSummary = RunResponse;

/** The answer to {@link StateManager.cancelRun}: `{ run_id, status: 'CANCELLED', cancelled_states, reason }`. */
export type RunCancelled = CancelRunResponse;

/** The answer to {@link StateManager.sendSignal}: `{ run_id, name, woken }`. */
export type SignalSent = SendSignalResponse;

/** How many states of one node of a run are in each status (their sum is the node's fan-out). */
export interface RunNodeCounts {
  identifier: string;
  node_name: string;
  counts: Record<string, number>;
}

/**
 * One event of {@link StateManager.watchRun}: the run's whole progress at `version`, which numbers
 * the run's changes and is the event's id. `event` is `snapshot` for the first event of a
 * connection, `change` after each change, and `finished` for the last one.
 */
export interface RunEvent extends RunProgressResponse {
  event: 'snapshot' | 'change' | 'finished';
}

/**
 * One chunk of a state's live stream ({@link StateManager.streamState}): text a running node
 * streamed (`this.stream(text)`), at `offset` in the stream of its `attempt`.
 */
export interface StreamChunk {
  attempt: number;
  offset: number;
  text: string;
}

/** One state of a run (`GET .../run/{run_id}/states`). */
export type RunState = StateResponse;
