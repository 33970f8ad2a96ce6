/**
 * Logging for operators: one line per meaningful event, never a secret.
 *
 * The default logger writes to stderr at the level named by `EXOSPHERE_LOG_LEVEL`
 * (`DEBUG`, `INFO` (default), `WARN`, `ERROR`); `EXOSPHERE_DISABLE_DEFAULT_LOGGING=true` silences it.
 * Pass your own {@link Logger} (pino, winston and `console` all fit) to `Runtime` instead.
 *
 * `logger`, `Logger.getInstance()` and `LogLevel` are the original SDK's logging API, kept for its
 * users: `logger.info('MyNode', 'started')` prints `2025-01-31 09:00:00 | INFO | MyNode | started`.
 * @module
 */

/** The original SDK's log levels; a message is printed when its level is at least the configured one. */
export enum LogLevel {
  DEBUG = 0,
  INFO = 1,
  WARN = 2,
  ERROR = 3,
}

type LevelName = keyof typeof LogLevel;

/** The configured level, or `undefined` when logging is disabled; read from the environment at each call. */
function configuredLevel(): LogLevel | undefined {
  const disabled = (process.env.EXOSPHERE_DISABLE_DEFAULT_LOGGING ?? '').toLowerCase();
  if (disabled === 'true' || disabled === '1') return undefined;
  const wanted = (process.env.EXOSPHERE_LOG_LEVEL ?? 'INFO').trim().toUpperCase();
  const named = wanted === 'WARNING' ? 'WARN' : wanted;
  return named in LogLevel && typeof LogLevel[named as LevelName] === 'number' ? LogLevel[named as LevelName] : LogLevel.INFO;
}

function enabled(level: LogLevel): boolean {
  const threshold = configuredLevel();
  return threshold !== undefined && level >= threshold;
}

const CONSOLE_METHOD = { DEBUG: 'debug', INFO: 'info', WARN: 'warn', ERROR: 'error' } as const;

/**
 * The methods the SDK logs through, each taking one message: `console`, pino, winston and any
 * `{ debug(message), info(message), warn(message), error(message) }` fit where a `Logger` is asked for.
 *
 * It is also the original SDK's logger class: `Logger.getInstance()` (the same object as
 * {@link logger}) has methods `(name, message)` printing `YYYY-MM-DD HH:MM:SS | LEVEL | name | message`
 * with `console.debug`/`info`/`warn`/`error`, filtered by `EXOSPHERE_LOG_LEVEL` and silenced by
 * `EXOSPHERE_DISABLE_DEFAULT_LOGGING=true`. Unlike the original, the environment is read at each
 * call (so it may change after import), and a single argument is the message (name `exospherehost`).
 *
 * @example
 * ```ts
 * import { Logger, logger } from 'exospherehost';
 * logger.warn('MyNode', 'slow answer from the API');
 * Logger.getInstance() === logger; // true
 * const runtime = new Runtime('ns', 'rt', [MyNode], { logger: console });
 * ```
 */
export class Logger {
  /** The one shared instance, {@link logger}. */
  static getInstance(): Logger {
    return logger;
  }

  debug(nameOrMessage: string, message?: string): void {
    write('DEBUG', nameOrMessage, message);
  }

  info(nameOrMessage: string, message?: string): void {
    write('INFO', nameOrMessage, message);
  }

  warn(nameOrMessage: string, message?: string): void {
    write('WARN', nameOrMessage, message);
  }

  error(nameOrMessage: string, message?: string): void {
    write('ERROR', nameOrMessage, message);
  }
}

// The state lives in the environment, not in the instance: a Logger with no fields stays the plain
// four-method shape that `console` and custom loggers satisfy.
function write(level: LevelName, nameOrMessage: string, message: string | undefined): void {
  if (!enabled(LogLevel[level])) return;
  const [name, text] = message === undefined ? ['exospherehost', nameOrMessage] : [nameOrMessage, message];
  const timestamp = new Date().toISOString().replace('T', ' ').slice(0, 19);
  console[CONSOLE_METHOD[level]](`${timestamp} | ${level} | ${name} | ${text}`);
}

/** The original SDK's shared logger: `logger.info('MyNode', 'started')`. */
export const logger: Logger = new Logger();

/** A logger that drops everything. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** The logger used when none is given, configured from the environment at each call. */
export function defaultLogger(): Logger {
  if (configuredLevel() === undefined) return silentLogger;
  const writeLine = (level: LevelName) => (message: string) => {
    if (enabled(LogLevel[level])) {
      process.stderr.write(`${new Date().toISOString()} ${level} exospherehost: ${message}\n`);
    }
  };
  return { debug: writeLine('DEBUG'), info: writeLine('INFO'), warn: writeLine('WARN'), error: writeLine('ERROR') };
}
