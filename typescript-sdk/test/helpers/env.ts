/** Test fixtures: a server per test file, a fresh namespace per test, runtimes that stop themselves. */
import { randomUUID } from 'node:crypto';
import { after, before } from 'node:test';
import { type Logger, type NodeClass, Runtime, type RuntimeOptions, StateManager } from 'exospherehost';
import { type TestServer, startServer } from './server.js';

/** A logger that keeps its lines, for assertions (and prints them with TEST_LOGS=1). */
export class MemoryLogger implements Logger {
  readonly lines: string[] = [];
  debug(message: string) { this.write('DEBUG', message); }
  info(message: string) { this.write('INFO', message); }
  warn(message: string) { this.write('WARN', message); }
  error(message: string) { this.write('ERROR', message); }
  private write(level: string, message: string) {
    this.lines.push(`${level} ${message}`);
    if (process.env.TEST_LOGS) process.stderr.write(`${level} ${message}\n`);
  }
}

export interface Harness {
  server: TestServer;
  /** A namespace no other test uses. */
  namespace(prefix?: string): string;
  stateManager(namespace: string): StateManager;
  /** Start a runtime serving `nodes`; it is stopped when the test file ends. */
  runtime(namespace: string, nodes: NodeClass[], options?: RuntimeOptions): Promise<Runtime>;
}

/** Start one server for the test file, and stop it (and every runtime) at the end. */
export function useServer(extraEnv: Record<string, string> = {}): Harness {
  const runtimes: Runtime[] = [];
  const harness = {
    server: undefined as unknown as TestServer,
    namespace: (prefix = 'ts') => `${prefix}-${randomUUID().slice(0, 8)}`,
    stateManager: (namespace: string) =>
      new StateManager(namespace, { stateManagerUri: harness.server.url, key: harness.server.key }),
    async runtime(namespace: string, nodes: NodeClass[], options: RuntimeOptions = {}) {
      const runtime = new Runtime(namespace, `runtime-${runtimes.length}`, nodes, {
        stateManagerUri: harness.server.url,
        key: harness.server.key,
        handleSignals: false,
        logger: new MemoryLogger(),
        shutdownGraceMs: 2_000,
        ...options,
      });
      runtimes.push(runtime);
      await runtime.start();
      return runtime;
    },
  };
  before(async () => {
    harness.server = await startServer(extraEnv);
    if (process.env.TEST_LOGS) process.stderr.write(`server log: ${harness.server.dataDir}/server.log\n`);
  });
  after(async () => {
    await Promise.all(runtimes.map((runtime) => runtime.stop()));
    await harness.server?.stop();
  });
  return harness;
}

/** Poll `probe` until it returns a truthy value, or fail after `timeoutMs`. */
export async function eventually<T>(probe: () => Promise<T | undefined | false>, timeoutMs = 15_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((ok) => setTimeout(ok, 50));
  }
}
