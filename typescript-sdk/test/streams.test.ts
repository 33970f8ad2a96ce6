/** Live streams from TypeScript: `this.stream(text)` in a node and `streamState` to follow it. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BaseNode, NotFoundError, type StreamChunk } from 'exospherehost';
import { z } from 'zod';
import { eventually, useServer } from './helpers/env.js';

const harness = useServer();
const gates = new Map<string, () => void>();
const opened = new Map<string, Promise<void>>();

class Talk extends BaseNode {
  static name = 'Talk';
  static Inputs = z.object({ tag: z.string(), count: z.string() });
  static Outputs = z.object({ said: z.string() });
  async execute() {
    const count = Number(this.inputs.count);
    for (let i = 0; i < count; i += 1) {
      if (i === count / 2) await opened.get(this.inputs.tag); // a test opens the gate once it read the first half
      await this.stream(`word${i} `);
    }
    return { said: String(count) };
  }
}

const words = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `word${from + i} `);

describe('live streams', () => {
  test('streamState follows a running node live and reads a finished one from offset 0', async () => {
    const ns = harness.namespace();
    opened.set(ns, new Promise<void>((resolve) => gates.set(ns, resolve)));
    const sm = harness.stateManager(ns);
    await harness.runtime(ns, [Talk]);
    await sm.upsertGraph('talk', [{ node_name: 'Talk', namespace: ns, identifier: 'talk', inputs: { tag: ns, count: '40' } }], {});
    const { run_id } = await sm.trigger('talk');
    await eventually(async () => (await sm.getRunStates(run_id))[0]?.status === 'QUEUED', 30_000, 'Talk to run');
    const stateId = (await sm.getRunStates(run_id))[0]?.state_id ?? '';
    const live: StreamChunk[] = [];
    for await (const chunk of sm.streamState(stateId)) {
      live.push(chunk);
      if (live.length === 20) {
        assert.equal((await sm.getRun(run_id)).status, 'PENDING'); // the node waits at its gate: this is live
        gates.get(ns)?.();
      }
    }
    assert.deepEqual(live.map((c) => c.text), words(0, 40));
    assert.deepEqual(live.map((c) => c.offset), [...Array(40).keys()]);
    assert.equal((await sm.waitForRun(run_id, 30_000)).status, 'SUCCESS');

    const again: string[] = [];
    for await (const chunk of sm.streamState(stateId, { fromOffset: 37 })) again.push(chunk.text);
    assert.deepEqual(again, words(37, 40));
    await assert.rejects(async () => {
      for await (const _ of sm.streamState('000000000000000000000000')) break;
    }, NotFoundError);
  });
});
