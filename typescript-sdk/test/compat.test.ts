/**
 * Drop-in for the original ExosphereHost TypeScript SDK's users: its call forms, model defaults and
 * exports work here as they did there.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import {
  GraphNodeModel,
  RetryPolicyModel,
  StoreConfigModel,
  UnitesModel,
} from 'exospherehost';
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
  ];

  test('each model parses a payload exactly as the Python SDK\'s model does', async () => {
    const python = await pythonModels(cases.map(([name, , fields]) => [name, fields]));
    cases.forEach(([name, model, fields], index) => {
      assert.deepEqual(model.parse(fields), python[index], `${name} from ${JSON.stringify(fields)}`);
    });
  });
});
