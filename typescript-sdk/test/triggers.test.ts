/** Idempotent triggers and bulk triggers through the SDK, against a real server. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BaseNode } from 'exospherehost';
import { z } from 'zod';
import { useServer } from './helpers/env.js';

const harness = useServer();

class Echo extends BaseNode {
  static name = 'Echo';
  static Inputs = z.object({ text: z.string() });
  static Outputs = z.object({ text: z.string() });
  async execute() {
    return { text: this.inputs.text };
  }
}

async function echoGraph(ns: string) {
  const sm = harness.stateManager(ns);
  await harness.runtime(ns, [Echo]);
  await sm.upsertGraph('echo', [{ node_name: 'Echo', namespace: ns, identifier: 'echo', inputs: { text: '${{ store.text }}' } }], {}, undefined, {
    required_keys: ['text'],
  });
  return sm;
}

describe('triggers', () => {
  test('a second trigger with the same idempotency key answers the first run', async () => {
    const sm = await echoGraph(harness.namespace());
    const first = await sm.trigger('echo', {}, { text: 'a' }, 0, undefined, 'order-1');
    const second = await sm.trigger('echo', {}, { text: 'a' }, 0, undefined, 'order-1');
    assert.equal(first.duplicate, false);
    assert.equal(second.run_id, first.run_id);
    assert.equal(second.duplicate, true);
    assert.equal((await sm.waitForRun(first.run_id, 20_000)).status, 'SUCCESS');
  });

  test('triggerMany starts one run per entry, in order, and honours keys', async () => {
    const sm = await echoGraph(harness.namespace());
    const started = await sm.triggerMany('echo', [
      { store: { text: 'a' }, idempotency_key: 'k' },
      { store: { text: 'b' } },
      { store: { text: 'c' }, idempotency_key: 'k' },
    ]);
    assert.equal(started.length, 3);
    assert.equal(started[2]?.run_id, started[0]?.run_id);
    assert.deepEqual(started.map((run) => run.duplicate), [false, false, true]);
    for (const run of started.slice(0, 2)) assert.equal((await sm.waitForRun(run.run_id, 20_000)).status, 'SUCCESS');
    const [state] = await sm.getRunStates(started[1]!.run_id);
    assert.deepEqual(state?.outputs, { text: 'b' });
  });

  test('triggerMany refuses a bad entry by its position', async () => {
    const sm = await echoGraph(harness.namespace());
    await assert.rejects(
      sm.triggerMany('echo', [{ store: { text: 'a' } }, { store: {} }]),
      (err: Error & { status?: number }) => err.status === 400 && / 400 runs\[1\]: /.test(err.message),
    );
  });
});
