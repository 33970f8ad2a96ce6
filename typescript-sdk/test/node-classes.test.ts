/** Node classes and settings are checked when a Runtime is constructed, all problems at once. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { readFileSync } from 'node:fs';
import { BaseNode, ConfigurationError, PruneSignal, ReQueueAfterSignal, Runtime, StateManager, VERSION } from 'exospherehost';
import { z } from 'zod';

const options = { stateManagerUri: 'http://127.0.0.1:9', key: 'k', handleSignals: false };

class Good extends BaseNode {
  static name = 'good';
  static Inputs = z.object({ a: z.string(), b: z.string().default('x') });
  static Outputs = z.object({ c: z.string() });
  static Secrets = z.object({ token: z.string() });
  async execute() {
    return { c: this.inputs.a };
  }
}

class Bad extends BaseNode {
  static name = 'bad';
  static Inputs = z.object({ count: z.number(), maybe: z.string().optional(), ok: z.string() });
  static Outputs = z.object({ list: z.array(z.string()) });
  static Secrets = { token: 'not a schema' } as unknown as z.AnyZodObject;
  async execute() {}
}

function problemsOf(make: () => unknown): string[] {
  try {
    make();
  } catch (err) {
    assert.ok(err instanceof ConfigurationError, String(err));
    return err.problems;
  }
  assert.fail('expected a ConfigurationError');
}

describe('Runtime construction', () => {
  test('string fields, with or without default, are accepted', () => {
    assert.doesNotThrow(() => new Runtime('ns', 'rt', [Good], options));
  });

  test('every problem of every node class is reported at once, naming class and field', () => {
    const problems = problemsOf(() => new Runtime('ns', 'rt', [Good, Bad, Good, new Good() as never], options));
    assert.deepEqual(problems, [
      'Bad ("bad").Inputs field "count" must be z.string() or z.string().default(...), got number (v1 nodes carry strings only)',
      `Bad ("bad").Inputs field "maybe" is optional: give it a default instead, z.string().default('') (v1 nodes carry strings only)`,
      'Bad ("bad").Outputs field "list" must be z.string() or z.string().default(...), got array (v1 nodes carry strings only)',
      'Bad ("bad").Secrets must be a zod object (z.object({...})), got an object',
      'Duplicate node name "good": node names must be unique in a runtime',
      'an instance of good is not a subclass of BaseNode (pass the class itself, not an instance)',
    ]);
  });

  test('settings problems are reported together with node problems', () => {
    const saved = process.env.EXOSPHERE_STATE_MANAGER_URI;
    delete process.env.EXOSPHERE_STATE_MANAGER_URI;
    try {
      const problems = problemsOf(() => new Runtime('', 'rt', [], { batchSize: 0, workers: 1.5, leaseMs: 10 }));
      assert.deepEqual(problems, [
        'namespace must be a non-empty string, got ""',
        'stateManagerUri is not set: pass it or set EXOSPHERE_STATE_MANAGER_URI',
        'batchSize must be an integer from 1 to 1000, got 0',
        'workers must be an integer from 1 to 10000, got 1.5',
        'leaseMs must be a number of milliseconds from 3000 to 86400000, got 10',
        'nodes must list at least one node class',
      ]);
    } finally {
      if (saved !== undefined) process.env.EXOSPHERE_STATE_MANAGER_URI = saved;
    }
  });

  test('the URI and key fall back to EXOSPHERE_STATE_MANAGER_URI and EXOSPHERE_API_KEY', () => {
    process.env.EXOSPHERE_STATE_MANAGER_URI = 'http://127.0.0.1:9';
    try {
      assert.doesNotThrow(() => new Runtime('ns', 'rt', [Good], { handleSignals: false }));
      assert.doesNotThrow(() => new StateManager('ns'));
    } finally {
      delete process.env.EXOSPHERE_STATE_MANAGER_URI;
    }
  });

  test('stop() before start() resolves at once, and so does join()', async () => {
    const runtime = new Runtime('ns', 'rt', [Good], options);
    await runtime.stop();
    await runtime.join();
  });
});

describe('signals', () => {
  test('ReQueueAfterSignal takes a positive delay in milliseconds, rounded up', () => {
    assert.equal(new ReQueueAfterSignal(1500).delayMs, 1500);
    assert.equal(new ReQueueAfterSignal(0.2).delayMs, 1);
    assert.throws(() => new ReQueueAfterSignal(0), RangeError);
    assert.throws(() => new ReQueueAfterSignal(Number.NaN), RangeError);
  });

  test('PruneSignal carries its data', () => {
    assert.deepEqual(new PruneSignal().data, {});
    assert.deepEqual(new PruneSignal({ reason: 'dup' }).data, { reason: 'dup' });
  });
});

test('VERSION matches package.json', () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  assert.equal(VERSION, pkg.version);
});
