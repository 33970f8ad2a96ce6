/** Waiting for a signal from TypeScript: `WaitForSignalSignal`, `this.signalPayload` and `sendSignal`. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BaseNode, ConflictError, NotFoundError, WaitForSignalSignal } from 'exospherehost';
import { z } from 'zod';
import { eventually, useServer } from './helpers/env.js';

const harness = useServer();
const waited = new Map<string, number>();

class Approve extends BaseNode {
  static name = 'Approve';
  static Inputs = z.object({ tag: z.string(), timeoutMs: z.string().default('') });
  static Outputs = z.object({ approved: z.string(), by: z.string() });
  async execute() {
    if (!this.signalPayload) {
      waited.set(this.inputs.tag, (waited.get(this.inputs.tag) ?? 0) + 1);
      const timeoutMs = this.inputs.timeoutMs ? Number(this.inputs.timeoutMs) : undefined;
      throw new WaitForSignalSignal('approval', { timeoutMs });
    }
    return { approved: this.signalPayload.approved ?? '', by: this.signalPayload.by ?? '' };
  }
}

describe('signals', () => {
  test('a waiting state holds no runtime and runs again with the payload sendSignal sent', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    await harness.runtime(ns, [Approve]);
    await sm.upsertGraph('approve', [{ node_name: 'Approve', namespace: ns, identifier: 'approve', inputs: { tag: ns } }], {});
    const { run_id } = await sm.trigger('approve');
    await eventually(async () => (await sm.getRunStates(run_id))[0]?.status === 'WAITING', 30_000, 'the state to wait');
    const [waiting] = await sm.getRunStates(run_id);
    assert.equal(waiting?.waiting_for, 'approval');
    assert.equal(waiting?.wait_timeout_at, null);

    assert.deepEqual(await sm.sendSignal(run_id, 'approval', { approved: 'yes', by: 'ada' }), {
      run_id,
      name: 'approval',
      woken: 1,
    });
    const run = await sm.waitForRun(run_id, 30_000);
    assert.equal(run.status, 'SUCCESS');
    const [done] = await sm.getRunStates(run_id);
    assert.deepEqual(done?.outputs, { approved: 'yes', by: 'ada' });
    assert.deepEqual(done?.signal, { approved: 'yes', by: 'ada' });
    assert.equal(waited.get(ns), 1);
    await assert.rejects(sm.sendSignal(run_id, 'approval', {}), (err: unknown) => err instanceof ConflictError && /SUCCESS/.test(err.message));
    await assert.rejects(sm.sendSignal('no-such-run', 'approval', {}), NotFoundError);
  });

  test('a wait that times out fails its attempt with the name of the signal', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    await harness.runtime(ns, [Approve]);
    const inputs = { tag: ns, timeoutMs: '100' };
    await sm.upsertGraph('late', [{ node_name: 'Approve', namespace: ns, identifier: 'approve', inputs }], {}, { max_retries: 0 });
    const { run_id } = await sm.trigger('late');
    const run = await sm.waitForRun(run_id, 30_000);
    assert.equal(run.status, 'FAILED');
    const [state] = await sm.getRunStates(run_id);
    assert.equal(state?.error, 'Timed out waiting for signal approval');
  });

  test('WaitForSignalSignal refuses names and time-outs the server would refuse', () => {
    assert.throws(() => new WaitForSignalSignal('no spaces'), RangeError);
    assert.throws(() => new WaitForSignalSignal('approval', { timeoutMs: 0 }), RangeError);
  });
});
