/** A 10 MB output from one node to the next through a placeholder, with the TypeScript runtime. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { BaseNode } from 'exospherehost';
import { z } from 'zod';
import { useServer } from './helpers/env.js';

const harness = useServer();
const SIZE = 10_000_000;
const text = (size: number): string => 'abcdefghij'.repeat(size / 10);

class Make extends BaseNode {
  static name = 'Make';
  static Inputs = z.object({ size: z.string() });
  static Outputs = z.object({ data: z.string() });
  async execute(): Promise<{ data: string }> {
    return { data: text(Number(this.inputs.size)) };
  }
}

class Measure extends BaseNode {
  static name = 'Measure';
  static Inputs = z.object({ data: z.string() });
  static Outputs = z.object({ length: z.string(), sha256: z.string() });
  async execute(): Promise<{ length: string; sha256: string }> {
    const sha256 = createHash('sha256').update(this.inputs.data).digest('hex');
    return { length: String(this.inputs.data.length), sha256 };
  }
}

describe('large payloads', () => {
  test('a 10 MB output reaches the next node whole; the listing gives its size, not its text', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    await harness.runtime(ns, [Make, Measure]);
    const inputs: Record<string, string>[] = [{ size: '${{ store.size }}' }, { data: '${{ make.outputs.data }}' }];
    const nodes = [
      { node_name: 'Make', namespace: ns, identifier: 'make', inputs: inputs[0], next_nodes: ['measure'] },
      { node_name: 'Measure', namespace: ns, identifier: 'measure', inputs: inputs[1] },
    ];
    await sm.upsertGraph('hop', nodes, {}, { max_retries: 0 }, { required_keys: ['size'] });
    const { run_id } = await sm.trigger('hop', {}, { size: String(SIZE) });
    assert.equal((await sm.waitForRun(run_id, 120_000)).status, 'SUCCESS');
    const states = await sm.getRunStates(run_id);
    const sha256 = createHash('sha256').update(text(SIZE)).digest('hex');
    const measured = states.find((s) => s.identifier === 'measure');
    assert.deepEqual(measured?.outputs, { length: String(SIZE), sha256 });
    const made = states.find((s) => s.identifier === 'make');
    assert.deepEqual(made?.outputs, {});
    assert.deepEqual(made?.large_outputs, { data: { bytes: SIZE, sha256 } });
  });
});
