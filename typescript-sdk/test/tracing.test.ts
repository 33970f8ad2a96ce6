/**
 * Traces: with `@opentelemetry/api` installed and a context manager registered (what an application's
 * OpenTelemetry SDK does), a node runs inside its state's `execute` span, in the run's trace, as the
 * claim's traceparent says.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { after, before, test } from 'node:test';
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BaseNode } from 'exospherehost';
import { z } from 'zod';
import { useServer } from './helpers/env.js';

// The server exports its spans here; the test only needs it to accept them.
const serverEnv: Record<string, string> = { OTEL_BSP_SCHEDULE_DELAY: '50' };
let collector: Server;
before(async () => {
  collector = createServer((request, response) => {
    request.resume();
    request.on('end', () => response.writeHead(200, { 'content-type': 'application/x-protobuf' }).end());
  });
  await new Promise<void>((ok) => collector.listen(0, '127.0.0.1', ok));
  const address = collector.address();
  assert.ok(address && typeof address === 'object');
  serverEnv.OTEL_EXPORTER_OTLP_ENDPOINT = `http://127.0.0.1:${address.port}`;
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
});
after(() => {
  collector.close();
  context.disable();
});
const harness = useServer(serverEnv); // registered after the collector's hook: started once it listens

class Traced extends BaseNode {
  static name = 'Traced';
  static Inputs = z.object({ text: z.string() });
  static Outputs = z.object({ trace_id: z.string(), span_id: z.string() });
  async execute() {
    const active = trace.getSpanContext(context.active());
    return { trace_id: active?.traceId ?? 'none', span_id: active?.spanId ?? 'none' };
  }
}

function runTraceId(runId: string): string {
  const digest = createHash('sha256').update(`exosphere\0trace\0${runId}`).digest();
  return digest.subarray(0, 16).toString('hex');
}

test("a node runs inside its state's execute span, in the run's trace", async () => {
  const ns = harness.namespace('traced');
  const sm = harness.stateManager(ns);
  await harness.runtime(ns, [Traced]);
  await sm.upsertGraph('traced', [{ node_name: 'Traced', namespace: ns, identifier: 'traced', inputs: { text: 'x' }, next_nodes: [] }], {});
  const { run_id } = await sm.trigger('traced');
  assert.equal((await sm.waitForRun(run_id, 20_000)).status, 'SUCCESS');
  const [state] = await sm.getRunStates(run_id);
  assert.equal(state?.outputs.trace_id, runTraceId(run_id));
  assert.match(String(state?.outputs.span_id), /^[0-9a-f]{16}$/);
  assert.notEqual(state?.outputs.span_id, '0000000000000000');
});
