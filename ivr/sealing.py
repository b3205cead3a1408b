"""Encryption of personal data (case numbers, inmate numbers) that must be kept in Redis.

Call state and queued requests are readable by anyone with Redis access and end up in backups;
what identifies a person is kept there only sealed with the server's secret key.

Sealed values are AES-256-GCM ("s1." tokens). Fernet tokens written by earlier versions (requests kept
for staff live for months) are still opened; nothing is sealed with Fernet any more: it costs six
times as much CPU, and every webhook seals its replay cache (bench/RESULTS.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import zlib
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "s1."
NONCE = 12
# A sealed value in text, of either format: what a scan for leaked personal data may skip.
TOKEN = re.compile(r"s1\.[A-Za-z0-9_\-]{38,}|gAAAAA[A-Za-z0-9_\-]+=*")


class Sealer:
    """Seals with `secret`; opens what `secret` or any of `previous` sealed (a key rotation in progress)."""

    def __init__(self, secret: str, previous: Sequence[str] = ()) -> None:
        key = hashlib.sha256(("seal:" + secret).encode()).digest()
        self._aead = AESGCM(key)
        self._fernet = Fernet(base64.urlsafe_b64encode(key))   # only to open older tokens
        self._mac_key = hashlib.sha256(("mac:" + secret).encode()).digest()
        self._previous = [Sealer(old) for old in previous if old and old != secret]

    @classmethod
    def from_config(cls, config: Mapping) -> Sealer:
        previous = config.get("IVR_SECRET_KEY_PREVIOUS") or ""
        return cls(config["IVR_SECRET_KEY"], [previous] if previous else [])

    def seal(self, value: str) -> str:
        return self.seal_bytes(value.encode())

    def unseal(self, token: str) -> str | None:
        data = self.unseal_bytes(token)
        if data is None:
            return None
        try:
            return data.decode()
        except UnicodeDecodeError:
            return None

    def seal_bytes(self, data: bytes) -> str:
        nonce = os.urandom(NONCE)   # random 96-bit nonces: safe far beyond this system's 2**32 seals per key
        sealed = self._aead.encrypt(nonce, data, PREFIX.encode())
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def unseal_bytes(self, token: str) -> bytes | None:
        data = self._open(token)
        if data is None:
            for old in self._previous:
                data = old._open(token)
                if data is not None:
                    break
        return data

    def reseal(self, token: str) -> str | None:
        """`token` sealed again with the current key when only a previous key opens it; else None."""
        if not isinstance(token, str) or not token or self._open(token) is not None:
            return None
        for old in self._previous:
            data = old._open(token)
            if data is not None:
                return self.seal_bytes(data)
        return None

    def _open(self, token: str) -> bytes | None:
        if not isinstance(token, str) or not token:
            return None
        try:
            if token.startswith(PREFIX):
                body = token[len(PREFIX):]
                raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
                return self._aead.decrypt(raw[:NONCE], raw[NONCE:], PREFIX.encode())
            return self._fernet.decrypt(token.encode())
        except (InvalidTag, InvalidToken, ValueError, binascii.Error):
            return None

    def seal_compressed(self, text: str) -> str:
        """`text` compressed, then sealed: for the larger values a call keeps (an answer, figures)."""
        # A 4 KB window and small hash tables: answers are a few KB, and setting up zlib's defaults (32 KB,
        # memLevel 8) cost more than compressing them (20 -> 11 us an answer, the same size; bench/RESULTS.md).
        # zlib.decompress reads the window from the header: tokens sealed either way open alike.
        packer = zlib.compressobj(1, zlib.DEFLATED, 12, 4)
        return self.seal_bytes(packer.compress(text.encode()) + packer.flush())

    def unseal_compressed(self, token: str) -> str | None:
        data = self.unseal_bytes(token)
        try:
            return zlib.decompress(data).decode() if data else None
        except (zlib.error, UnicodeDecodeError):
            return None

    def tag(self, value: str) -> str:
        """A stable, non-reversible name for a value, for Redis keys such as lockout counters."""
        return hmac.new(self._mac_key, value.encode(), hashlib.sha256).hexdigest()[:24]
