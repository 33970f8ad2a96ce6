/** The state machine generated from the Python SDK's `exospherehost.statuses`, as the package exports it. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  ALLOWED_MOVES,
  canMove,
  PHASE,
  RunStatus,
  StateStatus,
  StateStatusEnum,
  StateStatusGroups,
} from 'exospherehost';

describe('the generated state machine', () => {
  test('StateStatusEnum is the generated StateStatus under its old name', () => {
    assert.equal(StateStatusEnum, StateStatus);
    assert.deepEqual(Object.values(StateStatus), [
      'CREATED', 'QUEUED', 'EXECUTED', 'ERRORED', 'NEXT_CREATED_ERROR', 'SUCCESS', 'PRUNED', 'RETRY_CREATED',
      'CANCELLED',
      'WAITING',
      'AWAITING_CHILD',
    ]);
    assert.deepEqual(Object.values(RunStatus), ['PENDING', 'SUCCESS', 'FAILED', 'CANCELLED']);
  });

  test('every status has its moves and a phase', () => {
    for (const status of Object.values(StateStatus)) {
      assert.ok(Array.isArray(ALLOWED_MOVES[status]), status);
      assert.ok(PHASE[status], status);
    }
  });

  test('canMove follows ALLOWED_MOVES and refuses names that are no status', () => {
    assert.equal(canMove(StateStatus.QUEUED, StateStatus.SUCCESS), true);
    assert.equal(canMove('ERRORED', 'RETRY_CREATED'), true);
    assert.equal(canMove('SUCCESS', 'QUEUED'), false);
    assert.equal(canMove('toString', 'QUEUED'), false);
    assert.equal(canMove('CANCELLED', 'QUEUED'), false);
    assert.equal(canMove('QUEUED', 'CANCELLED'), true);
    assert.equal(canMove('AWAITING_CHILD', 'SUCCESS'), true); // its child run succeeded
    assert.equal(canMove('AWAITING_CHILD', 'QUEUED'), false); // never claimed
  });

  test('the groups a run is counted by split the statuses between them', () => {
    const { PENDING, SUCCEEDED, FAILED, RETRIED, CANCELLED } = StateStatusGroups;
    const counted = [...PENDING, ...SUCCEEDED, ...FAILED, ...RETRIED, ...CANCELLED].sort();
    assert.deepEqual(counted, [...Object.values(StateStatus)].sort());
  });
});
