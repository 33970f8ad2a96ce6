/**
 * The TypeScript runtime process of `make bench` (`bench/run.py --runtimes ts-tuned,ts-defaults`),
 * the twin of `bench/sdk_runtime.py`: the same nodes, the same two configurations.
 *
 *     node --import tsx bench/runtime.ts NAMESPACE [tuned|defaults]
 *
 * `tuned` passes the project's chosen arguments (TUNED); `defaults` calls `new Runtime(...)` with the
 * default arguments, as a user who copies the README's example would. `Hop` reports the moment its
 * `execute` ran (`at`, seconds since the epoch) so that the benchmark can time every hop of a chain.
 * Needs the SDK built (`npm ci && npm run build` here, or `scripts/test-typescript.sh`).
 */
import { BaseNode, Runtime, type RuntimeOptions } from 'exospherehost';
import { z } from 'zod';

const TUNED: RuntimeOptions = { batchSize: 64, workers: 32 };

class Hop extends BaseNode {
  static name = 'Hop';
  static Inputs = z.object({ x: z.string() });
  static Outputs = z.object({ x: z.string(), at: z.string() });
  async execute() {
    return { x: this.inputs.x, at: String(Date.now() / 1000) };
  }
}

class Fan extends BaseNode {
  static name = 'Fan';
  static Inputs = z.object({ n: z.string() });
  static Outputs = z.object({ x: z.string() });
  async execute() {
    return Array.from({ length: Number(this.inputs.n) }, (_, i) => ({ x: String(i) }));
  }
}

class Gather extends BaseNode {
  static name = 'Gather';
  static Inputs = z.object({ n: z.string() });
  static Outputs = z.object({ x: z.string() });
  async execute() {
    return { x: this.inputs.n };
  }
}

const [namespace, configuration = 'tuned'] = process.argv.slice(2);
if (!namespace || !['tuned', 'defaults'].includes(configuration)) {
  process.stderr.write(`usage: runtime.ts NAMESPACE [tuned|defaults], got ${process.argv.slice(2).join(' ')}\n`);
  process.exit(2);
}
const runtime = new Runtime(namespace, 'bench', [Hop, Fan, Gather], configuration === 'tuned' ? TUNED : {});
await runtime.start();
await runtime.done;
