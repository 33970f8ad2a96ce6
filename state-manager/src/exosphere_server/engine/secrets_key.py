"""The secrets key must be the one the stored secrets were encrypted with: checked at every start.

A changed or lost key used to start silently; every secrets read then failed and runs hung. Now the
database keeps a check value of the key (`SecretBox.key_check`, never the key) and a start with
another key is refused, saying how to rotate. Rotation: start once with the new key as
`SECRETS_ENCRYPTION_KEY` and the old one in `SECRETS_ENCRYPTION_KEY_PREVIOUS`; every secret is
re-encrypted in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from exosphere_server.engine.secret_box import SecretBox, SecretUnreadable
from exosphere_server.storage.base import Storage, Tx

KEY_CHECK = "secrets_key_check"
HOW_TO_ROTATE = (
    "Start with the key the secrets were stored under. To rotate keys, start once with the new key in "
    "SECRETS_ENCRYPTION_KEY and the old one in SECRETS_ENCRYPTION_KEY_PREVIOUS: every secret is re-encrypted "
    "(docs/operations.md, 'The secrets key')."
)


class SecretsKeyMismatch(Exception):
    """The configured secrets key cannot read this database's secrets; the message says what to do."""


async def verify_secrets_key(
    storage: Storage, box: SecretBox, previous: Sequence[SecretBox] = (), *, missing_key_file: str | None = None
) -> str:
    """Check the key against the database; returns "ok", "recorded" (first start) or "rotated".

    `missing_key_file` names the embedded default's key file when it was not found and a new key was
    made: acceptable for a database without secrets, never silently for one with them.
    """
    async with storage.transaction() as tx:
        stored = await tx.get_server_setting(KEY_CHECK)
        if stored == box.key_check:
            return "ok"
        graphs = await tx.graph_secrets()
        # A new key is fine where nothing is encrypted yet, or where the stored secrets open with it; a
        # different key than the recorded one is refused even without secrets (another replica's key).
        if (not graphs and (stored is None or missing_key_file is not None)) or (
            stored is None and graphs and _opens(box, graphs)
        ):
            await tx.set_server_setting(KEY_CHECK, box.key_check)
            return "recorded"
        old = next((p for p in previous if (p.key_check == stored if stored else _opens(p, graphs))), None)
        if old is None:
            raise SecretsKeyMismatch(_mismatch_message(missing_key_file))
        await _reencrypt(tx, graphs, old, box)
        await tx.set_server_setting(KEY_CHECK, box.key_check)
    return "rotated"


async def rotate_secrets_key(storage: Storage, current: SecretBox, new: SecretBox) -> int:
    """Re-encrypt every graph secret from `current` to `new` in one transaction; the graphs rewritten.

    Raises `SecretsKeyMismatch` when `current` is not the key the database records (nothing changes).

    Example::

        await rotate_secrets_key(storage, SecretBox(old_key), SecretBox(secrets.token_bytes(32)))
    """
    async with storage.transaction() as tx:
        stored = await tx.get_server_setting(KEY_CHECK)
        graphs = await tx.graph_secrets()
        if stored is None and graphs and not _opens(current, graphs):
            raise SecretsKeyMismatch(_mismatch_message(None))
        if stored is not None and stored != current.key_check:
            raise SecretsKeyMismatch(_mismatch_message(None))
        await _reencrypt(tx, graphs, current, new)
        await tx.set_server_setting(KEY_CHECK, new.key_check)
    return len(graphs)


def _mismatch_message(missing_key_file: str | None) -> str:
    if missing_key_file is not None:
        return (
            f"The secrets key file {missing_key_file} is missing, but this database holds graph secrets "
            f"encrypted with a key: a new key cannot read them. Restore the file, or set "
            f"SECRETS_ENCRYPTION_KEY to that key. {HOW_TO_ROTATE}"
        )
    return f"SECRETS_ENCRYPTION_KEY is not the key this database's graph secrets were encrypted with. {HOW_TO_ROTATE}"


def _opens(box: SecretBox, graphs: list[tuple[str, str, dict[str, str]]]) -> bool:
    _namespace, _name, secrets = graphs[0]
    try:
        box.decrypt(next(iter(secrets.values())))
    except SecretUnreadable:
        return False
    return True


async def _reencrypt(tx: Tx, graphs: list[tuple[str, str, dict[str, str]]], old: SecretBox, new: SecretBox) -> None:
    for namespace, name, secrets in graphs:
        await tx.set_graph_secrets(namespace, name, {k: _reencrypted(v, old, new) for k, v in secrets.items()})


def _reencrypted(token: str, old: SecretBox, new: SecretBox) -> str:
    try:
        return new.encrypt(old.decrypt(token))
    except SecretUnreadable:
        return token  # damaged before: left as it is, and a state that needs it fails saying so
