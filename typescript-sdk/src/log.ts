/**
 * Logging for operators: one line per meaningful event, never a secret.
 *
 * The default logger writes to stderr at the level named by `EXOSPHERE_LOG_LEVEL`
 * (`DEBUG`, `INFO` (default), `WARN`, `ERROR`); `EXOSPHERE_DISABLE_DEFAULT_LOGGING=true` silences it.
 * Pass your own {@link Logger} (pino, winston and `console` all fit) to `Runtime` instead.
 * @module
 */

/** The four methods the SDK logs through. `console` satisfies it. */
export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

const LEVELS = ['DEBUG', 'INFO', 'WARN', 'ERROR'] as const;
type Level = (typeof LEVELS)[number];

/** A logger that drops everything. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** The logger used when none is given, configured from the environment at each call. */
export function defaultLogger(): Logger {
  const disabled = (process.env.EXOSPHERE_DISABLE_DEFAULT_LOGGING ?? '').toLowerCase();
  if (disabled === 'true' || disabled === '1') return silentLogger;
  const wanted = (process.env.EXOSPHERE_LOG_LEVEL ?? 'INFO').trim().toUpperCase();
  const named = wanted === 'WARNING' ? 'WARN' : wanted;
  const threshold = Math.max(0, LEVELS.indexOf(named as Level));
  const write = (level: Level) => (message: string) => {
    if (LEVELS.indexOf(level) >= threshold) {
      process.stderr.write(`${new Date().toISOString()} ${level} exospherehost: ${message}\n`);
    }
  };
  return { debug: write('DEBUG'), info: write('INFO'), warn: write('WARN'), error: write('ERROR') };
}
