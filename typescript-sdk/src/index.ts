/**
 * ExosphereHost TypeScript SDK: define nodes, serve them with a {@link Runtime}, and manage
 * graphs and runs with a {@link StateManager}.
 *
 * @example
 * ```ts
 * import { BaseNode, Runtime, StateManager } from 'exospherehost';
 * import { z } from 'zod';
 *
 * class GreetingNode extends BaseNode {
 *   static name = 'greeting';
 *   static Inputs = z.object({ name: z.string() });
 *   static Outputs = z.object({ greeting: z.string() });
 *   async execute() {
 *     return { greeting: `Hello, ${this.inputs.name}!` };
 *   }
 * }
 *
 * const runtime = new Runtime('demo', 'greeter', [GreetingNode]);
 * await runtime.start();
 * ```
 * @packageDocumentation
 */
export {
  BaseNode,
  generateFlatSchema,
  isZodObjectSchema,
  isZodStringSchema,
  type NodeClass,
  type NodeData,
  type NodeResult,
  type UsageReport,
} from './node.js';
export { Runtime, type RuntimeOptions } from './runtime.js';
export { StateManager, type StateManagerConfig, type UpsertOptions, type WatchOptions } from './stateManager.js';
export { PruneSignal, ReQueueAfterSignal, WaitForSignalSignal } from './signals.js';
export {
  GraphValidationStatus,
  RetryStrategyEnum,
  StateStatusEnum,
  UnitesStrategyEnum,
  CronTrigger,
  GraphNodeModel,
  type GraphTemplate,
  RetryPolicyModel,
  type RunEvent,
  type RunNodeCounts,
  type RunState,
  type RunCancelled,
  type RunSummary,
  type SignalSent,
  StoreConfigModel,
  type TriggerResult,
  type TriggerState,
  UnitesModel,
} from './models.js';
export {
  ApiError,
  AuthenticationError,
  ConfigurationError,
  ConflictError,
  ExosphereError,
  GraphValidationError,
  LeaseLostError,
  NotFoundError,
  PermissionDeniedError,
  RunTimeoutError,
  ServerUnavailableError,
  UnsendableOutputError,
} from './errors.js';
export { Logger, LogLevel, logger } from './log.js';
export {
  ALLOWED_MOVES,
  canMove,
  PHASE,
  Phase,
  RunStatus,
  StateStatus,
  type StateStatusGroup,
  StateStatusGroups,
} from './generated/stateMachine.js';
export { VERSION } from './version.js';
export type { ApiKeyInfo, AuditLogResponse, CreatedKeyResponse, KeyRole, ListKeysResponse, Usage } from './wire.js';
