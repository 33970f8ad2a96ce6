/**
 * The state manager's requests and answers, by their names in the contract (`exospherehost.contract`
 * in the Python SDK). The types come from `./generated/openapi.ts`, which `scripts/generate-contract.sh`
 * generates from the server's OpenAPI document; nothing here is written by hand, so the SDK's view
 * of the wire cannot drift from the server's.
 *
 * Answers may carry keys a newer server added (`[key: string]: unknown`).
 *
 * @example
 * ```ts
 * import type { RunResponse } from './wire.js';
 * const finished = (run: RunResponse) => run.finished && run.status === 'SUCCESS';
 * ```
 * @module
 */
import type { components } from './generated/openapi.js';

type Schemas = components['schemas'];

export type GraphResponse = Schemas['GraphResponse'];
export type ApiKeyInfo = Schemas['ApiKeyInfo'];
export type CreatedKeyResponse = Schemas['CreatedKeyResponse'];
export type ListKeysResponse = Schemas['ListKeysResponse'];
export type AuditLogResponse = Schemas['AuditLogResponse'];
export type KeyRole = Schemas['CreateKeyRequest']['role'];
export type GraphTrigger = Schemas['GraphTrigger'];
export type TriggerResponse = Schemas['TriggerResponse'];
export type TriggerRequest = Schemas['TriggerRequest'];
export type TriggerManyResponse = Schemas['TriggerManyResponse'];
export type RunResponse = Schemas['RunResponse'];
/** A run's progress: its summary (without `cancel_reason` and `warnings`), version, and counts per node. */
export type RunProgressResponse = Schemas['RunProgressResponse'];
export type CancelRunResponse = Schemas['CancelRunResponse'];
export type SendSignalResponse = Schemas['SendSignalResponse'];
export type RunStatesResponse = Schemas['RunStatesResponse'];
export type StateResponse = Schemas['StateResponse'];
export type EnqueueRequest = Schemas['EnqueueRequest'];
export type EnqueueResponse = Schemas['EnqueueResponse'];
export type ClaimedState = Schemas['ClaimedState'];
export type SecretsResponse = Schemas['SecretsResponse'];
export type RegisterNodesRequest = Schemas['RegisterNodesRequest'];
export type NodeRegistration = Schemas['NodeRegistration'];
export type EagerClaim = Schemas['EagerClaim'];
export type ExecutedManyRequest = Schemas['ExecutedManyRequest'];
export type Usage = Schemas['Usage'];
export type ExecutedManyResponse = Schemas['ExecutedManyResponse'];
