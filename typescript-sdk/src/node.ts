/**
 * Nodes: the unit of work, how node classes are checked, and how one state is executed.
 *
 * @example
 * ```ts
 * import { BaseNode } from 'exospherehost';
 * import { z } from 'zod';
 *
 * class Greet extends BaseNode {
 *   static name = 'greet';
 *   static Inputs = z.object({ name: z.string() });
 *   static Outputs = z.object({ greeting: z.string() });
 *
 *   async execute() {
 *     return { greeting: `Hello ${this.inputs.name}` };
 *   }
 * }
 * ```
 * @module
 */
import { z } from 'zod';
import { UnsendableOutputError, describeError } from './errors.js';
import { firstProblem, sendableText } from './sendable.js';
import { PruneSignal, ReQueueAfterSignal, WaitForSignalSignal } from './signals.js';
import type { NodeRegistration, Usage } from './wire.js';

/** Inputs, outputs and secrets of a node: strings only (v1). */
export type NodeData = Record<string, string>;

/** What `execute` may return: one output object, a list of them (a fan-out), or nothing. */
export type NodeResult = NodeData | NodeData[] | null | undefined | void;

/**
 * Base class of every node. Subclass it, describe its data with zod objects of strings, and
 * implement `execute`.
 *
 * * `static name`: the node's name in graphs (defaults to the class name).
 * * `static Inputs`, `Outputs`, `Secrets`: `z.object({...})` whose fields are `z.string()`, or
 *   `z.string().default(...)` (v1 carries strings only: serialise other data, e.g. as JSON).
 * * `execute()` reads `this.inputs` and `this.secrets` and returns an output object, an array of
 *   them (a fan-out: one next branch per item) or nothing. Throw {@link PruneSignal} or
 *   {@link ReQueueAfterSignal} to end the branch or to run again later; any other error fails the
 *   state (and the graph's retry policy decides what happens next).
 * * `execute(signal)` gets an `AbortSignal` (also `this.signal`) that aborts when the runtime gives
 *   the state up: its run was cancelled, it ran past its graph node's `timeout_seconds`, its lease
 *   was lost, or shutdown ran out of grace time. Pass it to `fetch` and other cancellable calls.
 * * `static timeoutMs` (optional) bounds one execution; exceeding it fails the state.
 * * Call {@link BaseNode.reportUsage} with what a model provider call used (tokens, requests, cost):
 *   it adds up over the attempt and is sent with its result, `executed` or `errored`.
 *
 * Type the data by passing it as type arguments: `class Greet extends BaseNode<{ name: string }>`.
 *
 * @example
 * ```ts
 * class Fetch extends BaseNode {
 *   static name = 'fetch';
 *   static Inputs = z.object({ url: z.string() });
 *   static Outputs = z.object({ body: z.string() });
 *   static Secrets = z.object({ token: z.string() });
 *
 *   async execute() {
 *     const response = await fetch(this.inputs.url, {
 *       headers: { authorization: `Bearer ${this.secrets.token}` },
 *       signal: this.signal,
 *     });
 *     return { body: await response.text() };
 *   }
 * }
 * ```
 */
export abstract class BaseNode<TInputs extends NodeData = NodeData, TSecrets extends NodeData = NodeData> {
  static Inputs: z.AnyZodObject = z.object({});
  static Outputs: z.AnyZodObject = z.object({});
  static Secrets: z.AnyZodObject = z.object({});
  static timeoutMs: number | undefined = undefined;

  /** The state's inputs, parsed with `Inputs` (defaults applied). */
  inputs!: TInputs;
  /** The graph's secrets named by `Secrets`. */
  secrets!: TSecrets;
  /** Aborted when the runtime gives this execution up (the same signal `execute` is given). */
  signal!: AbortSignal;
  /** The payload of the signal that woke this state after it threw {@link WaitForSignalSignal};
   * undefined until one did. */
  signalPayload: Record<string, string> | undefined;

  /**
   * Do the work of one state. `signal` aborts when the runtime gives the state up (its run was
   * cancelled, it timed out, its lease was lost): whatever is returned afterwards is discarded.
   *
   * @example
   * ```ts
   * async execute(signal: AbortSignal) {
   *   const page = await fetch(this.inputs.url, { signal });
   *   return { body: await page.text() };
   * }
   * ```
   */
  abstract execute(signal: AbortSignal): Promise<NodeResult> | NodeResult;

  #usage: Usage | undefined;

  /**
   * Add what a call to a model provider used to this attempt's usage. Call it once per provider
   * call, or once with the totals: the runtime sends the sum with the attempt's result (`executed`
   * or `errored`, since a failed attempt may have used tokens too), and the state manager adds it
   * up per node and per run, checks the run's budget, and shows it in `/metrics`, `exosphere run
   * show` and the dashboard. Throws a `RangeError` for a negative, fractional or too large count.
   *
   * @example
   * ```ts
   * async execute() {
   *   const reply = await openai.chat.completions.create({ ... });
   *   this.reportUsage({ inputTokens: reply.usage.prompt_tokens, outputTokens: reply.usage.completion_tokens, requests: 1 });
   *   return { answer: reply.choices[0].message.content };
   * }
   * ```
   */
  reportUsage(usage: UsageReport): void {
    this.#usage = addUsage(this.#usage, usage);
  }

  /** What {@link BaseNode.reportUsage} added up so far in this attempt, as the wire's `usage`; undefined if nothing. */
  reportedUsage(): Usage | undefined {
    return this.#usage && Object.keys(this.#usage).length > 0 ? { ...this.#usage } : undefined;
  }
}

/** What one call to {@link BaseNode.reportUsage} adds: every field optional. */
export interface UsageReport {
  inputTokens?: number;
  outputTokens?: number;
  requests?: number;
  costUsd?: number;
}

/** The largest count (tokens, requests) and cost one attempt may report: what the state manager accepts. */
export const MAX_USAGE_TOKENS = 1e12;
export const MAX_USAGE_COST_USD = 1e9;

const USAGE_FIELDS = [
  ['inputTokens', 'input_tokens'],
  ['outputTokens', 'output_tokens'],
  ['requests', 'requests'],
  ['costUsd', 'cost_usd'],
] as const;

/** `total` plus `more`, checked: counts are non-negative integers, the cost a non-negative finite number, within bounds. */
export function addUsage(total: Usage | undefined, more: UsageReport): Usage {
  const summed: Record<string, number> = { ...(total ?? {}) } as Record<string, number>;
  for (const [name, wire] of USAGE_FIELDS) {
    const value = more[name];
    if (value === undefined || value === 0) continue;
    const isCost = name === 'costUsd';
    const bound = isCost ? MAX_USAGE_COST_USD : MAX_USAGE_TOKENS;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (!isCost && !Number.isInteger(value))) {
      throw new RangeError(`${name} must be a non-negative ${isCost ? 'finite number' : 'integer'}, got ${String(value)}`);
    }
    const sum = (summed[wire] ?? 0) + value;
    if (sum > bound) throw new RangeError(`${name} of one attempt may not pass ${bound}, it would be ${sum}`);
    summed[wire] = sum;
  }
  return summed as Usage;
}

/** A concrete node class, as passed to `Runtime`. */
export interface NodeClass {
  new (): BaseNode<any, any>;
  readonly name: string;
  Inputs: z.AnyZodObject;
  Outputs: z.AnyZodObject;
  Secrets: z.AnyZodObject;
  timeoutMs?: number | undefined;
}

const SCHEMAS = ['Inputs', 'Outputs', 'Secrets'] as const;

/**
 * Every problem with the given node classes (empty when all are usable), naming class and field.
 *
 * @example
 * ```ts
 * checkNodeClasses([Greet, Greet]); // ['Duplicate node name "greet": ...']
 * ```
 */
export function checkNodeClasses(nodes: readonly unknown[]): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const node of nodes) {
    if (typeof node !== 'function' || !(node.prototype instanceof BaseNode)) {
      problems.push(`${describeValue(node)} is not a subclass of BaseNode (pass the class itself, not an instance)`);
      continue;
    }
    const nodeClass = node as unknown as NodeClass;
    const label = classLabel(nodeClass);
    const name: unknown = nodeClass.name;
    if (typeof name !== 'string' || !name.trim()) {
      problems.push(`${label} needs a non-empty static name`);
    } else if (seen.has(name)) {
      problems.push(`Duplicate node name "${name}": node names must be unique in a runtime`);
    } else {
      seen.add(name);
    }
    for (const which of SCHEMAS) problems.push(...checkSchema(label, which, nodeClass[which]));
    if (typeof nodeClass.prototype.execute !== 'function') problems.push(`${label} does not implement execute()`);
    const timeout = nodeClass.timeoutMs;
    if (timeout !== undefined && (typeof timeout !== 'number' || !(timeout > 0))) {
      problems.push(`${label}.timeoutMs must be a positive number of milliseconds, got ${String(timeout)}`);
    }
  }
  return problems;
}

function checkSchema(label: string, which: string, schema: unknown): string[] {
  const shape = objectShape(schema);
  if (shape === undefined) return [`${label}.${which} must be a zod object (z.object({...})), got ${describeValue(schema)}`];
  const problems: string[] = [];
  for (const [field, fieldSchema] of Object.entries(shape)) {
    const kind = zodKind(fieldSchema);
    if (kind === 'string' || (kind === 'default' && zodKind(innerSchema(fieldSchema)) === 'string')) continue;
    const why =
      kind === 'optional' || kind === 'nullable'
        ? `is ${kind}: give it a default instead, z.string().default('')`
        : `must be z.string() or z.string().default(...), got ${kind}`;
    problems.push(`${label}.${which} field "${field}" ${why} (v1 nodes carry strings only)`);
  }
  return problems;
}

/** The flat JSON schema of a zod object of strings, as sent when a runtime registers its nodes. */
export function jsonSchema(schema: z.AnyZodObject): Record<string, unknown> {
  const properties: Record<string, Record<string, unknown>> = {};
  const required: string[] = [];
  for (const [field, fieldSchema] of Object.entries(objectShape(schema) ?? {})) {
    if (zodKind(fieldSchema) === 'default') {
      properties[field] = { type: 'string', default: defaultValue(fieldSchema) };
    } else {
      properties[field] = { type: 'string' };
      required.push(field);
    }
  }
  return { type: 'object', properties, required };
}

/**
 * Whether `value` is a zod object schema (`z.object({...})`), from whichever copy of zod.
 * The original SDK's helper, kept for its users.
 *
 * @example
 * ```ts
 * isZodObjectSchema(z.object({ name: z.string() })); // true
 * isZodObjectSchema(z.string()); // false
 * ```
 */
export function isZodObjectSchema(value: unknown): value is z.AnyZodObject {
  return isZodSchema(value) && zodKind(value) === 'object';
}

/**
 * Whether `value` is a plain zod string schema (`z.string()`, with checks such as `.min(1)`).
 * Wrapped strings (`z.string().default('')`, `.optional()`) are not. The original SDK's helper.
 *
 * @example
 * ```ts
 * isZodStringSchema(z.string().min(1)); // true
 * isZodStringSchema(z.string().default('x')); // false
 * ```
 */
export function isZodStringSchema(value: unknown): value is z.ZodString {
  return isZodSchema(value) && zodKind(value) === 'string';
}

/**
 * The flat JSON schema of a zod object, as a runtime registers it for a node, titled `title`:
 * `{ type: 'object', properties, required, title }`. The original SDK's helper, kept for its users
 * (it built the schema with zod-to-json-schema; this one describes the v1 field kinds, i.e. each
 * field is a string, optional when it has a default, and anything else is described as a string too).
 *
 * @example
 * ```ts
 * generateFlatSchema(z.object({ name: z.string(), lang: z.string().default('en') }), 'Inputs');
 * // { type: 'object', title: 'Inputs', required: ['name'],
 * //   properties: { name: { type: 'string' }, lang: { type: 'string', default: 'en' } } }
 * ```
 */
export function generateFlatSchema(zodSchema: z.AnyZodObject, title: string): Record<string, unknown> {
  return { ...jsonSchema(zodSchema), title };
}

function isZodSchema(value: unknown): boolean {
  return value !== null && typeof value === 'object' && typeof (value as { parse?: unknown }).parse === 'function';
}

/** The description of one node class sent to `PUT .../nodes/`. */
export function nodeRegistration(node: NodeClass, namespace: string): NodeRegistration & { namespace: string } {
  return {
    name: node.name,
    namespace,
    inputs_schema: jsonSchema(node.Inputs),
    outputs_schema: jsonSchema(node.Outputs),
    secrets: Object.keys(objectShape(node.Secrets) ?? {}),
  };
}

/** Whether a node reads secrets (so the runtime fetches them before executing). */
export function needsSecrets(node: NodeClass): boolean {
  return Object.keys(objectShape(node.Secrets) ?? {}).length > 0;
}

/** What to tell the state manager about one execution: the endpoint and its body. */
export type Outcome =
  | { endpoint: 'executed'; body: { outputs: NodeData[]; usage?: Usage } }
  | { endpoint: 'errored'; body: { error: string; traceback?: string; usage?: Usage } }
  | { endpoint: 'prune'; body: { data: Record<string, unknown> } }
  | { endpoint: 're-enqueue-after'; body: { enqueue_after: number } }
  | { endpoint: 'wait-for-signal'; body: { name: string; timeout_seconds: number | null } };

/**
 * The outcome of a failure: the error text is `${err.name}: ${err.message}`, with lone surrogates
 * and NUL characters escaped so that the failure report itself can always be sent.
 */
export function failed(err: unknown): Extract<Outcome, { endpoint: 'errored' }> {
  const body: { error: string; traceback?: string } = { error: sendableText(describeError(err)) };
  const stack = errorStack(err);
  if (stack) body.traceback = stack;
  return { endpoint: 'errored', body };
}

// Only the end of a longer stack is sent: the error and its innermost frames are what matter.
const STACK_SENT_CHARS = 65_536;

/** The error's stack (with its causes'), as sent beside the error text; undefined for a thrown non-Error. */
function errorStack(err: unknown): string | undefined {
  if (!(err instanceof Error) || !err.stack) return undefined;
  let text = err.stack;
  let cause: unknown = err.cause;
  for (let depth = 0; cause instanceof Error && cause.stack && depth < 5; depth += 1) {
    text += `\nCaused by: ${cause.stack}`;
    cause = cause.cause;
  }
  text = sendableText(text);
  return text.length <= STACK_SENT_CHARS ? text : `[... earlier frames cut]\n${text.slice(-STACK_SENT_CHARS)}`;
}

/**
 * Execute `node` once for one state and describe the result. Never rejects.
 *
 * @example
 * ```ts
 * await runNode(Greet, { name: 'Ada' }, {}, new AbortController().signal);
 * // { endpoint: 'executed', body: { outputs: [{ greeting: 'Hello Ada' }] } }
 * ```
 *
 * What the node reported with {@link BaseNode.reportUsage} goes with an `executed` or `errored`
 * outcome as its `usage`.
 */
export async function runNode(
  node: NodeClass,
  inputs: Record<string, unknown>,
  secrets: Record<string, unknown>,
  signal: AbortSignal,
  signalPayload?: Record<string, string>,
): Promise<Outcome> {
  const made: BaseNode<any, any>[] = [];
  const outcome = await runOnce(node, inputs, secrets, signal, signalPayload, made);
  const usage = made[0]?.reportedUsage();
  if (usage !== undefined && (outcome.endpoint === 'executed' || outcome.endpoint === 'errored')) {
    return { ...outcome, body: { ...outcome.body, usage } } as Outcome;
  }
  return outcome;
}

async function runOnce(
  node: NodeClass,
  inputs: Record<string, unknown>,
  secrets: Record<string, unknown>,
  signal: AbortSignal,
  signalPayload: Record<string, string> | undefined,
  made: BaseNode<any, any>[],
): Promise<Outcome> {
  try {
    const instance = new node();
    made.push(instance);
    instance.signalPayload = signalPayload ? { ...signalPayload } : undefined;
    instance.inputs = parseData(node, 'inputs', node.Inputs, inputs);
    instance.secrets = parseData(node, 'secrets', node.Secrets, secrets);
    instance.signal = signal;
    const result = await withTimeout(node, Promise.resolve().then(() => instance.execute(signal)));
    const outputs = dumpOutputs(node, result);
    checkOutputsSendable(node, outputs);
    return { endpoint: 'executed', body: { outputs } };
  } catch (err) {
    if (err instanceof PruneSignal || isNamed(err, 'PruneSignal')) {
      return pruneOutcome(node, (err as PruneSignal).data ?? {});
    }
    if (err instanceof ReQueueAfterSignal || isNamed(err, 'ReQueueAfterSignal')) {
      return { endpoint: 're-enqueue-after', body: { enqueue_after: (err as ReQueueAfterSignal).delayMs } };
    }
    if (err instanceof WaitForSignalSignal || isNamed(err, 'WaitForSignalSignal')) {
      const wait = err as WaitForSignalSignal;
      const timeout = wait.timeoutMs === undefined ? null : wait.timeoutMs / 1000;
      return { endpoint: 'wait-for-signal', body: { name: wait.signalName, timeout_seconds: timeout } };
    }
    return failed(err);
  }
}

function pruneOutcome(node: NodeClass, data: Record<string, unknown>): Outcome {
  let problem: string | undefined;
  try {
    JSON.stringify(data); // throws on a cycle or a bigint, which the walk below must not meet
    const found = firstProblem(data);
    if (found) problem = `field '${found.where}' of node ${node.name} ${found.reason}`;
  } catch (err) {
    problem = `of node ${node.name} is not JSON (${describeError(err)})`;
  }
  return problem ? failed(new UnsendableOutputError(`Prune data ${problem}`)) : { endpoint: 'prune', body: { data } };
}

/** Throw an {@link UnsendableOutputError} naming the first output field the state manager cannot take. */
export function checkOutputsSendable(node: NodeClass, outputs: NodeData[]): void {
  for (const [index, output] of outputs.entries()) {
    const problem = firstProblem(output);
    if (!problem) continue;
    const which = outputs.length > 1 ? ` (output ${index} of ${outputs.length})` : '';
    throw new UnsendableOutputError(`Output field '${problem.where}' of node ${node.name}${which} ${problem.reason}`);
  }
}

/** Turn what `execute` returned into the `outputs` list of the wire (one object per output). */
export function dumpOutputs(node: NodeClass, result: unknown): NodeData[] {
  if (result === undefined || result === null) return [];
  const items = Array.isArray(result) ? result : [result];
  return items.map((item) => {
    if (item === null || typeof item !== 'object' || Array.isArray(item)) {
      throw new TypeError(
        `${node.name}.execute must return an object of strings, an array of them, or nothing; got ${describeValue(item)}`,
      );
    }
    return parseData(node, 'outputs', node.Outputs, item);
  });
}

function parseData(node: NodeClass, what: string, schema: z.AnyZodObject, data: unknown): NodeData {
  const parsed = schema.safeParse(data);
  if (parsed.success) return parsed.data as NodeData;
  // zod's issues name the field and the problem without echoing values, so secrets stay secret.
  const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`);
  throw new TypeError(`Invalid ${what} for node ${node.name}: ${problems.join('; ')}`);
}

async function withTimeout<T>(node: NodeClass, work: Promise<T>): Promise<T> {
  const timeoutMs = node.timeoutMs;
  if (timeoutMs === undefined) return work;
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = new Error(`${node.name} timed out after ${timeoutMs} ms`);
      error.name = 'TimeoutError';
      reject(error);
    }, timeoutMs);
  });
  try {
    return await Promise.race([work, expired]);
  } finally {
    clearTimeout(timer);
  }
}

// zod v3 names its classes in `_def.typeName` ("ZodString"); zod v4 in `_zod.def.type` ("string").
// Reading them instead of using `instanceof` works whichever copy of zod the user's schemas came from.
type ZodLike = { _def?: Record<string, unknown>; _zod?: { def?: Record<string, unknown> }; shape?: unknown };

function zodDef(schema: unknown): Record<string, unknown> | undefined {
  const candidate = schema as ZodLike | null | undefined;
  return candidate?._zod?.def ?? candidate?._def;
}

function zodKind(schema: unknown): string {
  const def = zodDef(schema);
  if (def === undefined) return describeValue(schema);
  if (typeof def.typeName === 'string') return def.typeName.replace(/^Zod/, '').toLowerCase();
  return typeof def.type === 'string' ? def.type : 'unknown';
}

function innerSchema(schema: unknown): unknown {
  return zodDef(schema)?.innerType;
}

function defaultValue(schema: unknown): unknown {
  const value = zodDef(schema)?.defaultValue;
  return typeof value === 'function' ? (value as () => unknown)() : value;
}

function objectShape(schema: unknown): Record<string, unknown> | undefined {
  if (zodKind(schema) !== 'object') return undefined;
  const shape = (schema as ZodLike).shape ?? zodDef(schema)?.shape;
  const resolved = typeof shape === 'function' ? (shape as () => unknown)() : shape;
  return resolved !== null && typeof resolved === 'object' ? (resolved as Record<string, unknown>) : undefined;
}

function classLabel(node: NodeClass): string {
  // `static name = 'sample-node'` hides the class's own name; show both when they differ.
  const declared = /^class\s+([\w$]+)/.exec(Function.prototype.toString.call(node))?.[1];
  return declared && declared !== node.name ? `${declared} ("${node.name}")` : String(node.name);
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'function') return `function ${value.name || '(anonymous)'}`;
  if (typeof value === 'object') {
    const maker = value.constructor;
    return maker && maker !== Object ? `an instance of ${maker.name}` : 'an object';
  }
  return typeof value === 'string' ? `string "${value}"` : `${typeof value} ${String(value)}`;
}

function isNamed(err: unknown, name: string): boolean {
  return err instanceof Error && err.name === name;
}
