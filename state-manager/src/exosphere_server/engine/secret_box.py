"""AES-256-GCM for graph secrets at rest: a fresh 12-byte nonce per value, URL-safe base64 of nonce‖ciphertext‖tag."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_CHECK_LABEL = b"exosphere secrets key check v1"


class SecretUnreadable(Exception):
    """A stored secret that this key cannot decrypt: another key made it, or it is damaged."""


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        # A one-way value that tells keys apart: stored in the database to refuse a start with the wrong
        # key, and safe to store (it reveals nothing of the key).
        self.key_check = "v1:" + hmac.new(key, _CHECK_LABEL, hashlib.sha256).hexdigest()

    def encrypt(self, plaintext: str) -> str:
        nonce = os.urandom(12)
        return base64.urlsafe_b64encode(nonce + self._aead.encrypt(nonce, plaintext.encode(), None)).decode()

    def decrypt(self, token: str) -> str:
        try:
            raw = base64.urlsafe_b64decode(token.encode())
            return self._aead.decrypt(raw[:12], raw[12:], None).decode()
        except InvalidTag as exc:
            raise SecretUnreadable("it was encrypted with another secrets key") from exc
        except (binascii.Error, ValueError) as exc:
            raise SecretUnreadable("the stored value is damaged") from exc

    def __repr__(self) -> str:  # never show key material, even in a debugger or a crash report
        return "SecretBox(<hidden>)"
