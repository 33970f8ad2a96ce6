/** Graph features end to end: fan-out, unites, store, retries, outputs, and upsert errors. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BaseNode, GraphValidationError, RetryStrategyEnum, UnitesStrategyEnum } from 'exospherehost';
import { z } from 'zod';
import { useServer } from './helpers/env.js';

const harness = useServer();

class Start extends BaseNode {
  static name = 'Start';
  static Inputs = z.object({ text: z.string() });
  static Outputs = z.object({ text: z.string() });
  async execute() {
    return { text: this.inputs.text };
  }
}

class Split extends BaseNode {
  static name = 'Split';
  static Inputs = z.object({ text: z.string() });
  static Outputs = z.object({ chunk: z.string() });
  async execute() {
    return this.inputs.text.split(',').map((chunk) => ({ chunk }));
  }
}

class Upper extends BaseNode {
  static name = 'Upper';
  static Inputs = z.object({ chunk: z.string(), prefix: z.string() });
  static Outputs = z.object({ upper: z.string() });
  async execute() {
    await new Promise((ok) => setTimeout(ok, 20 * this.inputs.chunk.length));
    return { upper: this.inputs.prefix + this.inputs.chunk.toUpperCase() };
  }
}

let collected = 0;
class Collect extends BaseNode {
  static name = 'Collect';
  static Inputs = z.object({ text: z.string(), prefix: z.string() });
  static Outputs = z.object({ done: z.string() });
  async execute() {
    collected += 1;
    return { done: `${this.inputs.prefix}${this.inputs.text}` };
  }
}

const attempts = new Map<string, number>();
class Flaky extends BaseNode {
  static name = 'Flaky';
  static Inputs = z.object({ key: z.string(), failures: z.string() });
  static Outputs = z.object({ attempt: z.string() });
  async execute() {
    const attempt = (attempts.get(this.inputs.key) ?? 0) + 1;
    attempts.set(this.inputs.key, attempt);
    if (attempt <= Number(this.inputs.failures)) throw new RangeError(`flaky attempt ${attempt}`);
    return { attempt: String(attempt) };
  }
}

class Shapes extends BaseNode {
  static name = 'Shapes';
  static Inputs = z.object({ mode: z.string() });
  static Outputs = z.object({ result: z.string() });
  async execute(): Promise<any> {
    switch (this.inputs.mode) {
      case 'nothing':
        return undefined;
      case 'missing-field':
        return { other: 'x' };
      case 'number':
        return { result: 5 };
      case 'throw-string':
        throw 'a plain string';
      default:
        return { result: this.inputs.mode };
    }
  }
}

describe('fan-out, unites and store', () => {
  test('a list of outputs fans out; a unites node runs once after every branch; store values reach inputs', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    await harness.runtime(ns, [Start, Split, Upper, Collect]);
    await sm.upsertGraph(
      'fan',
      [
        { node_name: 'Start', namespace: ns, identifier: 'start', inputs: { text: '${{ store.text }}' }, next_nodes: ['split'] },
        { node_name: 'Split', namespace: ns, identifier: 'split', inputs: { text: '${{ start.outputs.text }}' }, next_nodes: ['upper'] },
        {
          node_name: 'Upper',
          namespace: ns,
          identifier: 'upper',
          inputs: { chunk: '${{ split.outputs.chunk }}', prefix: '${{ store.prefix }}' },
          next_nodes: ['collect'],
        },
        {
          node_name: 'Collect',
          namespace: ns,
          identifier: 'collect',
          inputs: { text: 'joined ${{ start.outputs.text }}', prefix: '${{ store.prefix }}' },
          unites: { identifier: 'start', strategy: UnitesStrategyEnum.ALL_SUCCESS },
        },
      ],
      {},
      undefined,
      { required_keys: ['text'], default_values: { prefix: '>' } },
    );
    collected = 0;
    const { run_id } = await sm.trigger('fan', {}, { text: 'a,bb,ccc' });
    const run = await sm.waitForRun(run_id, 20_000);
    assert.equal(run.status, 'SUCCESS');
    const states = await sm.getRunStates(run_id);
    const of = (identifier: string) => states.filter((s) => s.identifier === identifier);
    assert.deepEqual(of('split').map((s) => s.outputs.chunk).sort(), ['a', 'bb', 'ccc']);
    assert.deepEqual(of('upper').map((s) => s.outputs.upper).sort(), ['>A', '>BB', '>CCC']);
    assert.equal(of('collect').length, 1);
    assert.deepEqual(of('collect')[0]?.outputs, { done: '>joined a,bb,ccc' });
    assert.equal(collected, 1);
    assert.ok(states.every((s) => s.status === 'SUCCESS'), JSON.stringify(states.map((s) => s.status)));
  });

  test('a required store key missing at trigger is refused with the server message', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    await sm.upsertGraph('needs-store', [{ node_name: 'Start', namespace: ns, identifier: 'start', inputs: { text: '${{ store.text }}' } }], {}, undefined, {
      required_keys: ['text'],
    });
    await assert.rejects(sm.trigger('needs-store'), (err: Error & { status?: number }) => err.name === 'ApiError' && err.status === 400 && /text/.test(err.message));
  });
});

describe('retries', () => {
  test('a failing node is retried by the graph policy (FIXED backoff) until it succeeds', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    await harness.runtime(ns, [Flaky]);
    const retryPolicy = { max_retries: 3, strategy: RetryStrategyEnum.FIXED, backoff_factor: 100 };
    await sm.upsertGraph('flaky', [{ node_name: 'Flaky', namespace: ns, identifier: 'f', inputs: { key: ns, failures: '2' } }], {}, retryPolicy);
    const started = Date.now();
    const { run_id } = await sm.trigger('flaky');
    assert.equal((await sm.waitForRun(run_id, 15_000)).status, 'SUCCESS');
    assert.ok(Date.now() - started >= 200, 'two retries wait the fixed backoff each');
    const states = await sm.getRunStates(run_id);
    assert.deepEqual(states.map((s) => [s.status, s.retry_count, s.error]), [
      ['RETRY_CREATED', 0, 'RangeError: flaky attempt 1'],
      ['RETRY_CREATED', 1, 'RangeError: flaky attempt 2'],
      ['SUCCESS', 2, null],
    ]);
    assert.deepEqual(states[2]?.outputs, { attempt: '3' });
  });

  test('when the retries are spent the run fails with the last error', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    await harness.runtime(ns, [Flaky]);
    await sm.upsertGraph('flaky', [{ node_name: 'Flaky', namespace: ns, identifier: 'f', inputs: { key: ns, failures: '9' } }], {}, {
      max_retries: 1,
      strategy: 'FIXED',
      backoff_factor: 50,
    });
    const { run_id } = await sm.trigger('flaky');
    const run = await sm.waitForRun(run_id, 15_000);
    assert.equal(run.status, 'FAILED');
    const states = await sm.getRunStates(run_id);
    assert.equal(states.at(-1)?.status, 'ERRORED');
    assert.equal(states.at(-1)?.error, 'RangeError: flaky attempt 2');
  });
});

describe('what execute returns', () => {
  const cases: [string, string, string | null, Record<string, string>][] = [
    ['nothing', 'SUCCESS', null, {}],
    ['missing-field', 'ERRORED', 'TypeError: Invalid outputs for node Shapes: result: Required', {}],
    ['number', 'ERRORED', 'TypeError: Invalid outputs for node Shapes: result: Expected string, received number', {}],
    ['throw-string', 'ERRORED', 'Error: a plain string', {}],
    ['fine', 'SUCCESS', null, { result: 'fine' }],
  ];
  for (const [mode, status, error, outputs] of cases) {
    test(`execute returning/throwing "${mode}" ends the state ${status}`, async () => {
      const ns = harness.namespace();
      const sm = harness.stateManager(ns);
      await harness.runtime(ns, [Shapes]);
      await sm.upsertGraph('shapes', [{ node_name: 'Shapes', namespace: ns, identifier: 's', inputs: { mode } }], {}, { max_retries: 0 });
      const { run_id } = await sm.trigger('shapes');
      await sm.waitForRun(run_id, 15_000);
      const [state] = await sm.getRunStates(run_id);
      assert.equal(state?.status, status);
      assert.equal(state?.error, error);
      assert.deepEqual(state?.outputs, outputs);
    });
  }
});

describe('upsert errors name the problem', () => {
  test('a structural error (unknown next node) is refused at once with the server detail', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    await assert.rejects(
      sm.upsertGraph('bad', [{ node_name: 'Start', namespace: ns, identifier: 'start', inputs: { text: 'x' }, next_nodes: ['nowhere'] }], {}),
      (err: unknown) => err instanceof GraphValidationError && err.status === 'INVALID' && err.errors.some((e) => e.includes('nowhere')),
    );
  });

  test('model errors are found before sending, all at once, naming node and field', async () => {
    const sm = harness.stateManager(harness.namespace());
    await assert.rejects(
      sm.upsertGraph('bad', [
        { node_name: '', namespace: 'n', identifier: 'store' },
        { node_name: 'X', namespace: 'n', identifier: 'x', inputs: { n: 5 as unknown as string }, next_nodes: ['a', 'a'] },
      ], {}, { max_retries: -1 }),
      (err: unknown) => {
        assert.ok(err instanceof GraphValidationError);
        assert.deepEqual(err.errors, [
          'node "store".node_name: Node name cannot be empty',
          "node \"store\".identifier: Node identifier cannot be reserved word 'store'",
          'node "x".inputs.n: Expected string, received number',
          'node "x".next_nodes: Next node identifiers are not unique',
          'retryPolicy.max_retries: Number must be greater than or equal to 0',
        ]);
        return true;
      },
    );
  });

  test('inputs that do not match a registered node make the graph INVALID, naming node and field', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    await harness.runtime(ns, [Upper]);
    await assert.rejects(
      sm.upsertGraph('bad', [{ node_name: 'Upper', namespace: ns, identifier: 'u', inputs: { chunk: 'x' } }], {}),
      (err: unknown) => err instanceof GraphValidationError && err.errors.some((e) => /prefix/.test(e) && /Upper/.test(e)),
    );
  });
});

describe('cron triggers', () => {
  test('a cron trigger sends its inputs and store, and the graph keeps them', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    const nodes = [{ node_name: 'Start', namespace: ns, identifier: 'start', inputs: { text: '${{ store.text }}' } }];
    // `text` is required without a default: only the trigger's store lets cron runs start.
    const trigger = { expression: '0 6 * * *', inputs: { text: 'ignored by the template' }, store: { text: 'from cron' } };
    const graph = await sm.upsertGraph('daily', nodes, {}, undefined, { required_keys: ['text'] }, [trigger]);
    const expected = [{ type: 'CRON', value: trigger }];
    assert.deepEqual(graph.triggers, expected);
    assert.deepEqual((await sm.getGraph('daily')).triggers, expected);
    await assert.rejects(
      sm.upsertGraph('daily', nodes, {}, undefined, { required_keys: ['text'] }, [{ expression: '0 6 * * *' }]),
      (err: unknown) => err instanceof GraphValidationError && err.errors.some((e) => /required store key/.test(e)),
    );
  });
});
