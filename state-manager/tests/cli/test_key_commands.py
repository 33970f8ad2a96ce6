"""`exosphere key create | list | revoke` and `exosphere audit`, run as real subprocesses."""

from __future__ import annotations

from .conftest import Cli


def test_key_create_list_revoke_and_audit(cli: Cli, namespace: str) -> None:
    created = cli("key", "create", "ci-bot", "--role", "operator", "--namespace", namespace, "--json")
    assert created.code == 0, created
    key = created.json()
    assert key["role"] == "operator" and key["namespace"] == namespace and key["key"].startswith("exo_")

    listed = cli("key", "list")
    assert listed.code == 0 and key["id"] in listed.stdout and "ci-bot" in listed.stdout
    assert key["key"] not in listed.stdout  # the secret is shown once, at creation

    # The new key works within its role: operators read runs, but only admins manage keys.
    as_operator = cli("runs", env={"EXOSPHERE_API_KEY": key["key"]})
    assert as_operator.code == 0, as_operator
    refused = cli("key", "list", env={"EXOSPHERE_API_KEY": key["key"]})
    assert refused.code == 3 and "needs the admin role" in refused.stderr, refused

    revoked = cli("key", "revoke", key["id"])
    assert revoked.code == 0 and f"revoked key {key['id']}" in revoked.stdout
    after = cli("runs", env={"EXOSPHERE_API_KEY": key["key"]})
    assert after.code == 3 and "refused the API key" in after.stderr

    audit = cli("audit", "--json")
    actions = [(e["action"], e["target"]) for e in audit.json()["entries"]]
    assert ("key-revoke", f"key_id {key['id']}") in actions and ("key-create", f"id {key['id']}") in actions


def test_key_commands_say_what_to_fix(cli: Cli) -> None:
    bad_role = cli("key", "create", "x", "--role", "root")
    assert bad_role.code == 2 and "use one of admin, operator, runtime, viewer" in bad_role.stderr
    unknown = cli("key", "revoke", "key_nope")
    assert unknown.code == 3 and "exosphere key list" in unknown.stderr
    assert cli("audit", "--limit", "0").code == 2
