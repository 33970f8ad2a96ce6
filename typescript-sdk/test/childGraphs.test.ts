/** Child graphs from TypeScript: a graph node with `graph_name` (no `node_name`) runs that graph as a child run. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BaseNode } from 'exospherehost';
import { z } from 'zod';
import { useServer } from './helpers/env.js';

const harness = useServer();

class Shout extends BaseNode {
  static name = 'Shout';
  static Inputs = z.object({ text: z.string() });
  static Outputs = z.object({ text: z.string() });
  async execute() {
    return { text: this.inputs.text.toUpperCase() };
  }
}

describe('child graphs', () => {
  test('a node naming a graph runs it as a child run and gets its final outputs', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    await harness.runtime(ns, [Shout]);
    await sm.upsertGraph('shout', [{ node_name: 'Shout', namespace: ns, identifier: 'shout', inputs: { text: '' } }], {});
    await sm.upsertGraph(
      'twice',
      [
        { node_name: 'Shout', namespace: ns, identifier: 'first', inputs: { text: '${{ store.text }}' }, next_nodes: ['again'] },
        { graph_name: 'shout', namespace: ns, identifier: 'again', inputs: { text: '${{ first.outputs.text }} too' } },
      ],
      {},
      undefined,
      { required_keys: ['text'] },
    );
    const { run_id } = await sm.trigger('twice', {}, { text: 'hi' });
    const run = await sm.waitForRun(run_id, 30_000);
    assert.equal(run.status, 'SUCCESS');
    assert.equal(run.parent_run_id, null);
    const again = (await sm.getRunStates(run_id)).find((s) => s.identifier === 'again');
    assert.equal(again?.node_name, 'shout'); // a node naming a graph is labelled with its name
    assert.deepEqual(again?.outputs, { text: 'HI TOO' });
    const [child] = (await sm.getRun(run_id)).child_runs ?? [];
    assert.equal(child?.graph_name, 'shout');
    assert.equal(child?.parent_state_id, again?.state_id);
    const childRun = await sm.getRun(child?.run_id ?? '');
    assert.equal(childRun.parent_run_id, run_id);
  });

  test('a graph naming a child graph that does not exist is refused naming it', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    const nodes = [
      { node_name: 'Shout', namespace: ns, identifier: 'first', inputs: { text: 'x' }, next_nodes: ['c'] },
      { graph_name: 'nowhere', namespace: ns, identifier: 'c' },
    ];
    await assert.rejects(sm.upsertGraph('broken', nodes, {}), (err: unknown) => /names graph 'nowhere', which does not exist/.test(String(err)));
  });
});
