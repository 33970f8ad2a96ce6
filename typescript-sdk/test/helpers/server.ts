/**
 * Starts a real `exosphere server` process on a free port and a temporary SQLite file, as a
 * user would, and can kill and restart it on the same port and database.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const API_KEY = 'typescript-sdk-test-key';
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

function serverBinary(): string {
  const candidates = [process.env.EXOSPHERE_SERVER_BIN, join(REPO, '.venv/bin/exosphere')];
  const found = candidates.find((candidate) => candidate && existsSync(candidate));
  if (!found) throw new Error(`exosphere server not found (run \`make setup\`): looked at ${candidates.filter(Boolean).join(', ')}`);
  return found;
}

/** The Python of the environment the server was installed in, which has the `exospherehost` Python SDK. */
export function venvPython(): string {
  return join(dirname(serverBinary()), 'python');
}

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => (typeof address === 'object' && address ? resolvePort(address.port) : reject(new Error('no port'))));
    });
  });
}

export interface TestServer {
  url: string;
  key: string;
  dataDir: string;
  /** Kill with SIGKILL (no shutdown at all). */
  kill(): Promise<void>;
  /** Start again on the same port and database. */
  restart(): Promise<void>;
  /** Stop gracefully. */
  stop(): Promise<void>;
  log(): string;
}

export async function startServer(extraEnv: Record<string, string> = {}): Promise<TestServer> {
  const dataDir = mkdtempSync(join(tmpdir(), 'exosphere-ts-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const env = {
    ...process.env,
    STATE_MANAGER_SECRET: API_KEY,
    SECRETS_ENCRYPTION_KEY: randomBytes(32).toString('base64url') + '=',
    EXOSPHERE_DATA_DIR: dataDir,
    ...extraEnv,
  };
  const logFile = join(dataDir, 'server.log');
  let child: ChildProcess | undefined;

  const launch = async () => {
    const log = createWriteStream(logFile, { flags: 'a' });
    await new Promise((ok) => log.once('open', ok));
    const args = ['server', '--port', String(port), '--database-url', `sqlite:///${dataDir}/exosphere.db`];
    child = spawn(serverBinary(), args, { env, stdio: ['ignore', log, log] });
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        if ((await fetch(`${url}/health`)).ok) return;
      } catch {
        // not listening yet
      }
      if (child.exitCode !== null || Date.now() > deadline) {
        throw new Error(`exosphere server did not start:\n${readFileSync(logFile, 'utf8')}`);
      }
      await new Promise((ok) => setTimeout(ok, 100));
    }
  };

  const end = async (signal: NodeJS.Signals) => {
    const running = child;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise((ok) => running.once('exit', ok));
    running.kill(signal);
    await exited;
  };

  await launch();
  return {
    url,
    key: API_KEY,
    dataDir,
    kill: () => end('SIGKILL'),
    restart: launch,
    stop: () => end('SIGTERM'),
    log: () => readFileSync(logFile, 'utf8'),
  };
}
