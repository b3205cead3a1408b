"""Encryption of personal data (case numbers, inmate numbers) that must be kept in Redis.

Call state and queued requests are readable by anyone with Redis access and end up in backups;
what identifies a person is kept there only sealed with the server's secret key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken


class Sealer:
    def __init__(self, secret: str) -> None:
        key = hashlib.sha256(("seal:" + secret).encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(key))
        self._mac_key = hashlib.sha256(("mac:" + secret).encode()).digest()

    def seal(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def unseal(self, token: str) -> str | None:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except (InvalidToken, ValueError):
            return None

    def seal_bytes(self, data: bytes) -> str:
        return self._fernet.encrypt(data).decode()

    def unseal_bytes(self, token: str) -> bytes | None:
        try:
            return self._fernet.decrypt(token.encode())
        except (InvalidToken, ValueError):
            return None

    def tag(self, value: str) -> str:
        """A stable, non-reversible name for a value, for Redis keys such as lockout counters."""
        return hmac.new(self._mac_key, value.encode(), hashlib.sha256).hexdigest()[:24]
