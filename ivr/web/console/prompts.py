"""Console pages for prompts and announcements (supervisors): every prompt by line and language with its code
and its text or recording; upload audio (checked, converted to MP3 for Twilio's <Play>), publish, roll
back, history; announcements per line with their last day."""

from __future__ import annotations

import io
import os
import secrets
from datetime import date
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml
from flask import abort, current_app, flash, g, redirect, render_template, request, send_from_directory, url_for
from flask_wtf import FlaskForm

from ivr.domain.published import ANN_LINES, AUDIO_NAME, NothingToRollBack, Who, audio_dir
from ivr.web.console import bp
from ivr.web.console.auth import audit, now, services, supervisor_only
from ivr.web.limits import body_limit

MAX_UPLOAD_BYTES = 10 * 2**20
MAX_SECONDS = 180.0
MIN_SECONDS = 0.3
RATES = (8000, 48000)
ACCEPTED = ".wav, .mp3, .flac or .ogg"


class AudioError(ValueError):
    """What is wrong with an uploaded file, said next to the field."""


@lru_cache(maxsize=4)
def groups(folder: str) -> dict[str, list[str]]:
    """Prompt ids by the file of prompts/codes/ they are in (callcenter, payments, inmate, staff ...)."""
    out: dict[str, list[str]] = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        out[path.stem] = [str(k) for k in data]
    return out


def convert(data: bytes) -> bytes:
    """An upload as a mono MP3 Twilio plays; AudioError says why it cannot be."""
    if not data:
        raise AudioError("Choose an audio file.")
    if len(data) > MAX_UPLOAD_BYTES:
        raise AudioError(f"The file is larger than {MAX_UPLOAD_BYTES // 2**20} MB.")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate, frames = f.samplerate, f.frames
            if not RATES[0] <= rate <= RATES[1]:
                raise AudioError(f"The sample rate ({rate} Hz) must be from {RATES[0]} to {RATES[1]} Hz.")
            seconds = frames / rate if frames > 0 else 0
            if seconds > MAX_SECONDS:
                raise AudioError(f"The recording is {seconds:.0f} seconds long; at most {MAX_SECONDS:.0f}.")
            audio = f.read(dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (RuntimeError, sf.LibsndfileError, ValueError, TypeError) as exc:
        raise AudioError(f"That is not an audio file this console can read ({ACCEPTED}).") from exc
    seconds = len(audio) / rate
    if seconds < MIN_SECONDS:
        raise AudioError("The recording is empty or too short.")
    if seconds > MAX_SECONDS:
        raise AudioError(f"The recording is {seconds:.0f} seconds long; at most {MAX_SECONDS:.0f}.")
    mono = audio.mean(axis=1)
    if not np.any(np.abs(mono) > 1e-4):
        raise AudioError("The recording is silent.")
    out = io.BytesIO()
    sf.write(out, mono, rate, format="MP3")
    return out.getvalue()


def store_audio(data: bytes) -> str:
    """Write converted audio under a new name never used before, complete before anything points at it."""
    folder = audio_dir(current_app.config)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"RE{secrets.token_hex(16)}.mp3"
    tmp = folder / f".{name}.part"
    tmp.write_bytes(data)
    os.replace(tmp, folder / name)
    return name


def _upload(field: str = "audio") -> str:
    upload = request.files.get(field)
    if upload is None or not upload.filename:
        raise AudioError("Choose an audio file.")
    return store_audio(convert(upload.read(MAX_UPLOAD_BYTES + 1)))


def who() -> Who:
    return Who(g.staff.id, g.staff.name)


# --- prompts -------------------------------------------------------------------------------------
@bp.get("/prompts")
@supervisor_only
def prompts():
    svc = services()
    texts = svc.prompts.texts
    library = svc.library
    published, _ = library.snapshot()
    by_group = groups(str(current_app.config["PROMPTS_DIR"] / "codes"))
    chosen = request.args.get("line", "")
    problem = ""
    if chosen and chosen not in by_group:
        problem, chosen = f"There is no prompt group {chosen!r}: showing all.", ""
    rows = []
    for group, pids in by_group.items():
        if chosen and group != chosen:
            continue
        for pid in pids:
            per_lang = {}
            for lang in svc.prompts.languages:
                rec = published.get((pid, lang))
                per_lang[lang] = {"text": texts.get(lang, {}).get(pid, ""), "v": rec["v"] if rec else 0,
                                  "file": rec["file"] if rec else None}
            rows.append({"group": group, "pid": pid, "code": svc.prompts.codes.get(pid, ""), "langs": per_lang,
                         "fixed": not svc.prompts.has_parts(pid, svc.prompts.default)})
    return render_template("console/prompts.html", rows=rows, groups=list(by_group), chosen=chosen,
                           problem=problem, languages=svc.prompts.languages)


def _prompt(pid: str, lang: str) -> str:
    svc = services()
    if lang not in svc.prompts.languages or pid not in svc.prompts.texts.get(lang, {}):
        abort(404)
    return svc.prompts.texts[lang][pid]


@bp.route("/prompts/<pid>/<lang>", methods=["GET"])
@supervisor_only
def prompt(pid: str, lang: str, error: str = "", status: int = 200):
    text = _prompt(pid, lang)
    library = services().library
    rec = library.published(pid, lang)
    return render_template("console/prompt.html", pid=pid, lang=lang, text=text, rec=rec,
                           code=services().prompts.codes.get(pid, ""),
                           history=list(reversed(library.history(pid, lang))),
                           fixed=not services().prompts.has_parts(pid, lang), error=error, form=FlaskForm(),
                           language=services().prompts.languages[lang], accepted=ACCEPTED,
                           max_mb=MAX_UPLOAD_BYTES // 2**20, max_seconds=int(MAX_SECONDS)), status


@bp.post("/prompts/<pid>/<lang>/publish")
@body_limit(max_bytes=MAX_UPLOAD_BYTES + 65536, max_fields=10)
@supervisor_only
def prompt_publish(pid: str, lang: str):
    _prompt(pid, lang)
    if services().prompts.has_parts(pid, lang):
        return prompt(pid, lang, error="This prompt has parts filled in on each call: it is always spoken by "
                                       "the computer voice.", status=400)
    try:
        name = _upload()
    except AudioError as exc:
        return prompt(pid, lang, error=str(exc), status=400)
    version = services().library.publish(pid, lang, name, who(), now())
    audit("prompt published", f"{pid} ({lang}) v{version}")
    flash(f"{pid} ({lang}): version {version} is what callers hear now.")
    return redirect(url_for("console.prompt", pid=pid, lang=lang), code=303)


@bp.post("/prompts/<pid>/<lang>/rollback")
@supervisor_only
def prompt_rollback(pid: str, lang: str):
    _prompt(pid, lang)
    raw = request.form.get("to", "").strip()
    to = None
    if raw:
        if not raw.isdigit():
            return prompt(pid, lang, error="Choose a version to go back to.", status=400)
        to = int(raw)
    try:
        version = services().library.rollback(pid, lang, who(), now(), to=to)
    except NothingToRollBack as exc:
        return prompt(pid, lang, error=str(exc), status=400)
    audit("prompt rolled back", f"{pid} ({lang}) -> v{version}")
    flash(f"{pid} ({lang}): callers now hear " + (f"version {version}." if version else "the computer voice."))
    return redirect(url_for("console.prompt", pid=pid, lang=lang), code=303)


@bp.get("/audio/<name>")
def audio(name: str):
    """A published recording, for signed-in staff (the names are random: none can be guessed)."""
    if not AUDIO_NAME.match(name) or not services().library.is_published_file(name):
        abort(404)
    return send_from_directory(audio_dir(current_app.config), name, mimetype="audio/mpeg", max_age=0)


# --- announcements --------------------------------------------------------------------------------
@bp.route("/announcements", methods=["GET"])
@supervisor_only
def announcements(errors: dict | None = None, values: dict | None = None, status: int = 200):
    svc = services()
    _, anns = svc.library.snapshot()
    today = now().date().isoformat()
    current = []
    for line in ANN_LINES:
        for lang in svc.prompts.languages:
            rec = anns.get((line, lang))
            ended = bool(rec and rec.get("until") and rec["until"] < today)
            current.append({"line": line, "lang": lang, "rec": rec, "ended": ended})
    return render_template("console/announcements.html", current=current, lines=ANN_LINES,
                           languages=svc.prompts.languages, log=svc.library.announcement_log(20),
                           errors=errors or {}, values=values or {}, form=FlaskForm(), accepted=ACCEPTED,
                           max_mb=MAX_UPLOAD_BYTES // 2**20), status


@bp.post("/announcements")
@body_limit(max_bytes=MAX_UPLOAD_BYTES + 65536, max_fields=10)
@supervisor_only
def announcement_set():
    svc = services()
    values = {k: request.form.get(k, "").strip() for k in ("line", "lang", "until")}
    errors = {}
    lines = list(ANN_LINES) if values["line"] == "all" else [values["line"]]
    if not set(lines) <= set(ANN_LINES):
        errors["line"] = "Choose a line."
    if values["lang"] not in svc.prompts.languages:
        errors["lang"] = "Choose a language."
    until = None
    if values["until"]:
        try:
            until = date.fromisoformat(values["until"])
            if until < now().date():
                errors["until"] = "The last day cannot be in the past."
        except ValueError:
            errors["until"] = "Give the last day as a date (YYYY-MM-DD), or leave it empty."
    if not errors:
        try:
            name = _upload()
        except AudioError as exc:
            errors["audio"] = str(exc)
    if errors:
        return announcements(errors=errors, values=values, status=400)
    svc.library.set_announcement(lines, values["lang"], name, until, who(), now())
    audit("announcement set", f"{','.join(lines)} ({values['lang']}) until {until or 'cleared'}")
    flash(f"Callers on {', '.join(lines)} ({values['lang']}) hear the announcement from their next call.")
    return redirect(url_for("console.announcements"), code=303)


@bp.post("/announcements/clear")
@supervisor_only
def announcement_clear():
    line, lang = request.form.get("line", ""), request.form.get("lang", "")
    if line not in ANN_LINES or lang not in services().prompts.languages:
        abort(404)
    cleared = services().library.clear_announcement([line], lang, who(), now())
    audit("announcement cleared", f"{line} ({lang})")
    flash("Announcement cleared." if cleared else "There was no announcement there.")
    return redirect(url_for("console.announcements"), code=303)
