"""`exosphere limit set | list | delete`, run as real subprocesses."""

from __future__ import annotations

from .conftest import Cli


def test_limit_set_list_and_delete(cli: Cli) -> None:
    made = cli("limit", "set", "openai", "--rpm", "500", "--tpm", "90000", "--json")
    assert made.code == 0, made
    assert made.json()["requests_per_minute"] == 500 and made.json()["tokens_per_minute"] == 90000
    assert cli("limit", "set", "slow-api", "--concurrency", "4").code == 0
    listed = cli("limit", "list")
    assert listed.code == 0 and "openai" in listed.stdout and "90000" in listed.stdout and "slow-api" in listed.stdout
    deleted = cli("limit", "delete", "openai")
    assert deleted.code == 0 and "limit openai deleted" in deleted.stdout
    assert [item["name"] for item in cli("limit", "list", "--json").json()["limits"]] == ["slow-api"]


def test_limit_commands_say_what_to_fix(cli: Cli) -> None:
    nothing = cli("limit", "set", "openai")
    assert nothing.code == 2 and "give at least one of --concurrency, --rpm and --tpm" in nothing.stderr
    assert cli("limit", "set", "openai", "--rpm", "0").code != 0
    unknown = cli("limit", "delete", "nope")
    assert unknown.code == 3 and "not found" in unknown.stderr
