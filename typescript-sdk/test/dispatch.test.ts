/**
 * How the runtime takes work, against a real server: its next states come with the answers to its
 * results (eager dispatch), and `workers` bounds the `execute` calls running at once.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BaseNode } from 'exospherehost';
import { z } from 'zod';
import { useServer } from './helpers/env.js';

const harness = useServer();
const DEPTH = 8;

class Step extends BaseNode {
  static name = 'Step';
  static Inputs = z.object({ n: z.string() });
  static Outputs = z.object({ n: z.string() });
  async execute() {
    return { n: String(Number(this.inputs.n) + 1) };
  }
}

/** Runs `execute` calls until `workers` of them run at once, then lets them all go; keeps the most seen. */
const gate = { running: 0, most: 0, open: () => {}, opened: new Promise<void>(() => {}), workers: 3 };
gate.opened = new Promise<void>((resolve) => (gate.open = resolve));

class Gated extends BaseNode {
  static name = 'Gated';
  static Inputs = z.object({ i: z.string() });
  static Outputs = z.object({ i: z.string() });
  async execute() {
    gate.running += 1;
    gate.most = Math.max(gate.most, gate.running);
    if (gate.running === gate.workers) gate.open();
    await gate.opened;
    gate.running -= 1;
    return { i: this.inputs.i };
  }
}

async function counter(name: string, namespace: string): Promise<number> {
  const text = await (await fetch(`${harness.server.url}/metrics`, { headers: { 'x-api-key': harness.server.key } })).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{namespace="${namespace}",node="Step"}`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

describe('eager dispatch', () => {
  test('with the default arguments, every next state of a chain comes with the answer to its parent\'s result', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    await harness.runtime(ns, [Step]);
    const steps = Array.from({ length: DEPTH }, (_, i) => ({
      node_name: 'Step',
      namespace: ns,
      identifier: `step${i}`,
      inputs: { n: i === 0 ? '${{ store.n }}' : `\${{ step${i - 1}.outputs.n }}` },
      next_nodes: i + 1 < DEPTH ? [`step${i + 1}`] : [],
    }));
    await sm.upsertGraph('chain', steps, {}, undefined, { required_keys: ['n'] });
    const { run_id } = await sm.trigger('chain', {}, { n: '0' });
    assert.equal((await sm.waitForRun(run_id, 30_000)).status, 'SUCCESS');
    const states = await sm.getRunStates(run_id);
    assert.deepEqual(states.map((s) => Number(s.outputs.n)).sort((a, b) => a - b), Array.from({ length: DEPTH }, (_, i) => i + 1));
    // The root came from a claim; every later step with the answer to its parent's result.
    assert.equal(await counter('exosphere_claims_total', ns), DEPTH);
    assert.equal(await counter('exosphere_eager_claims_total', ns), DEPTH - 1);
  });
});

describe('workers', () => {
  test('the runtime fills every worker and never runs more execute calls at once', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    await harness.runtime(ns, [Gated], { workers: gate.workers });
    await sm.upsertGraph('gated', [{ node_name: 'Gated', namespace: ns, identifier: 'g', inputs: { i: '${{ store.i }}' } }], {}, undefined, {
      required_keys: ['i'],
    });
    const runs = await Promise.all(Array.from({ length: 4 * gate.workers }, (_, i) => sm.trigger('gated', {}, { i: String(i) })));
    for (const { run_id } of runs) assert.equal((await sm.waitForRun(run_id, 30_000)).status, 'SUCCESS');
    assert.equal(gate.most, gate.workers);
  });
});
