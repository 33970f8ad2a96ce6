/**
 * A runtime never dies quietly. Answers it cannot read (corrupt gzip, truncated, not JSON), reset
 * connections and stalls are logged and retried, and the runtime goes on claiming; a loop that
 * fails unexpectedly is logged with its stack and started again; a runtime the server refuses for
 * good stops, says why, and ends its program with a non-zero exit code. The faults come from a small
 * real HTTP server (helpers/fake-server.ts).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BaseNode, Runtime, type RuntimeOptions } from 'exospherehost';
import { z } from 'zod';
import { MemoryLogger, eventually } from './helpers/env.js';
import { FakeStateManager, type Reply } from './helpers/fake-server.js';
import { supervise } from '../src/runtime.js';

const SDK = join(dirname(fileURLToPath(import.meta.url)), '..');
// No test here waits for a fixed time; this only bounds a test that would otherwise hang.
const HANG = { timeout: 120_000 };

class Echo extends BaseNode {
  static name = 'Echo';
  static Inputs = z.object({ text: z.string() });
  static Outputs = z.object({ text: z.string() });
  async execute() {
    return { text: this.inputs.text };
  }
}

/** Runs until the test opens its gate: long enough for heartbeats to be sent. */
const gates = new Map<string, () => void>();
class Held extends BaseNode {
  static name = 'Held';
  static Inputs = z.object({ gate: z.string() });
  static Outputs = z.object({ gate: z.string() });
  async execute() {
    await new Promise<void>((resolve) => gates.set(this.inputs.gate, resolve));
    return { gate: this.inputs.gate };
  }
}

/** A logger whose `warn` throws once: a broken log transport inside the claim loop. */
class WarnThrowsOnce extends MemoryLogger {
  thrown = false;
  override warn(message: string) {
    super.warn(message);
    if (!this.thrown) {
      this.thrown = true;
      throw new TypeError('log transport is closed');
    }
  }
}

const unreadable: Record<string, Reply> = {
  'corrupt gzip': { raw: '\x1f\x8b not gzip at all', headers: { 'content-encoding': 'gzip' } },
  'truncated body': { raw: '{"states": [', truncated: true },
  'not JSON': { raw: '<html>proxy error</html>', headers: { 'content-type': 'text/html' } },
  'JSON of another shape': { body: ['unexpected'] },
  'reset connection': { reset: true },
  'a gateway error page': { status: 502, raw: '<html>bad gateway</html>', headers: { 'content-type': 'text/html' } },
};

// A server per test: a claim a stopped runtime had already sent must not take the next test's fault.
let fake: FakeStateManager;
const runtimes: Runtime[] = [];
beforeEach(async () => {
  fake = new FakeStateManager();
  await fake.start();
});
afterEach(async () => {
  await Promise.all(runtimes.splice(0).map((runtime) => runtime.stop()));
  await fake.stop();
});

async function serve(logger: MemoryLogger, options: RuntimeOptions = {}): Promise<Runtime> {
  const runtime = new Runtime('ns', 'rt', [Echo, Held], {
    stateManagerUri: fake.url,
    key: 'k',
    handleSignals: false,
    pollInterval: 20,
    shutdownGraceMs: 2_000,
    logger,
    ...options,
  });
  runtimes.push(runtime);
  await runtime.start();
  return runtime;
}

function faultsLeft(endpoint: string): number {
  return fake.faults.get(endpoint)?.length ?? 0;
}

/** Hand out a state for Echo and wait until its result is reported `reports` times (the last answered). */
async function echoed(text: string, reports = 1): Promise<void> {
  const stateId = fake.addState('Echo', { text });
  const calls = () => fake.callsTo(stateId, 'executed');
  await eventually(async () => calls().length >= reports, 60_000, `state ${stateId} to be reported`);
  for (const call of calls()) assert.deepEqual(call.body, { outputs: [{ text }], lease_id: `lease-${stateId}` });
}

describe('claims go on after an answer that cannot be read', () => {
  for (const [fault, reply] of Object.entries(unreadable)) {
    test(fault, HANG, async () => {
      const logger = new MemoryLogger();
      fake.faults.set('enqueue', [reply, reply]);
      await serve(logger);
      await eventually(async () => faultsLeft('enqueue') === 0, 60_000, 'both faulty answers to be served');
      await echoed(`after ${fault}`);
      const warnings = logger.lines.filter((l) => l.startsWith('WARN ServerUnavailableError: Claiming states failed'));
      assert.ok(warnings.length >= 1, logger.lines.join('\n'));
      assert.ok(logger.lines.some((l) => l.startsWith('INFO Claiming states works again after 2 failed attempt(s)')), logger.lines.join('\n'));
      assert.ok(!logger.lines.some((l) => l.startsWith('ERROR')), logger.lines.join('\n'));
    });
  }

  test('a non-JSON answer is named in the log', HANG, async () => {
    const logger = new MemoryLogger();
    fake.faults.set('enqueue', [unreadable['not JSON']!]);
    await serve(logger);
    await eventually(async () => faultsLeft('enqueue') === 0, 60_000, 'the faulty answer to be served');
    await echoed('after the proxy page');
    const line = logger.lines.find((l) => l.startsWith('WARN ServerUnavailableError: Claiming states failed'));
    assert.match(line ?? '', /the answer is not a list of states: "<html>proxy error<\/html>"; retrying in \d+ ms$/);
  });
});

describe('results and heartbeats go on after faults', () => {
  test('a result whose reports are reset, corrupted and truncated is delivered in the end', HANG, async () => {
    const logger = new MemoryLogger();
    fake.faults.set('executed', [{ reset: true }, unreadable['corrupt gzip']!, unreadable['truncated body']!]);
    await serve(logger);
    await echoed('reported at last', 4);
    // The fake records a call before it answers: wait for the runtime to read the answer.
    await eventually(async () => logger.lines.some((l) => l.includes('succeeded after 4 attempts')), 60_000, 'the report to be accepted');
    assert.equal(faultsLeft('executed'), 0);
    const warning = logger.lines.find((l) => l.startsWith('WARN Reporting executed for state'));
    assert.match(warning ?? logger.lines.join('\n'), /failed: .*(ECONNRESET|other side closed).*; retrying in \d+ ms \(attempt 1\)$/);
  });

  test('heartbeats that get no answer, or only headers, time out and the next ones keep the lease', HANG, async () => {
    const logger = new MemoryLogger();
    fake.faults.set('heartbeat', [{ stall: 'silent' }, { stall: 'after-headers' }]);
    // A lease of 3 s: a heartbeat every second, each bounded by that second.
    await serve(logger, { leaseMs: 3_000 });
    const stateId = fake.addState('Held', { gate: 'heartbeats' });
    await eventually(async () => fake.callsTo(stateId, 'heartbeat').length >= 3 && gates.has('heartbeats'), 60_000, 'a heartbeat after the stalled ones');
    gates.get('heartbeats')!();
    await eventually(async () => fake.callsTo(stateId, 'executed').length > 0, 60_000, 'the held state to be reported');
    const timeouts = logger.lines.filter((l) => l.includes(`Heartbeat for state ${stateId} failed: server unavailable (no answer within 1000 ms)`));
    assert.equal(timeouts.length, 2, logger.lines.join('\n'));
    await echoed('still claiming');
  });

  test('a claim the server never answers does not hold up stop()', HANG, async () => {
    const logger = new MemoryLogger();
    fake.faults.set('enqueue', [{ stall: 'silent' }]);
    const runtime = await serve(logger);
    await eventually(async () => faultsLeft('enqueue') === 0, 60_000, 'the claim to be stalled');
    await runtime.stop();
    assert.ok(logger.lines.includes('INFO Runtime "rt" stopped'), logger.lines.join('\n'));
  });
});

describe('supervision', () => {
  test('a loop that fails unexpectedly is logged with its stack and started again', HANG, async () => {
    const logger = new MemoryLogger();
    let runs = 0;
    await supervise('the test loop', async () => {
      runs += 1;
      if (runs === 1) throw new TypeError('a bug in the loop');
    }, logger, new AbortController().signal);
    assert.equal(runs, 2);
    const [line, ...others] = logger.lines.filter((l) => l.includes('the test loop failed unexpectedly'));
    assert.deepEqual(others, []);
    assert.match(line ?? '', /^ERROR the test loop failed unexpectedly; starting it again in \d+ ms: TypeError: a bug in the loop\n\s+at /);
  });

  test('the claim loop of a running runtime is started again after an unexpected error, and claims go on', HANG, async () => {
    const logger = new WarnThrowsOnce();
    fake.faults.set('enqueue', [{ status: 503, body: { detail: 'restarting' } }]);
    await serve(logger);
    await eventually(async () => logger.thrown, 60_000, 'the logger to throw');
    await echoed('after the broken logger');
    const line = logger.lines.find((l) => l.startsWith('ERROR Runtime "rt": the claim loop failed unexpectedly'));
    assert.match(line ?? logger.lines.join('\n'), /TypeError: log transport is closed\n\s+at /);
  });

  test('stopping while a failed loop waits to start again ends it', HANG, async () => {
    const logger = new MemoryLogger();
    const stopping = new AbortController();
    let runs = 0;
    const supervised = supervise('the test loop', async () => {
      runs += 1;
      throw new Error('always fails');
    }, logger, stopping.signal);
    await eventually(async () => runs === 1, 60_000, 'the first run');
    stopping.abort();
    await supervised;
    assert.equal(runs, 1);
  });
});

describe('a runtime that cannot go on', () => {
  test('a claim refused with 401 stops the runtime, which says why, and done rejects with the refusal', HANG, async () => {
    const logger = new MemoryLogger();
    fake.faults.set('enqueue', [{ status: 401, body: { detail: 'Invalid API key' } }]);
    const runtime = await serve(logger);
    await assert.rejects(runtime.done, (err: Error & { status?: number }) => {
      assert.equal(err.name, 'AuthenticationError');
      assert.equal(err.status, 401);
      assert.equal(err.message, 'Claiming states failed: 401 Invalid API key');
      return true;
    });
    assert.ok(
      logger.lines.includes('ERROR Runtime "rt" cannot go on and stops: AuthenticationError: Claiming states failed: 401 Invalid API key'),
      logger.lines.join('\n'),
    );
    assert.ok(logger.lines.includes('INFO Runtime "rt" stopped'), logger.lines.join('\n'));
    await runtime.stop(); // resolves: the runtime has stopped
    await assert.rejects(runtime.join(), { name: 'AuthenticationError' });
  });

  for (const [when, endpoint] of [['registering', 'nodes'], ['claiming', 'enqueue']] as const) {
    test(`a program whose main task is the runtime exits non-zero when the key is refused while ${when}`, HANG, async () => {
      fake.faults.set(endpoint, [{ status: 401, body: { detail: 'Invalid API key' } }]);
      const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/main-task.ts'], {
        cwd: SDK,
        env: { ...process.env, EXOSPHERE_STATE_MANAGER_URI: fake.url, EXOSPHERE_API_KEY: 'k', EXOSPHERE_LOG_LEVEL: 'INFO' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const [code] = (await once(child, 'exit')) as [number | null];
      assert.equal(code, 1, output);
      assert.match(output, /AuthenticationError/);
      assert.match(output, /401 Invalid API key/);
      if (endpoint === 'enqueue') assert.match(output, /Runtime "main-task" cannot go on and stops/);
    });
  }
});
