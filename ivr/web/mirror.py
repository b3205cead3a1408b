"""This web process's copy of what staff published: the recordings callers hear and the announcements,
as absolute URLs Twilio's <Play> fetches, reloaded when the published index changes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime

from flask import has_request_context, url_for

from ivr import store
from ivr.callflow.prompts import Prompts, Spoken
from ivr.domain.published import Library
from ivr.web.signature import public_base

log = logging.getLogger("ivr.published")


class Mirror:
    """This web process's copy of the published index: it fills `Prompts.recordings` and answers
    which announcements a line plays. Reloaded only when `ivr:prompts:rev` changed (the value is read
    with the call state, so a webhook costs no extra round trip)."""

    def __init__(self, library: Library, prompts: Prompts, now: Callable[[], datetime]) -> None:
        self.library = library
        self.prompts = prompts
        self.now = now
        self.anns: dict[tuple[str, str], dict] = {}     # (line, lang) -> record with "url"
        # Loaded again when the revision or the public base URL of the request changes.
        self._reloader = store.Reloader(self._reload, "the published prompts")

    def refresh(self, rev) -> None:
        """Called on every webhook with the revision read in the call state's round trip."""
        if not has_request_context():
            return
        self._reloader.refresh((rev, public_base()))

    def _reload(self, key: tuple) -> None:
        base = key[1]
        published, anns = self.library.snapshot()
        recordings = {}
        for (pid, lang), rec in published.items():
            if not self.prompts.has(pid, lang) or self.prompts.has_parts(pid, lang):
                continue  # a prompt removed since, or one with variable parts: always text-to-speech
            recordings[(pid, lang)] = self.url(base, rec["file"])
        self.prompts.recordings = recordings            # one assignment: a reader sees old or new
        self.anns = {key: {**rec, "url": self.url(base, rec["file"])} for key, rec in anns.items()}

    @staticmethod
    def url(base: str, file: str) -> str:
        """The absolute URL Twilio's <Play> fetches (PUBLIC_BASE_URL behind a proxy)."""
        return base + url_for("audio.play", name=file)

    def announcement(self, line: str, lang: str) -> dict | None:
        """The announcement `line` plays now in `lang` (its end date, America/New_York, not passed)."""
        rec = self.anns.get((line, lang))
        if rec is None:
            return None
        if rec.get("until"):
            try:
                if self.now().date() > date.fromisoformat(rec["until"]):
                    return None
            except ValueError:
                return None
        return rec

    def announcements(self, line: str, lang: str) -> list[Spoken]:
        """What the engine says before the line's greeting (services.published)."""
        rec = self.announcement(line, lang)
        return [Spoken("", audio=rec["url"])] if rec else []
