/**
 * The published package works: `npm pack`, install the tarball into a fresh project (with zod and
 * tsx, from the npm cache when it has them), type-check the documented Complete Minimal Example
 * against the installed declarations, and run it from TypeScript (tsx) and plain JavaScript.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { StateManager } from 'exospherehost';
import { eventually, useServer } from './helpers/env.js';

const run = promisify(execFile);
const SDK = join(dirname(fileURLToPath(import.meta.url)), '..');
const harness = useServer();
const project = mkdtempSync(join(tmpdir(), 'exospherehost-consumer-'));
let tarball = '';

function installedVersion(name: string): string {
  return JSON.parse(readFileSync(join(SDK, 'node_modules', name, 'package.json'), 'utf8')).version;
}

/** The documented example, pointed at the test server instead of localhost:8000. */
function example(): string {
  return readFileSync(join(SDK, 'test/fixtures/complete-minimal-example.ts'), 'utf8')
    .replaceAll('http://localhost:8000', harness.server.url)
    .replaceAll('your-api-key', harness.server.key);
}

async function runExampleUntilGreeted(command: string, args: string[]): Promise<void> {
  const sm = new StateManager('example-namespace', { stateManagerUri: harness.server.url, key: harness.server.key });
  const runsBefore = await listRuns();
  const child = spawn(command, args, { cwd: project, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
  try {
    const runId = await eventually(async () => {
      if (child.exitCode !== null) throw new Error(`example exited early (${child.exitCode}):\n${output}`);
      const fresh = (await listRuns()).filter((r) => !runsBefore.some((b) => b.run_id === r.run_id));
      return fresh.find((r) => r.status === 'SUCCESS')?.run_id;
    }, 30_000, `the example's run to succeed; output so far:\n${output}`);
    const [state] = await sm.getRunStates(runId);
    assert.deepEqual(state?.outputs, { greeting: 'Hello, World!' });
  } finally {
    child.kill('SIGTERM');
  }
  const [code, signal] = await exited;
  assert.ok(code === 143 || signal === 'SIGTERM', `exit ${code} ${signal}\n${output}`);
  assert.match(output, /SIGTERM received: stopping gracefully/);
}

async function listRuns(): Promise<{ run_id: string; status: string }[]> {
  const response = await fetch(`${harness.server.url}/v0/namespace/example-namespace/runs/1/100`, {
    headers: { 'x-api-key': harness.server.key },
  });
  return ((await response.json()) as { runs: { run_id: string; status: string }[] }).runs;
}

describe('the npm package', () => {
  before(async () => {
    const { stdout } = await run('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', project], { cwd: SDK });
    tarball = join(project, stdout.trim().split('\n').at(-1) ?? '');
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    const packages = [tarball, `zod@${installedVersion('zod')}`, `tsx@${installedVersion('tsx')}`];
    await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', ...packages], { cwd: project });
    writeFileSync(join(project, 'example.ts'), example());
    // Plain JavaScript: the same example without its one type annotation.
    writeFileSync(join(project, 'example.mjs'), example().replace('const nodes: GraphNodeModel[] =', 'const nodes ='));
  });

  test('the tarball holds the build, declarations and README, and no tests', async () => {
    const { stdout } = await run('tar', ['-tzf', tarball]);
    const files = stdout.split('\n');
    for (const file of ['package/dist/index.js', 'package/dist/index.d.ts', 'package/README.md', 'package/package.json']) assert.ok(files.includes(file), file);
    assert.ok(!files.some((f) => f.startsWith('package/test/')));
  });

  test('the Complete Minimal Example type-checks against the installed package', async () => {
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', lib: ['ES2022', 'DOM'], strict: true, noEmit: true }, files: ['example.ts'] }),
    );
    await run(process.execPath, [join(SDK, 'node_modules/typescript/bin/tsc'), '-p', project]).catch((err: { stdout?: string }) => {
      assert.fail(`tsc failed:\n${err.stdout}`);
    });
  });

  test('the Complete Minimal Example runs from TypeScript with tsx', async () => {
    await runExampleUntilGreeted(join(project, 'node_modules/.bin/tsx'), ['example.ts']);
  });

  test('the Complete Minimal Example runs from plain JavaScript', async () => {
    await runExampleUntilGreeted(process.execPath, ['example.mjs']);
  });
});
