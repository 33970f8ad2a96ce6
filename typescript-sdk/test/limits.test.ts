/** Named limits and RateLimitedSignal from the TypeScript SDK, against a real server. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BaseNode, RateLimitedSignal, retryAfterSeconds } from 'exospherehost';
import { z } from 'zod';
import { useServer } from './helpers/env.js';

const harness = useServer();
const calls = new Map<string, number>();

/** Its provider answers 429 to the first call of each tag, then accepts. */
class CallProvider extends BaseNode {
  static name = 'CallProvider';
  static Inputs = z.object({ tag: z.string() });
  static Outputs = z.object({ done: z.string() });
  async execute() {
    const seen = (calls.get(this.inputs.tag) ?? 0) + 1;
    calls.set(this.inputs.tag, seen);
    if (seen === 1) {
      const answer = new Response(null, { status: 429, headers: { 'retry-after-ms': '300' } });
      throw new RateLimitedSignal('provider', retryAfterSeconds(answer) ?? 1);
    }
    return { done: String(seen) };
  }
}

test('a node that throws RateLimitedSignal runs again without using a retry, and pauses the limit', async () => {
  const ns = harness.namespace('limited');
  const sm = harness.stateManager(ns);
  await sm.setLimit('provider', { requests_per_minute: 6000 });
  await harness.runtime(ns, [CallProvider]);
  const node = { node_name: 'CallProvider', namespace: ns, identifier: 'call', inputs: { tag: ns }, limits: [{ name: 'provider' }] };
  await sm.upsertGraph('calls', [node], {}, { max_retries: 0 });
  const { run_id } = await sm.trigger('calls');
  const run = await sm.waitForRun(run_id, 30_000);
  assert.equal(run.status, 'SUCCESS');
  const [state] = await sm.getRunStates(run_id);
  assert.equal(state?.retry_count, 0);
  assert.deepEqual(state?.outputs, { done: '2' });
  assert.ok((await sm.getLimit('provider')).paused_until, 'the limit was paused');
});

test('limits are set, read, listed and deleted', async () => {
  const sm = harness.stateManager(harness.namespace('limits'));
  const set = await sm.setLimit('openai', { requests_per_minute: 500, tokens_per_minute: 90_000 });
  assert.equal(set.requests_per_minute, 500);
  assert.equal(set.concurrency, null);
  await sm.setLimit('slow-api', { concurrency: 2 });
  assert.equal((await sm.getLimit('openai')).tokens_per_minute, 90_000);
  assert.deepEqual((await sm.listLimits()).limits.map((limit) => limit.name), ['openai', 'slow-api']);
  assert.equal((await sm.deleteLimit('openai')).deleted, true);
  await assert.rejects(sm.getLimit('openai'), (err: unknown) => err instanceof Error && err.name === 'NotFoundError');
});

test('RateLimitedSignal refuses what the server would', () => {
  assert.throws(() => new RateLimitedSignal('', 1), RangeError);
  assert.throws(() => new RateLimitedSignal('openai', -1), RangeError);
  const signal = new RateLimitedSignal('openai', 2.5, 'customer-7');
  assert.deepEqual([signal.limit, signal.retryAfterSeconds, signal.key], ['openai', 2.5, 'customer-7']);
});

test('retryAfterSeconds reads Retry-After and the x-ratelimit-reset headers', () => {
  const of = (headers: Record<string, string>) => retryAfterSeconds(new Response(null, { status: 429, headers }));
  assert.equal(of({ 'Retry-After': '2' }), 2);
  assert.equal(of({ 'retry-after-ms': '120' }), 0.12);
  assert.equal(of({ 'x-ratelimit-reset-tokens': '6m0s' }), 360);
  assert.equal(of({ 'x-ratelimit-reset-requests': '120ms', 'x-ratelimit-reset-tokens': '3s' }), 3);
  assert.equal(of({ 'Retry-After': 'soon' }), undefined);
  assert.equal(of({}), undefined);
  const now = Date.UTC(2026, 0, 2, 3, 4, 5);
  assert.equal(retryAfterSeconds(new Headers({ 'Retry-After': 'Fri, 02 Jan 2026 03:04:35 GMT' }), now), 30);
});
