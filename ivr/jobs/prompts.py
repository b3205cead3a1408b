"""The staff line's background job: download a kept recording into the system's own storage, then publish it."""

from __future__ import annotations

import logging
from datetime import date, datetime

from ivr.callflow.prompts import language_codes
from ivr.domain import recordings
from ivr.domain.published import Library, Who, audio_dir
from ivr.jobs import queue as jobs

log = logging.getLogger("ivr.staff")

JOB = "staff.publish"


@jobs.job(JOB)
def publish_recording(payload: dict, ctx: jobs.JobContext) -> None:
    """Download a kept recording into DATA_DIR/prompts and, only when that worked, publish it."""
    cfg = ctx.config
    library = Library(ctx.redis)
    url = payload.get("url", "")
    try:
        sid = recordings.check_url(url, cfg["TWILIO_ACCOUNT_SID"])
        who = Who(str(payload.get("by", "")), str(payload.get("name", "")))
        at = datetime.fromisoformat(payload["at"])
        seq = int(payload.get("seq", 0))    # 0: queued by a version without stamps, older than any change
        what, lang = payload["what"], payload["lang"]
        if lang not in language_codes(cfg["PROMPTS_DIR"]) or what not in ("prompt", "announcement"):
            raise ValueError(f"bad job payload: {what!r} {lang!r}")
    except (recordings.RecordingError, KeyError, ValueError) as exc:
        raise jobs.GiveUp(str(exc)) from exc
    file = f"{sid}.mp3"
    if not library.is_published_file(file):  # a job run twice does not fetch (and rewrite) it again
        try:
            file = recordings.download(url, audio_dir(cfg), cfg["TWILIO_ACCOUNT_SID"],
                                       cfg["TWILIO_AUTH_TOKEN"]).name
        except recordings.RecordingError as exc:
            if exc.permanent:
                raise jobs.GiveUp(str(exc)) from exc
            raise jobs.RetryLater(str(exc)) from exc
    # A refusal (something newer there) is logged and kept in the history by Library; the job is done.
    if what == "prompt":
        version = library.publish(payload["pid"], lang, file, who, at, seq=seq)
        if version is not None:
            log.info("published %s (%s) version %d by %s", payload["pid"], lang, version, who.by)
    else:
        until = date.fromisoformat(payload["until"]) if payload.get("until") else None
        if library.set_announcement(list(payload["lines"]), lang, file, until, who, at, seq=seq):
            log.info("announcement on %s (%s) by %s, until %s", ",".join(payload["lines"]), lang, who.by,
                     until or "cleared")


@jobs.at_start
def sweep_partial_prompts(ctx: jobs.JobContext) -> None:
    """What a worker killed mid-download left (a part of a staff recording) is removed at the next start."""
    recordings.sweep_partial(audio_dir(ctx.config))
