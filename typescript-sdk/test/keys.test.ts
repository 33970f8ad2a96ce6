/** Scoped API keys from the TypeScript SDK: create, use within the role, 403 naming the role, revoke, audit. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AuthenticationError, PermissionDeniedError, StateManager } from 'exospherehost';
import { useServer } from './helpers/env.js';

const harness = useServer();

test('an admin creates a viewer key; the viewer reads, is refused a trigger with the role it needs, then is revoked', async () => {
  const ns = harness.namespace('keys');
  const admin = harness.stateManager(ns);
  const created = await admin.createKey('ts-viewer', 'viewer', ns);
  assert.equal(created.role, 'viewer');
  assert.equal(created.namespace, ns);
  assert.match(created.key, /^exo_/);

  const viewer = new StateManager(ns, { stateManagerUri: harness.server.url, key: created.key });
  await assert.rejects(viewer.getGraph('missing'), (err: unknown) => err instanceof Error && err.name === 'NotFoundError');
  await assert.rejects(viewer.trigger('missing'), (err: unknown) => {
    assert.ok(err instanceof PermissionDeniedError, String(err));
    assert.match(String(err.message), /trigger needs the operator or admin role/);
    return true;
  });
  await assert.rejects(viewer.listKeys(), PermissionDeniedError);

  const listed = (await admin.listKeys()).keys.find((key) => key.id === created.id);
  assert.deepEqual(listed && { ...listed }, { id: created.id, name: 'ts-viewer', role: 'viewer', namespace: ns, created_at: created.created_at, revoked_at: null });

  const revoked = await admin.revokeKey(created.id);
  assert.ok(revoked.revoked_at);
  await assert.rejects(viewer.getGraph('missing'), AuthenticationError);

  const actions = (await admin.auditLog(50)).entries.map((entry) => `${entry.action} ${entry.target}`);
  assert.ok(actions.includes(`key-create id ${created.id}`), actions.join('\n'));
  assert.ok(actions.includes(`key-revoke key_id ${created.id}`), actions.join('\n'));
});
