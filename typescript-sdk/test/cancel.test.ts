/** Cancelling a run from TypeScript: `cancelRun`, and the `AbortSignal` handed to `execute`. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BaseNode, ConflictError, NotFoundError } from 'exospherehost';
import { z } from 'zod';
import { eventually, useServer } from './helpers/env.js';

const harness = useServer();
const aborted = new Map<string, unknown>();
const begun = new Set<string>();

class Waits extends BaseNode {
  static name = 'Waits';
  static Inputs = z.object({ tag: z.string() });
  static Outputs = z.object({ tag: z.string() });
  async execute(signal: AbortSignal) {
    begun.add(this.inputs.tag);
    // Never ends by itself: only the signal ends it.
    await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    aborted.set(this.inputs.tag, signal.reason);
    return { tag: this.inputs.tag };
  }
}

class Quick extends BaseNode {
  static name = 'Quick';
  static Inputs = z.object({ tag: z.string() });
  static Outputs = z.object({ tag: z.string() });
  async execute() {
    return { tag: this.inputs.tag };
  }
}

describe('cancel', () => {
  test('cancelRun aborts the signal execute was given, and the run ends CANCELLED', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    await harness.runtime(ns, [Waits], { leaseMs: 3_000 }); // a heartbeat every second
    await sm.upsertGraph('waits', [{ node_name: 'Waits', namespace: ns, identifier: 'waits', inputs: { tag: ns } }], {});
    const { run_id } = await sm.trigger('waits');
    await eventually(async () => begun.has(ns), 30_000, 'execute to start');

    const answer = await sm.cancelRun(run_id, 'not needed');
    assert.deepEqual(answer, { run_id, status: 'CANCELLED', cancelled_states: 1, reason: 'not needed' });
    await eventually(async () => aborted.has(ns), 30_000, 'the runtime to abort the signal');
    assert.match(String(aborted.get(ns)), /CANCELLED \(Run cancelled: not needed\)/);

    const run = await sm.getRun(run_id);
    assert.equal(run.status, 'CANCELLED');
    assert.equal(run.cancel_reason, 'not needed');
    assert.deepEqual(await sm.cancelRun(run_id), answer); // twice: the same answer
    const [state] = await sm.getRunStates(run_id);
    assert.equal(state?.status, 'CANCELLED'); // the result the node returned after the abort was not applied
  });

  test('cancelRun rejects a finished run with ConflictError and an unknown one with NotFoundError', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    await harness.runtime(ns, [Quick]);
    await sm.upsertGraph('quick', [{ node_name: 'Quick', namespace: ns, identifier: 'quick', inputs: { tag: ns } }], {});
    const { run_id } = await sm.trigger('quick');
    assert.equal((await sm.waitForRun(run_id, 30_000)).status, 'SUCCESS');
    await assert.rejects(sm.cancelRun(run_id), (err: unknown) => err instanceof ConflictError && /is SUCCESS/.test(err.message));
    await assert.rejects(sm.cancelRun('no-such-run'), NotFoundError);
  });

  test('a run triggered with deadlineSeconds is cancelled when it passes', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    // No runtime serves Waits here: the run would wait for ever.
    await sm.upsertGraph('late', [{ node_name: 'Waits', namespace: ns, identifier: 'waits', inputs: { tag: ns } }], {});
    const { run_id } = await sm.trigger('late', undefined, undefined, 0, 0.5);
    const run = await sm.waitForRun(run_id, 30_000);
    assert.equal(run.status, 'CANCELLED');
    assert.equal(run.cancel_reason, 'deadline exceeded');
  });
});
