/** Following runs: watchRun streams every change and ends when the run finishes; waitForRun waits on it. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { NotFoundError, type RunEvent, RunTimeoutError } from 'exospherehost';
import { parseEventStream } from '../src/http.js';
import { useServer } from './helpers/env.js';

const harness = useServer();

/** The wire, as a runtime speaks it: register a node, claim its states, report results. */
function wire(ns: string) {
  const call = async (method: string, path: string, json?: unknown) => {
    const response = await fetch(`${harness.server.url}/v0/namespace/${ns}${path}`, {
      method,
      headers: { 'x-api-key': harness.server.key, 'content-type': 'application/json' },
      body: json === undefined ? undefined : JSON.stringify(json),
    });
    assert.ok(response.ok, `${method} ${path}: ${response.status} ${await response.clone().text()}`);
    return (await response.json()) as Record<string, unknown>;
  };
  const schema = { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] };
  return {
    register: () =>
      call('PUT', '/nodes/', {
        runtime_name: 'wire',
        nodes: [{ name: 'Echo', inputs_schema: schema, outputs_schema: schema, secrets: [] }],
      }),
    claim: async () => {
      for (;;) {
        const { states } = (await call('POST', '/states/enqueue', { nodes: ['Echo'], batch_size: 10, wait_ms: 5_000 })) as {
          states: { state_id: string; lease_id: string }[];
        };
        if (states.length) return states;
      }
    },
    executed: (state: { state_id: string; lease_id: string }, text: string) =>
      call('POST', `/state/${state.state_id}/executed`, { outputs: [{ text }], lease_id: state.lease_id }),
  };
}

async function echoGraph(ns: string): Promise<ReturnType<typeof wire>> {
  const api = wire(ns);
  await api.register();
  await harness.stateManager(ns).upsertGraph('echo', [{ node_name: 'Echo', namespace: ns, identifier: 'echo', inputs: { text: 'hi' } }], {});
  return api;
}

/** Take events from the iterator until one satisfies `done`; the iterator stays open for more. */
async function until(events: AsyncIterator<RunEvent>, done: (event: RunEvent) => boolean): Promise<RunEvent[]> {
  const seen: RunEvent[] = [];
  for (;;) {
    const next = await events.next();
    assert.ok(!next.done, `the stream ended early after ${JSON.stringify(seen.map((e) => [e.event, e.version]))}`);
    seen.push(next.value);
    if (done(next.value)) return seen;
  }
}

const countOf = (event: RunEvent, status: string) => event.nodes.reduce((sum, node) => sum + (node.counts[status] ?? 0), 0);

describe('watchRun', () => {
  test('yields a snapshot, then each change, and ends with the finished event', async () => {
    const ns = harness.namespace();
    const api = await echoGraph(ns);
    const sm = harness.stateManager(ns);
    const { run_id } = await sm.trigger('echo');
    const events = sm.watchRun(run_id);
    const [first] = await until(events, () => true);
    assert.equal(first?.event, 'snapshot');
    assert.equal(first?.status, 'PENDING');
    assert.equal(countOf(first!, 'CREATED'), 1);

    const [state] = await api.claim();
    const queued = await until(events, (e) => countOf(e, 'QUEUED') === 1);
    assert.equal(queued.at(-1)?.event, 'change');

    await api.executed(state!, 'done');
    const rest = await until(events, (e) => e.finished);
    const last = rest.at(-1)!;
    assert.deepEqual([last.event, last.status, last.success_count, last.total_count], ['finished', 'SUCCESS', 1, 1]);
    assert.equal((await events.next()).done, true);
    const versions = [first!, ...queued, ...rest].map((e) => e.version);
    assert.deepEqual(versions, [...versions].sort((a, b) => a - b));
    assert.equal(new Set(versions).size, versions.length);
  });

  test('resumes across a server restart without repeating an older event', async () => {
    const ns = harness.namespace();
    const api = await echoGraph(ns);
    const sm = harness.stateManager(ns);
    const { run_id } = await sm.trigger('echo');
    const events = sm.watchRun(run_id);
    const before = await until(events, () => true);
    await harness.server.kill();
    await harness.server.restart();
    const [state] = await api.claim();
    await api.executed(state!, 'after restart');
    const after = await until(events, (e) => e.finished);
    const versions = [...before, ...after].map((e) => e.version);
    assert.deepEqual(versions, [...new Set(versions)].sort((a, b) => a - b));
    assert.equal(after.at(-1)?.status, 'SUCCESS');
  });

  test('an unknown run is a NotFoundError', async () => {
    const sm = harness.stateManager(harness.namespace());
    await assert.rejects(sm.watchRun('no-such-run').next(), NotFoundError);
  });
});

describe('waitForRun', () => {
  test('returns the run summary once the run has finished', async () => {
    const ns = harness.namespace();
    const api = await echoGraph(ns);
    const sm = harness.stateManager(ns);
    const { run_id } = await sm.trigger('echo');
    const waiting = sm.waitForRun(run_id, 30_000);
    const [state] = await api.claim();
    await api.executed(state!, 'x');
    const run = await waiting;
    assert.deepEqual([run.run_id, run.status, run.finished, run.success_count], [run_id, 'SUCCESS', true, 1]);
    assert.equal('version' in run, false); // the summary of GET run, not an event
  });

  test('throws a RunTimeoutError carrying the last summary seen', async () => {
    const ns = harness.namespace();
    await echoGraph(ns);
    const sm = harness.stateManager(ns);
    const { run_id } = await sm.trigger('echo');
    const warm = sm.watchRun(run_id);
    await until(warm, () => true); // the server answers this run's stream: the wait below sees its snapshot
    await warm.return(undefined);
    await assert.rejects(sm.waitForRun(run_id, 2_000), (err: RunTimeoutError) => {
      assert.ok(err instanceof RunTimeoutError);
      assert.equal((err.run as { status?: string } | undefined)?.status, 'PENDING');
      return true;
    });
  });
});

describe('parseEventStream', () => {
  test('reads fields, comments and every line ending, whatever the chunking', async () => {
    const text = 'retry: 1000\r\n\r\n: keep-alive\n\nid: 7\revent: change\r\ndata: {"a":\ndata: 1}\n\nevent: x\n\n';
    for (const size of [1, 2, 3, 7, text.length]) {
      const chunks = async function* () {
        for (let i = 0; i < text.length; i += size) yield text.slice(i, i + size);
      };
      const events = [];
      for await (const event of parseEventStream(chunks())) events.push(event);
      assert.deepEqual(events, [{ event: 'change', data: '{"a":\n1}', id: '7' }], `chunks of ${size}`);
    }
  });
});
