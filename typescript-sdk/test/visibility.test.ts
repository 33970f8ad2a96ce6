/** Where and how an attempt ran, through the TypeScript runtime: its runtime, duration and error stack. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BaseNode } from 'exospherehost';
import { z } from 'zod';
import { useServer } from './helpers/env.js';

const harness = useServer();

class Explode extends BaseNode {
  static name = 'Explode';
  static Inputs = z.object({ text: z.string() });
  static Outputs = z.object({ text: z.string() });
  async execute(): Promise<{ text: string }> {
    try {
      JSON.parse(this.inputs.text);
    } catch (err) {
      throw new RangeError('cannot read the input', { cause: err });
    }
    return { text: this.inputs.text };
  }
}

describe('attempts', () => {
  test('a failed state records its runtime, its duration and the error stack with its cause', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    await harness.runtime(ns, [Explode]);
    await sm.upsertGraph('explode', [{ node_name: 'Explode', namespace: ns, identifier: 'boom', inputs: { text: '${{ store.text }}' } }], {}, { max_retries: 0 }, {
      required_keys: ['text'],
    });
    const { run_id } = await sm.trigger('explode', {}, { text: 'not json' });
    const run = await sm.waitForRun(run_id, 20_000);
    assert.equal(run.status, 'FAILED');
    assert.ok(typeof run.duration_ms === 'number' && run.duration_ms >= 0 && run.finished_at !== null);
    const [state] = await sm.getRunStates(run_id);
    assert.equal(state?.error, 'RangeError: cannot read the input');
    assert.match(state?.runtime_name ?? '', /^runtime-\d+$/);
    assert.match(state?.runtime_instance ?? '', /^.+:\d+$/);
    assert.ok(typeof state?.duration_ms === 'number' && state.duration_ms >= 0);
    const traceback = state?.traceback ?? '';
    assert.match(traceback, /^RangeError: cannot read the input\n\s+at /);
    assert.match(traceback, /Caused by: SyntaxError: /);
    assert.match(traceback, /visibility\.test\.ts/);
  });
});
