/** Usage a node reports with `reportUsage`, through the TypeScript runtime: kept with each attempt, a failed one's too. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BaseNode } from 'exospherehost';
import { z } from 'zod';
import { useServer } from './helpers/env.js';

const harness = useServer();

class Ask extends BaseNode {
  static name = 'Ask';
  static Inputs = z.object({ question: z.string() });
  static Outputs = z.object({ answer: z.string() });
  async execute(): Promise<{ answer: string }> {
    this.reportUsage({ inputTokens: 120, requests: 1 });
    this.reportUsage({ outputTokens: 30, costUsd: 0.5 });
    if (this.inputs.question === 'fail') throw new Error('the provider answered nonsense');
    return { answer: `answer to ${this.inputs.question}` };
  }
}

class BadReport extends BaseNode {
  static name = 'BadReport';
  static Inputs = z.object({ question: z.string() });
  static Outputs = z.object({ answer: z.string() });
  async execute(): Promise<{ answer: string }> {
    this.reportUsage({ inputTokens: 1.5 });
    return { answer: 'never' };
  }
}

describe('usage', () => {
  test('what a node reports is summed over the attempt and kept with it, a failed attempt too', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    await harness.runtime(ns, [Ask]);
    const node = { node_name: 'Ask', namespace: ns, identifier: 'ask', inputs: { question: '${{ store.question }}' } };
    await sm.upsertGraph('ask', [node], {}, { max_retries: 0 }, { required_keys: ['question'] });
    const expected = { input_tokens: 120, output_tokens: 30, requests: 1, cost_usd: 0.5 };
    for (const [question, status] of [
      ['why', 'SUCCESS'],
      ['fail', 'FAILED'],
    ] as const) {
      const { run_id } = await sm.trigger('ask', {}, { question });
      const run = await sm.waitForRun(run_id, 20_000);
      assert.equal(run.status, status);
      const [state] = await sm.getRunStates(run_id);
      assert.deepEqual(state?.usage, expected);
    }
  });

  test('a bad report fails the attempt with a message saying what is wrong', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    await harness.runtime(ns, [BadReport]);
    const node = { node_name: 'BadReport', namespace: ns, identifier: 'bad', inputs: { question: 'q' } };
    await sm.upsertGraph('bad', [node], {}, { max_retries: 0 });
    const { run_id } = await sm.trigger('bad', {});
    const run = await sm.waitForRun(run_id, 20_000);
    assert.equal(run.status, 'FAILED');
    const [state] = await sm.getRunStates(run_id);
    assert.equal(state?.error, 'RangeError: inputTokens must be a non-negative integer, got 1.5');
    assert.equal(state?.usage, null);
  });
});
