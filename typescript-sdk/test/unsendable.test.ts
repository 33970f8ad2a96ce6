/**
 * What the server cannot take or refuses never stalls a runtime: outputs that are not valid
 * Unicode fail their state clearly, refused secrets and refused reports are given up, not retried.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import { BaseNode, Runtime, RetryStrategyEnum } from 'exospherehost';
import { z } from 'zod';
import { MemoryLogger, eventually, useServer } from './helpers/env.js';
import { FakeStateManager } from './helpers/fake-server.js';
import { firstProblem, sendableText } from '../src/sendable.js';

class ListFiles extends BaseNode {
  static name = 'ListFiles';
  static Inputs = z.object({ folder: z.string() });
  static Outputs = z.object({ path: z.string() });
  async execute() {
    return { path: `${this.inputs.folder}abc\udcff` };
  }
}

class Echo extends BaseNode {
  static name = 'Echo';
  static Inputs = z.object({ text: z.string() });
  static Outputs = z.object({ text: z.string() });
  async execute() {
    return { text: this.inputs.text };
  }
}

class Secretive extends BaseNode {
  static name = 'Secretive';
  static Outputs = z.object({ length: z.string() });
  static Secrets = z.object({ token: z.string() });
  async execute() {
    return { length: String(this.secrets.token.length) };
  }
}

class Failing extends BaseNode {
  static name = 'Failing';
  async execute(): Promise<void> {
    throw new Error('cannot read abc\ud800');
  }
}

describe('against a real server', () => {
  const harness = useServer();

  test('an output with a lone surrogate fails its state naming the field, and the runtime keeps working', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    const retryPolicy = { max_retries: 1, strategy: RetryStrategyEnum.FIXED, backoff_factor: 1 };
    await sm.upsertGraph('files', [{ node_name: 'ListFiles', namespace: ns, identifier: 'only', inputs: { folder: '' } }], {}, retryPolicy);
    await sm.upsertGraph('echo', [{ node_name: 'Echo', namespace: ns, identifier: 'only', inputs: { text: 'x' } }], {});
    // One worker: had the bad state stuck it, the next state would never run.
    await harness.runtime(ns, [ListFiles, Echo], { workers: 1 });

    const bad = await sm.trigger('files');
    assert.equal((await sm.waitForRun(bad.run_id, 60_000)).status, 'FAILED');
    const good = await sm.trigger('echo', { text: 'still working' });
    assert.equal((await sm.waitForRun(good.run_id, 60_000)).status, 'SUCCESS');

    const error =
      "UnsendableOutputError: Output field 'path' of node ListFiles is not valid Unicode (lone surrogate '\\udcff' at position 3): 'abc\\udcff'";
    const states = await sm.getRunStates(bad.run_id);
    assert.deepEqual(states.map((s) => [s.status, s.error]), [
      ['RETRY_CREATED', error],
      ['ERRORED', error],
    ]);
    assert.deepEqual((await sm.getRunStates(good.run_id))[0]?.outputs, { text: 'still working' });
  });
});

describe('against a scripted server', () => {
  const fake = new FakeStateManager();
  const runtimes: Runtime[] = [];
  before(() => fake.start());
  // One runtime per test: a runtime left running would claim the next test's states.
  afterEach(async () => {
    await Promise.all(runtimes.splice(0).map((runtime) => runtime.stop()));
    fake.faults.clear();
  });
  after(() => fake.stop());

  async function serve(logger: MemoryLogger): Promise<void> {
    const runtime = new Runtime('ns', 'rt', [Secretive, Failing, Echo], {
      stateManagerUri: fake.url,
      key: 'k',
      handleSignals: false,
      pollInterval: 20,
      shutdownGraceMs: 2_000,
      logger,
    });
    runtimes.push(runtime);
    await runtime.start();
  }

  test('secrets refused with 409 give the state up without running it or retrying', async () => {
    const logger = new MemoryLogger();
    fake.faults.set('secrets', [{ status: 409, body: { detail: 'Secrets of graph g cannot be decrypted; the state is ERRORED' } }]);
    await serve(logger);
    const stateId = fake.addState('Secretive');
    await eventually(async () => logger.lines.some((l) => l.includes(`Giving up state ${stateId}`)), 30_000, 'the state to be given up');
    const echoId = fake.addState('Echo', { text: 'next' });
    await eventually(async () => fake.callsTo(echoId, 'executed').length > 0, 30_000, 'the next state to be reported');
    const line = logger.lines.find((l) => l.includes(`Giving up state ${stateId}`));
    assert.match(line ?? '', /^ERROR .*409 Secrets of graph g cannot be decrypted; the state is ERRORED/);
    assert.equal(fake.callsTo(stateId, 'secrets').length, 1);
    for (const endpoint of ['executed', 'errored', 'release']) assert.deepEqual(fake.callsTo(stateId, endpoint), [], endpoint);
  });

  test('secrets failing with 500 again and again fail the state after a few attempts', async () => {
    const logger = new MemoryLogger();
    fake.faults.set('secrets', Array.from({ length: 50 }, () => ({ status: 500, body: { detail: 'internal server error' } })));
    await serve(logger);
    const stateId = fake.addState('Secretive');
    await eventually(async () => fake.callsTo(stateId, 'errored').length > 0, 30_000, 'the state to be reported errored');
    const { traceback, ...report } = fake.callsTo(stateId, 'errored')[0]?.body as Record<string, string>;
    assert.deepEqual(report, {
      error: `ApiError: Reading secrets for state ${stateId} failed: 500 internal server error`,
      lease_id: `lease-${stateId}`,
    });
    assert.match(traceback ?? '', /^ApiError: Reading secrets .*\n\s+at /);
    assert.equal(fake.callsTo(stateId, 'secrets').length, 5);
  });

  test('an error report the server refuses is dropped with a logged error, not retried', async () => {
    const logger = new MemoryLogger();
    fake.faults.set('errored', [{ status: 422, body: { detail: 'error: text must not contain NUL' } }]);
    await serve(logger);
    const stateId = fake.addState('Failing');
    await eventually(async () => logger.lines.some((l) => l.includes(`Could not report state ${stateId}`)), 30_000, 'the logged error');
    const echoId = fake.addState('Echo', { text: 'next' });
    await eventually(async () => fake.callsTo(echoId, 'executed').length > 0, 30_000, 'the next state to be reported');
    const reports = fake.callsTo(stateId, 'errored');
    assert.equal(reports.length, 1);
    // The lone surrogate in the node's error was escaped, so the report is valid Unicode.
    const { traceback, ...report } = reports[0]?.body as Record<string, string>;
    assert.deepEqual(report, { error: 'Error: cannot read abc\\ud800', lease_id: `lease-${stateId}` });
    assert.match(traceback ?? '', /^Error: cannot read abc\\ud800\n/); // the stack is escaped alike
    assert.ok(logger.lines.some((l) => l.startsWith('ERROR') && l.includes('422 error: text must not contain NUL')), logger.lines.join('\n'));
  });
});

describe('sendable text', () => {
  test('lone surrogates and NUL are escaped, valid surrogate pairs are kept', () => {
    assert.equal(sendableText('ok \u{1F600} lone \ud800 \udc00 end\u0000'), 'ok \u{1F600} lone \\ud800 \\udc00 end\\u0000');
    assert.equal(sendableText('\udc00\ud800'), '\\udc00\\ud800');
  });

  test('the first problem is named with its place in the value', () => {
    assert.deepEqual(firstProblem({ a: ['\u{1F600}', { b: 'x\u0000' }] }), {
      where: 'a[1].b',
      reason: "contains a NUL character (\\u0000) at position 1, which the state manager cannot store: 'x\\u0000'",
    });
    assert.equal(firstProblem({ a: ['\u{1F600}', 1, null] }), undefined);
  });
});
