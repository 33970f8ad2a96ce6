/** The runtime's upload of what a node streams, against a scripted server: a failed request sent again
 * from its first chunk, and every chunk stored before the attempt's result is reported. */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { BaseNode, Runtime } from 'exospherehost';
import { z } from 'zod';
import { MemoryLogger, eventually } from './helpers/env.js';
import { FakeStateManager } from './helpers/fake-server.js';

class Talk extends BaseNode {
  static name = 'Talk';
  static Outputs = z.object({ said: z.string() });
  async execute() {
    for (const word of ['Once ', 'upon ', 'a ', 'time']) await this.stream(word);
    return { said: 'yes' };
  }
}

const fake = new FakeStateManager();
before(() => fake.start());
after(() => fake.stop());

test('a failed upload is sent again from its first chunk, and the result waits for the stream', async () => {
  fake.faults.set('stream', [{ status: 503, body: { detail: 'restarting' } }]);
  fake.standing.set('stream', { status: 200, body: { attempt: 1, next_offset: 4 } });
  const stateId = fake.addState('Talk');
  const runtime = new Runtime('ns', 'rt', [Talk], {
    stateManagerUri: fake.url,
    key: 'k',
    handleSignals: false,
    pollInterval: 20,
    shutdownGraceMs: 2_000,
    logger: new MemoryLogger(),
  });
  await runtime.start();
  try {
    await eventually(async () => fake.callsTo(stateId, 'executed').length > 0, 30_000, 'the result');
    const uploads = fake.callsTo(stateId, 'stream');
    assert.equal(uploads.length, 2);
    const lines = (call: (typeof uploads)[number]) => String(call.body).split('\n').filter(Boolean).map((line) => JSON.parse(line));
    assert.deepEqual(uploads.map((call) => call.query), [
      { lease_id: `lease-${stateId}`, offset: '0' },
      { lease_id: `lease-${stateId}`, offset: '0' }, // sent again from its first chunk
    ]);
    assert.deepEqual(lines(uploads[1]!), ['Once ', 'upon ', 'a ', 'time']);
    const order = fake.calls.filter((call) => call.path.includes(stateId)).map((call) => call.path.split('/').at(-1));
    assert.ok(order.lastIndexOf('stream') < order.indexOf('executed'), `stream before the result: ${order.join(', ')}`);
  } finally {
    await runtime.stop();
  }
});
