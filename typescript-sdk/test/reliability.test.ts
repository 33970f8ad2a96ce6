/** The runtime survives what production throws at it: server restarts, long nodes, shutdowns. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BaseNode } from 'exospherehost';
import { z } from 'zod';
import { MemoryLogger, eventually, useServer } from './helpers/env.js';

const harness = useServer();
const started = new Set<string>();

class Sleepy extends BaseNode {
  static name = 'Sleepy';
  static Inputs = z.object({ ms: z.string(), tag: z.string().default('') });
  static Outputs = z.object({ slept: z.string() });
  async execute() {
    started.add(this.inputs.tag);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, Number(this.inputs.ms));
      this.signal.addEventListener('abort', () => (clearTimeout(timer), resolve()));
    });
    return { slept: this.inputs.ms };
  }
}

class Fan extends BaseNode {
  static name = 'Fan';
  static Inputs = z.object({ width: z.string(), tag: z.string() });
  static Outputs = z.object({ tag: z.string() });
  async execute() {
    return Array.from({ length: Number(this.inputs.width) }, (_, i) => ({ tag: `${this.inputs.tag}-${i}` }));
  }
}

class After extends BaseNode {
  static name = 'After';
  static Inputs = z.object({ slept: z.string() });
  static Outputs = z.object({ done: z.string() });
  async execute() {
    return { done: `after ${this.inputs.slept}` };
  }
}

describe('server restart', () => {
  test('a run completes when the server is killed (SIGKILL) mid-node and restarted on the same database', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    await harness.runtime(ns, [Sleepy, After]);
    await sm.upsertGraph('restart', [
      { node_name: 'Sleepy', namespace: ns, identifier: 'sleep', inputs: { ms: '1500', tag: ns }, next_nodes: ['after'] },
      { node_name: 'After', namespace: ns, identifier: 'after', inputs: { slept: '${{ sleep.outputs.slept }}' } },
    ], {});
    const { run_id } = await sm.trigger('restart');
    await eventually(async () => started.has(ns), 10_000, 'the node to start');
    await harness.server.kill();
    await new Promise((ok) => setTimeout(ok, 500));
    await harness.server.restart();
    const run = await sm.waitForRun(run_id, 30_000);
    assert.equal(run.status, 'SUCCESS');
    const states = await sm.getRunStates(run_id);
    assert.deepEqual(states.map((s) => [s.identifier, s.status, s.retry_count]), [
      ['sleep', 'SUCCESS', 0],
      ['after', 'SUCCESS', 0],
    ]);
    assert.deepEqual(states[1]?.outputs, { done: 'after 1500' });
  });
});

describe('server stopped with SIGTERM', () => {
  test('a busy runtime logs "server unavailable", reconnects quietly and every state succeeds once', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    const logger = new MemoryLogger();
    await harness.runtime(ns, [Fan, Sleepy, After], { logger, workers: 4 });
    await sm.upsertGraph('busy', [
      { node_name: 'Fan', namespace: ns, identifier: 'fan', inputs: { width: '${{ store.width }}', tag: ns }, next_nodes: ['sleep'] },
      { node_name: 'Sleepy', namespace: ns, identifier: 'sleep', inputs: { ms: '50', tag: '${{ fan.outputs.tag }}' }, next_nodes: ['after'] },
      { node_name: 'After', namespace: ns, identifier: 'after', inputs: { slept: '${{ sleep.outputs.slept }}' } },
    ], {}, undefined, { required_keys: ['width'] });
    const width = 40;
    const { run_id } = await sm.trigger('busy', {}, { width: String(width) });
    await eventually(async () => [...started].filter((tag) => tag.startsWith(`${ns}-`)).length >= 5, 20_000, 'work to run');
    await harness.server.stop(); // SIGTERM mid fan-out
    await eventually(async () => logger.lines.some((l) => l.includes('server unavailable')), 20_000, 'the runtime to notice');
    await harness.server.restart();
    const run = await sm.waitForRun(run_id, 60_000);
    assert.equal(run.status, 'SUCCESS');
    const states = await sm.getRunStates(run_id);
    assert.ok(states.every((s) => s.status === 'SUCCESS'), JSON.stringify(states.map((s) => s.status)));
    const tags = states.filter((s) => s.identifier === 'sleep').map((s) => String(s.inputs.tag)).sort();
    assert.deepEqual(tags, Array.from({ length: width }, (_, i) => `${ns}-${i}`).sort()); // each branch once
    const noise = [...logger.lines, ...harness.server.log().split('\n')].filter((l) => /^ERROR|Traceback|\b500\b|"level": "error"/.test(l));
    assert.deepEqual(noise, []);
  });
});

describe('leases', () => {
  test('heartbeats keep the lease of a node that runs longer than the lease', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    await harness.runtime(ns, [Sleepy], { leaseMs: 3_000 });
    await sm.upsertGraph('long', [{ node_name: 'Sleepy', namespace: ns, identifier: 's', inputs: { ms: '4500' } }], {});
    const { run_id } = await sm.trigger('long');
    assert.equal((await sm.waitForRun(run_id, 20_000)).status, 'SUCCESS');
    const states = await sm.getRunStates(run_id);
    assert.deepEqual(states.map((s) => [s.status, s.retry_count, s.error]), [['SUCCESS', 0, null]]);
  });
});

describe('graceful shutdown', () => {
  test('stop() lets the running node finish and hands unstarted claims back without spending a retry', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    await sm.upsertGraph('g', [{ node_name: 'Sleepy', namespace: ns, identifier: 's', inputs: { ms: '800', tag: '' } }], {});
    const runs = await Promise.all([1, 2, 3].map((i) => sm.trigger('g', { ms: '800', tag: `${ns}-${i}` })));
    const logger = new MemoryLogger();
    // One worker plus one prefetched state: two claimed, one running.
    const runtime = await harness.runtime(ns, [Sleepy], { workers: 1, batchSize: 4, logger });
    await eventually(async () => [1, 2, 3].some((i) => started.has(`${ns}-${i}`)), 10_000, 'a node to start');
    await new Promise((ok) => setTimeout(ok, 100));
    await runtime.stop();
    assert.ok(logger.lines.some((l) => /handing back 1 unstarted state\(s\), waiting up to \d+ ms for 1 running/.test(l)), logger.lines.join('\n'));
    const statuses = await Promise.all(runs.map(async (r) => (await sm.getRunStates(r.run_id))[0]?.status));
    assert.deepEqual(statuses.filter((s) => s === 'SUCCESS').length, 1, JSON.stringify(statuses));
    assert.deepEqual(statuses.filter((s) => s === 'CREATED').length, 2, JSON.stringify(statuses));

    await harness.runtime(ns, [Sleepy], { workers: 2 });
    for (const run of runs) assert.equal((await sm.waitForRun(run.run_id, 15_000)).status, 'SUCCESS');
    for (const run of runs) assert.equal((await sm.getRunStates(run.run_id))[0]?.retry_count, 0);
  });

  test('a node still running when the grace period ends is aborted and its state handed back', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    const runtime = await harness.runtime(ns, [Sleepy], { shutdownGraceMs: 200 });
    await sm.upsertGraph('g', [{ node_name: 'Sleepy', namespace: ns, identifier: 's', inputs: { ms: '20000', tag: ns } }], {});
    const { run_id } = await sm.trigger('g');
    await eventually(async () => started.has(ns), 10_000, 'the node to start');
    const stopping = Date.now();
    await runtime.stop();
    assert.ok(Date.now() - stopping < 3_000, 'stop() returned soon after the grace period');
    const [state] = await sm.getRunStates(run_id);
    assert.equal(state?.status, 'CREATED');
    assert.equal(state?.retry_count, 0);
  });
});

describe('unreachable server', () => {
  test('start() keeps retrying registration until the server is back, then works', async () => {
    const ns = harness.namespace();
    const sm = harness.stateManager(ns);
    await sm.upsertGraph('g', [{ node_name: 'After', namespace: ns, identifier: 'a', inputs: { slept: 'x' } }], {});
    await harness.server.kill();
    const logger = new MemoryLogger();
    const starting = harness.runtime(ns, [After], { logger });
    await new Promise((ok) => setTimeout(ok, 1_000));
    await harness.server.restart();
    await starting;
    assert.ok(logger.lines.some((l) => l.startsWith('WARN Registering nodes') && /ECONNREFUSED/.test(l)), logger.lines.join('\n'));
    const { run_id } = await sm.trigger('g');
    assert.equal((await sm.waitForRun(run_id, 15_000)).status, 'SUCCESS');
  });

  test('a wrong API key makes start() reject with an AuthenticationError', async () => {
    const ns = harness.namespace();
    await assert.rejects(harness.runtime(ns, [After], { key: 'wrong-key' }), (err: Error & { status?: number }) => {
      assert.equal(err.name, 'AuthenticationError');
      assert.equal(err.status, 401);
      assert.match(err.message, /Registering nodes of runtime "runtime-\d+" failed: 401 Invalid API key/);
      return true;
    });
  });
});
