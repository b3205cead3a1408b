"""The console's audit log: who did what, when, kept in one Redis stream that supervisors read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import redis

STREAM = "ivr:console:audit"
KEEP = 100_000          # entries kept (about a year of a busy office's clicks)


@dataclass(frozen=True)
class Entry:
    at: str
    by: str
    action: str
    detail: str


class AuditLog:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def write(self, by: str, action: str, detail: str = "", at: datetime | None = None) -> None:
        """One entry; `detail` names things (a reference, a prompt), never personal data."""
        stamp = (at or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
        self.redis.xadd(STREAM, {"at": stamp, "by": by, "action": action, "detail": detail[:300]},
                        maxlen=KEEP, approximate=True)

    def recent(self, count: int = 200, by: str = "", action: str = "") -> list[Entry]:
        """The newest entries first, optionally only one person's or one kind's."""
        out = []
        for _, fields in self.redis.xrevrange(STREAM, count=count if not (by or action) else KEEP):
            f = {k.decode(): v.decode() for k, v in fields.items()}
            if (by and f.get("by") != by) or (action and action not in f.get("action", "")):
                continue
            out.append(Entry(f.get("at", ""), f.get("by", ""), f.get("action", ""), f.get("detail", "")))
            if len(out) >= count:
                break
        return out
