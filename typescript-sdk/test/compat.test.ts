/**
 * Drop-in for the original ExosphereHost TypeScript SDK's users: its call forms, model defaults and
 * exports work here as they did there.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, afterEach, before, describe, mock, test } from 'node:test';
import {
  BaseNode,
  CronTrigger,
  GraphNodeModel,
  GraphValidationError,
  LogLevel,
  Logger,
  generateFlatSchema,
  isZodObjectSchema,
  isZodStringSchema,
  logger,
  RetryPolicyModel,
  StateManager,
  StoreConfigModel,
  UnitesModel,
} from 'exospherehost';
import { z } from 'zod';
import { useServer } from './helpers/env.js';
import { FakeStateManager } from './helpers/fake-server.js';
import { venvPython } from './helpers/server.js';

const run = promisify(execFile);

/** What the Python SDK's pydantic models hold when built from each `[model, fields]` (one process). */
async function pythonModels(cases: [string, Record<string, unknown>][]): Promise<unknown[]> {
  const script = [
    'import json, sys',
    'from exospherehost import models',
    'cases = json.loads(sys.argv[1])',
    'print(json.dumps([getattr(models, m).model_validate(f).model_dump(mode="json") for m, f in cases]))',
  ].join('\n');
  const { stdout } = await run(venvPython(), ['-c', script, JSON.stringify(cases)]);
  return JSON.parse(stdout) as unknown[];
}

describe('the models fill the defaults the Python SDK fills', () => {
  test('RetryPolicyModel.parse({}) is the documented default policy', () => {
    assert.deepEqual(RetryPolicyModel.parse({}), {
      max_retries: 3,
      strategy: 'EXPONENTIAL',
      backoff_factor: 2000,
      exponent: 2,
      max_delay: null,
    });
  });

  test('StoreConfigModel.parse({}) has no required keys and no default values', () => {
    assert.deepEqual(StoreConfigModel.parse({}), { required_keys: [], default_values: {} });
  });

  test('UnitesModel defaults to ALL_SUCCESS', () => {
    assert.deepEqual(UnitesModel.parse({ identifier: 'split' }), { identifier: 'split', strategy: 'ALL_SUCCESS' });
  });

  test('GraphNodeModel fills inputs, next_nodes and unites, and trims names', () => {
    const node = GraphNodeModel.parse({
      node_name: '  MyNode  ',
      namespace: 'ns',
      identifier: '  node1 ',
      next_nodes: [' next1 '],
      unites: { identifier: ' unite1 ' },
    });
    assert.deepEqual(node, {
      node_name: 'MyNode',
      namespace: 'ns',
      identifier: 'node1',
      inputs: {},
      next_nodes: ['next1'],
      unites: { identifier: 'unite1', strategy: 'ALL_SUCCESS' },
      timeout_seconds: null,
      limits: [],
      concurrency: null,
      graph_name: null,
    });
    const bare = GraphNodeModel.parse({ node_name: 'n', namespace: 'ns', identifier: 'i' });
    assert.equal(bare.next_nodes, null);
    assert.equal(bare.unites, null);
  });

  test('given values are kept, not replaced by defaults', () => {
    const policy = { max_retries: 0, strategy: 'FIXED', backoff_factor: 10, exponent: 3, max_delay: 50 } as const;
    assert.deepEqual(RetryPolicyModel.parse(policy), policy);
  });

  test('StoreConfigModel trims keys and refuses empty, dotted and repeated ones, as the Python SDK does', () => {
    assert.deepEqual(StoreConfigModel.parse({ required_keys: [' a ', 'b'], default_values: { ' c ': '1' } }), {
      required_keys: ['a', 'b'],
      default_values: { c: '1' },
    });
    assert.throws(() => StoreConfigModel.parse({ required_keys: ['a', ' a'] }), /Key 'a' is duplicated/);
    assert.throws(() => StoreConfigModel.parse({ required_keys: ['a.b'] }), /Key 'a.b' cannot contain '.'/);
    assert.throws(() => StoreConfigModel.parse({ default_values: { '  ': 'v' } }), /Key cannot be empty/);
  });

  const cases: [string, { parse(value: unknown): unknown }, Record<string, unknown>][] = [
    ['RetryPolicyModel', RetryPolicyModel, {}],
    ['RetryPolicyModel', RetryPolicyModel, { strategy: 'LINEAR', max_delay: 9000 }],
    ['StoreConfigModel', StoreConfigModel, {}],
    ['StoreConfigModel', StoreConfigModel, { required_keys: [' k '], default_values: { ' d ': 'v' } }],
    ['UnitesModel', UnitesModel, { identifier: 'split' }],
    ['GraphNodeModel', GraphNodeModel, { node_name: 'N', namespace: 'ns', identifier: 'i' }],
    ['GraphNodeModel', GraphNodeModel, { node_name: 'N', namespace: 'ns', identifier: 'i', unites: { identifier: 'u' } }],
    ['GraphNodeModel', GraphNodeModel, { node_name: 'N', namespace: 'ns', identifier: 'i', timeout_seconds: 2.5 }],
    ['GraphNodeModel', GraphNodeModel, { graph_name: ' child ', namespace: 'ns', identifier: 'i', inputs: { a: '1' } }],
    ['GraphNodeModel', GraphNodeModel, { node_name: 'Label', graph_name: 'child', namespace: 'ns', identifier: 'i' }],
    ['CronTrigger', CronTrigger, { expression: '0 * * * *' }],
    ['CronTrigger', CronTrigger, { expression: '0 * * * *', inputs: { a: '1' }, store: { cursor: '0' } }],
  ];

  test('each model parses a payload exactly as the Python SDK\'s model does', async () => {
    const python = await pythonModels(cases.map(([name, , fields]) => [name, fields]));
    cases.forEach(([name, model, fields], index) => {
      assert.deepEqual(model.parse(fields), python[index], `${name} from ${JSON.stringify(fields)}`);
    });
  });
});

class Greeting extends BaseNode {
  static name = 'greeting';
  static Inputs = z.object({ name: z.string() });
  static Outputs = z.object({ greeting: z.string() });
  async execute() {
    return { greeting: `Hello, ${this.inputs.name}!` };
  }
}

const harness = useServer();

function greeter(namespace: string): GraphNodeModel[] {
  return [{ node_name: 'greeting', namespace, identifier: 'greeter', inputs: { name: '${{ store.name }}' } }];
}

describe("upsertGraph takes the original SDK's call form", () => {
  const fake = new FakeStateManager();
  before(() => fake.start());
  after(() => fake.stop());

  const fakeClient = () => new StateManager('ns', { stateManagerUri: fake.url, key: 'k' });
  const graphCalls = (graph: string) => fake.calls.filter((call) => call.path.endsWith(`/graph/${graph}`));
  const graphReply = (graph: string, validation_status: string) => ({
    status: 200,
    body: { name: graph, nodes: [], secrets: {}, validation_status, validation_errors: [] },
  });

  test('(graphName, nodes, secrets, retryPolicy, storeConfig, validationTimeout, pollingInterval) upserts and validates', async () => {
    const ns = harness.namespace();
    await harness.runtime(ns, [Greeting]);
    const sm = harness.stateManager(ns);
    const graph = await sm.upsertGraph('greet', greeter(ns), {}, { max_retries: 1 }, { required_keys: ['name'] }, 60, 1);
    assert.equal(graph.validation_status, 'VALID');
    const stored = await sm.getGraph('greet');
    assert.deepEqual(stored.retry_policy, { max_retries: 1, strategy: 'EXPONENTIAL', backoff_factor: 2000, exponent: 2, max_delay: null });
    assert.deepEqual(stored.store_config, { required_keys: ['name'], default_values: {} });
    const { run_id } = await sm.trigger('greet', {}, { name: 'World' });
    assert.equal((await sm.waitForRun(run_id, 30_000)).status, 'SUCCESS');
  });

  test('our form (cron triggers, then options in ms) still works', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    const graph = await sm.upsertGraph('greet', greeter(ns), {}, undefined, { required_keys: ['name'], default_values: { name: 'cron' } },
      [{ expression: '0 9 * * 1-5' }], { validationTimeoutMs: 60_000, pollingIntervalMs: 1000 });
    assert.equal(graph.validation_status, 'VALID');
    const triggers = (await sm.getGraph('greet')).triggers ?? [];
    assert.deepEqual(triggers.map((trigger) => [trigger.type, trigger.value.expression]), [['CRON', '0 9 * * 1-5']]);
  });

  test('it re-reads the graph while PENDING and resolves with the VALID graph', async () => {
    fake.faults.set('polled', [graphReply('polled', 'PENDING'), graphReply('polled', 'PENDING'), graphReply('polled', 'VALID')]);
    const graph = await fakeClient().upsertGraph('polled', greeter('ns'), {}, undefined, undefined, 60, 0.001);
    assert.equal(graph.validation_status, 'VALID');
    assert.deepEqual(graphCalls('polled').map((call) => call.method), ['PUT', 'GET', 'GET']);
  });

  test('validationTimeout is in seconds: a graph PENDING for good fails after it, as PENDING', async () => {
    fake.standing.set('stuck', graphReply('stuck', 'PENDING'));
    const started = Date.now();
    await assert.rejects(
      fakeClient().upsertGraph('stuck', greeter('ns'), {}, undefined, undefined, 0.3, 0.01),
      (err: unknown) => err instanceof GraphValidationError && err.status === 'PENDING',
    );
    // A lower bound only: 0.3 read as milliseconds would fail almost at once.
    assert.ok(Date.now() - started >= 300, `failed after ${Date.now() - started} ms`);
    assert.ok(graphCalls('stuck').filter((call) => call.method === 'GET').length >= 1);
  });

  test('only pollingInterval may be given (validationTimeout undefined keeps its default)', async () => {
    fake.faults.set('later', [graphReply('later', 'PENDING'), graphReply('later', 'VALID')]);
    const graph = await fakeClient().upsertGraph('later', greeter('ns'), {}, undefined, undefined, undefined, 0.001);
    assert.equal(graph.validation_status, 'VALID');
  });

  test('what is sent has the models\' defaults filled', async () => {
    fake.faults.set('sent', [graphReply('sent', 'VALID')]);
    await fakeClient().upsertGraph('sent', greeter('ns'), {}, { strategy: 'FIXED' }, {}, 60, 1);
    const [put] = graphCalls('sent');
    assert.deepEqual(put?.body, {
      secrets: {},
      nodes: [{ node_name: 'greeting', namespace: 'ns', identifier: 'greeter', inputs: { name: '${{ store.name }}' }, next_nodes: null, unites: null, timeout_seconds: null, limits: [], concurrency: null, graph_name: null }],
      retry_policy: { max_retries: 3, strategy: 'FIXED', backoff_factor: 2000, exponent: 2, max_delay: null },
      store_config: { required_keys: [], default_values: {} },
    });
  });

  test('a 6th argument of neither form is refused naming both forms, before anything is sent', async () => {
    const sm = fakeClient();
    const before = fake.calls.length;
    for (const [sixth, seventh, pattern] of [
      ['60', undefined, /triggers \(6th argument\) must be an array of CronTrigger, or a number of seconds/],
      [-1, undefined, /validationTimeout \(6th argument\) must be a number of seconds >= 0/],
      [60, { pollingIntervalMs: 5 }, /pollingInterval \(7th argument\) must be a number of seconds/],
      [[], 5, /the 7th argument of upsertGraph must be UpsertOptions/],
    ] as const) {
      await assert.rejects(
        (sm.upsertGraph as (...args: unknown[]) => Promise<unknown>)('bad', greeter('ns'), {}, undefined, undefined, sixth, seventh),
        (err: unknown) => err instanceof GraphValidationError && pattern.test(err.message),
        `upsertGraph(..., ${JSON.stringify(sixth)}, ${JSON.stringify(seventh)})`,
      );
    }
    assert.equal(fake.calls.length, before);
  });
});

describe("the original SDK's helpers are exported", () => {
  test('isZodObjectSchema is true for zod objects only', () => {
    assert.equal(isZodObjectSchema(z.object({ name: z.string() })), true);
    for (const other of [z.string(), z.array(z.string()), { parse() {}, _def: {} }, {}, null, undefined, 'ZodObject']) {
      assert.equal(isZodObjectSchema(other), false, String(other));
    }
  });

  test('isZodStringSchema is true for plain zod strings (with checks), not wrapped ones', () => {
    assert.equal(isZodStringSchema(z.string()), true);
    assert.equal(isZodStringSchema(z.string().min(1)), true);
    for (const other of [z.string().default('x'), z.string().optional(), z.number(), z.object({}), 'text', null]) {
      assert.equal(isZodStringSchema(other), false, String(other));
    }
  });

  test('generateFlatSchema gives the flat schema a runtime registers, with its title', () => {
    const schema = generateFlatSchema(z.object({ name: z.string(), lang: z.string().default('en') }), 'Inputs');
    assert.deepEqual(schema, {
      type: 'object',
      properties: { name: { type: 'string' }, lang: { type: 'string', default: 'en' } },
      required: ['name'],
      title: 'Inputs',
    });
  });
});

describe("the original SDK's logger is exported", () => {
  const saved = { level: process.env.EXOSPHERE_LOG_LEVEL, disabled: process.env.EXOSPHERE_DISABLE_DEFAULT_LOGGING };
  afterEach(() => {
    mock.restoreAll();
    for (const [name, value] of [['EXOSPHERE_LOG_LEVEL', saved.level], ['EXOSPHERE_DISABLE_DEFAULT_LOGGING', saved.disabled]] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });

  /** The lines `logger` prints through console while `act` runs, by console method. */
  function printed(act: () => void): Record<string, string[]> {
    const lines: Record<string, string[]> = { debug: [], info: [], warn: [], error: [] };
    for (const method of ['debug', 'info', 'warn', 'error'] as const) {
      mock.method(console, method, (line: string) => lines[method]!.push(line));
    }
    act();
    mock.restoreAll();
    return lines;
  }

  test('LogLevel orders DEBUG < INFO < WARN < ERROR as numbers', () => {
    assert.deepEqual([LogLevel.DEBUG, LogLevel.INFO, LogLevel.WARN, LogLevel.ERROR], [0, 1, 2, 3]);
    assert.equal(LogLevel[LogLevel.WARN], 'WARN');
  });

  test('logger is the one Logger instance', () => {
    assert.equal(Logger.getInstance(), logger);
    assert.ok(logger instanceof Logger);
  });

  test("logger.level(name, message) prints 'date | LEVEL | name | message' at or above EXOSPHERE_LOG_LEVEL", () => {
    process.env.EXOSPHERE_LOG_LEVEL = 'WARN';
    delete process.env.EXOSPHERE_DISABLE_DEFAULT_LOGGING;
    const lines = printed(() => {
      logger.debug('MyNode', 'd');
      logger.info('MyNode', 'i');
      logger.warn('MyNode', 'w');
      logger.error('MyNode', 'e');
    });
    assert.deepEqual(lines.debug, []);
    assert.deepEqual(lines.info, []);
    assert.match(lines.warn![0] ?? '', /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \| WARN \| MyNode \| w$/);
    assert.match(lines.error![0] ?? '', /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \| ERROR \| MyNode \| e$/);
  });

  test('INFO is the level by default and for an unknown name; one argument is the message', () => {
    for (const level of [undefined, 'LOUD']) {
      if (level === undefined) delete process.env.EXOSPHERE_LOG_LEVEL;
      else process.env.EXOSPHERE_LOG_LEVEL = level;
      const lines = printed(() => {
        logger.debug('hidden');
        logger.info('shown');
      });
      assert.deepEqual(lines.debug, []);
      assert.match(lines.info![0] ?? '', / \| INFO \| exospherehost \| shown$/);
    }
  });

  test('EXOSPHERE_DISABLE_DEFAULT_LOGGING=true silences it', () => {
    process.env.EXOSPHERE_DISABLE_DEFAULT_LOGGING = 'true';
    const lines = printed(() => logger.error('MyNode', 'e'));
    assert.deepEqual(lines.error, []);
  });

  test('logger and console both fit where a Logger is asked for (a Runtime\'s logger)', async () => {
    process.env.EXOSPHERE_LOG_LEVEL = 'DEBUG';
    const ns = harness.namespace();
    const lines: string[] = [];
    mock.method(console, 'info', (line: string) => lines.push(line));
    const runtime = await harness.runtime(ns, [Greeting], { logger });
    await runtime.stop();
    assert.ok(lines.some((line) => / \| INFO \| exospherehost \| .*stopped/.test(line)), lines.join('\n'));
    const viaConsole: Logger = console;
    assert.equal(typeof viaConsole.info, 'function');
  });
});
