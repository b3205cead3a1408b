"""What staff have published for callers to hear: prompt recordings with their version history, and
announcements at the start of a line.

Storage. The audio files are in DATA_DIR/prompts, each under a name never reused (the Twilio recording
SID), written completely before anything points at them. Redis holds the index:

- `ivr:prompts:published` hash, field "id|lang" -> {"v": version, "file": name}: what callers hear;
- `ivr:prompts:history:id|lang` list of events (publish / rollback: version, file, who, when);
- `ivr:announcements` hash, field "line|lang" -> {"file", "until" (last day or null), "by", "name", "at"};
- `ivr:audio:files` set: every file published and not yet deleted at the end of its retention period
  (`purge_audio`), the only ones `GET /audio/<file>` serves and rollback goes back to;
- `ivr:prompts:rev`: bumped in the same MULTI as every change above;
- `ivr:prompts:seq`: a counter; a recording takes its number when it is kept (`stamp`), a rollback or a
  clear when it is done; `ivr:prompts:changed` hash, field "prompt:id|lang" or "ann:line|lang" -> the
  number of the last change there. A publish job done late (its download retried) carries its number
  and publishes nothing where a later change was made ("superseded" in the history or log).

Every change is one MULTI (optimistic, WATCHing the revision), so a caller mid-call hears the old or
the new version, never a half-made one. Web processes read the revision in the same round trip as a
call's state and reload the index only when it changed (`Mirror`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TypeVar

import redis

from ivr import store

T = TypeVar("T")
log = logging.getLogger("ivr.published")

PUBLISHED = "ivr:prompts:published"
HISTORY = "ivr:prompts:history:{pid}|{lang}"
ANNOUNCEMENTS = "ivr:announcements"
ANN_LOG = "ivr:announcements:log"
FILES = "ivr:audio:files"
REV = "ivr:prompts:rev"
SEQ = "ivr:prompts:seq"
CHANGED = "ivr:prompts:changed"

ANN_LINES = ("callcenter", "payments")      # the public lines an announcement can be put on
AUDIO_NAME = re.compile(r"^RE[0-9a-fA-F]{32}\.mp3$")
LOG_KEEP = 500                              # announcement events kept


class NothingToRollBack(LookupError):
    pass


def audio_dir(config: Mapping) -> Path:
    return Path(config["DATA_DIR"]) / "prompts"


def _field(pid: str, lang: str) -> str:
    return f"{pid}|{lang}"


def _load(raw) -> dict:
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def _dump(data: dict) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Who:
    """Who made a change: a staff ID and name on the phone, or a name at the command line."""
    by: str
    name: str = ""

    def as_dict(self) -> dict:
        return {"by": self.by, "name": self.name}


class Library:
    """Prompt versions and announcements in Redis (see the module's docstring)."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    # --- reading ----------------------------------------------------------------------------
    def published(self, pid: str, lang: str) -> dict | None:
        raw = self.redis.hget(PUBLISHED, _field(pid, lang))
        return _load(raw) if raw else None

    def history(self, pid: str, lang: str) -> list[dict]:
        return [_load(x) for x in self.redis.lrange(HISTORY.format(pid=pid, lang=lang), 0, -1)]

    def version(self, pid: str, lang: str, v: int) -> dict | None:
        for event in self.history(pid, lang):
            if event["action"] == "publish" and event["v"] == v:
                return event
        return None

    def snapshot(self) -> tuple[dict[tuple[str, str], dict], dict[tuple[str, str], dict]]:
        """The whole published index and every announcement, in one round trip."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hgetall(PUBLISHED)
        pipe.hgetall(ANNOUNCEMENTS)
        prompts, anns = pipe.execute()
        return _split(prompts), _split(anns)

    def is_published_file(self, name: str) -> bool:
        return bool(AUDIO_NAME.match(name)) and bool(self.redis.sismember(FILES, name))

    # --- changing ---------------------------------------------------------------------------
    def stamp(self) -> int:
        """The number of a recording being kept: its publish job passes it back as `seq`."""
        return int(self.redis.incr(SEQ))

    def publish(self, pid: str, lang: str, file: str, who: Who, at: datetime, seq: int | None = None) -> int | None:
        """Make `file` (already complete in audio_dir) what callers hear; return its version number.
        Publishing the same file again (a job run twice) changes nothing. `seq`: the number the
        recording was stamped with when kept (default: now); None, and nothing published, when the
        prompt was changed after that (a newer recording, a rollback)."""
        if not AUDIO_NAME.match(file):
            raise ValueError(f"not a published audio file name: {file!r}")
        hkey = HISTORY.format(pid=pid, lang=lang)
        seq = self.stamp() if seq is None else seq
        changed = f"prompt:{_field(pid, lang)}"

        def txn(pipe) -> int | None:
            events = [_load(x) for x in pipe.lrange(hkey, 0, -1)]
            done = [e for e in events if e["action"] in ("publish", "superseded") and e["file"] == file]
            if done:
                return done[0].get("v")
            if seq < int(pipe.hget(CHANGED, changed) or 0):
                log.warning("%s (%s): %s not published: the prompt was changed after it was recorded",
                            pid, lang, file)
                pipe.multi()
                pipe.rpush(hkey, _dump({"action": "superseded", "file": file, "lang": lang, "at": at.isoformat(),
                                        **who.as_dict()}))
                return None
            current = pipe.hget(PUBLISHED, _field(pid, lang))
            prev = _load(current)["v"] if current else 0
            v = 1 + sum(1 for e in events if e["action"] == "publish")
            pipe.multi()
            pipe.rpush(hkey, _dump({"action": "publish", "v": v, "file": file, "prev": prev, "lang": lang,
                                    "at": at.isoformat(), **who.as_dict()}))
            pipe.hset(PUBLISHED, _field(pid, lang), _dump({"v": v, "file": file}))
            pipe.hset(CHANGED, changed, seq)
            pipe.sadd(FILES, file)
            pipe.incr(REV)
            return v

        return self._replicated(self.redis.transaction(txn, REV, hkey, value_from_callable=True))

    def rollback(self, pid: str, lang: str, who: Who, at: datetime, to: int | None = None) -> int:
        """Go back to the version that was live before the current one (or to version `to`; 0 is the
        text-to-speech voice). Returns the version now live; NothingToRollBack when there is none."""
        hkey = HISTORY.format(pid=pid, lang=lang)
        seq = self.stamp()      # a recording kept before now no longer goes live over this

        def txn(pipe) -> int:
            events = [_load(x) for x in pipe.lrange(hkey, 0, -1)]
            versions = {e["v"]: e for e in events if e["action"] == "publish"}
            current = pipe.hget(PUBLISHED, _field(pid, lang))
            cur_v = _load(current)["v"] if current else 0
            if to is None:
                if not cur_v:
                    raise NothingToRollBack(f"{pid} ({lang}) has no recording to roll back")
                target = versions[cur_v]["prev"] if cur_v in versions else 0
            else:
                if to != 0 and to not in versions:
                    raise NothingToRollBack(f"{pid} ({lang}) has no version {to}")
                if to == cur_v:
                    raise NothingToRollBack(f"{pid} ({lang}) is already at version {to}")
                target = to
            if target and not pipe.sismember(FILES, versions[target]["file"]):
                raise NothingToRollBack(f"{pid} ({lang}) version {target} was deleted at the end of its "
                                        "retention period")
            pipe.multi()
            if target:
                pipe.hset(PUBLISHED, _field(pid, lang), _dump({"v": target, "file": versions[target]["file"]}))
            else:
                pipe.hdel(PUBLISHED, _field(pid, lang))
            pipe.hset(CHANGED, f"prompt:{_field(pid, lang)}", seq)
            pipe.rpush(hkey, _dump({"action": "rollback", "v": target, "from": cur_v, "lang": lang,
                                    "file": versions[target]["file"] if target else None,
                                    "at": at.isoformat(), **who.as_dict()}))
            pipe.incr(REV)
            return target

        return self._replicated(self.redis.transaction(txn, REV, hkey, value_from_callable=True))

    def set_announcement(self, lines: list[str], lang: str, file: str, until: date | None, who: Who,
                         at: datetime, seq: int | None = None) -> bool:
        """Put a recorded announcement on `lines` in `lang`; False if this file was already set once
        (a job run twice must not bring back an announcement cleared since). `seq`: the number the
        recording was stamped with when kept (default: now); a line where an announcement was set or
        cleared after that is left as it is."""
        lines = _check_lines(lines)
        if not AUDIO_NAME.match(file):
            raise ValueError(f"not a published audio file name: {file!r}")
        seq = self.stamp() if seq is None else seq
        changed = [f"ann:{_field(line, lang)}" for line in lines]

        def txn(pipe) -> bool:
            if any(_load(e).get("file") == file for e in pipe.lrange(ANN_LOG, 0, -1)):
                return False
            last = [int(n or 0) for n in pipe.hmget(CHANGED, changed)]
            fresh = [line for line, n in zip(lines, last, strict=True) if seq >= n]
            stale = [line for line in lines if line not in fresh]
            record = {"file": file, "until": until.isoformat() if until else None,
                      "at": at.isoformat(), **who.as_dict()}
            pipe.multi()
            if stale:
                log.warning("announcement %s not put on %s (%s): changed there after it was recorded",
                            file, ",".join(stale), lang)
                pipe.lpush(ANN_LOG, _dump({"action": "superseded", "lines": stale, "lang": lang, **record}))
            if fresh:
                for line in fresh:
                    pipe.hset(ANNOUNCEMENTS, _field(line, lang), _dump(record))
                    pipe.hset(CHANGED, f"ann:{_field(line, lang)}", seq)
                pipe.lpush(ANN_LOG, _dump({"action": "set", "lines": fresh, "lang": lang, **record}))
                pipe.sadd(FILES, file)
                pipe.incr(REV)
            pipe.ltrim(ANN_LOG, 0, LOG_KEEP - 1)
            return bool(fresh)

        return self._replicated(self.redis.transaction(txn, REV, ANN_LOG, value_from_callable=True))

    def clear_announcement(self, lines: list[str], lang: str, who: Who, at: datetime) -> int:
        """Take the announcement off `lines` in `lang`; return how many there were."""
        lines = _check_lines(lines)
        seq = self.stamp()      # an announcement kept before now no longer goes on these lines
        pipe = self.redis.pipeline(transaction=True)
        for line in lines:
            pipe.hdel(ANNOUNCEMENTS, _field(line, lang))
        for line in lines:
            pipe.hset(CHANGED, f"ann:{_field(line, lang)}", seq)
        pipe.lpush(ANN_LOG, _dump({"action": "clear", "lines": lines, "lang": lang, "at": at.isoformat(),
                                   **who.as_dict()}))
        pipe.ltrim(ANN_LOG, 0, LOG_KEEP - 1)
        pipe.incr(REV)
        return self._replicated(sum(pipe.execute()[: len(lines)]))

    def _replicated(self, result: T) -> T:
        """A change staff are told is live waits for a replica first, as a request does (store.replicated)."""
        store.replicated(self.redis, "published prompt")
        return result

    def announcement_log(self, n: int = 20) -> list[dict]:
        return [_load(x) for x in self.redis.lrange(ANN_LOG, 0, n - 1)]

    # --- retention --------------------------------------------------------------------------
    def purge_audio(self, folder: Path, unused_before: datetime, dry_run: bool = False) -> int:
        """Delete the audio files no one has heard since `unused_before`: never one live, the version a
        rollback goes back to, or an announcement still set. Files nothing names (a download whose
        publish was given up) go by their age on disk. Returns how many files were (would be) deleted.

        The index first, in one MULTI that bumps the revision (a rollback racing it looks again and
        refuses the deleted version), then the files: a crash in between leaves files nothing names,
        deleted by age at a later run."""
        due: set[str] = set()

        def txn(pipe) -> None:
            due.clear()
            files = {_text(f) for f in pipe.smembers(FILES)}
            published, anns = _split(pipe.hgetall(PUBLISHED)), _split(pipe.hgetall(ANNOUNCEMENTS))
            keep = {rec["file"] for rec in published.values()} | {rec["file"] for rec in anns.values()}
            retired: dict[str, datetime] = {}
            for key in pipe.scan_iter(match=HISTORY.format(pid="*", lang="*"), count=500):
                # A refused ("superseded") job changed nothing callers heard: not a moment a file retired.
                events = [e for e in map(_load, pipe.lrange(key, 0, -1)) if e["action"] != "superseded"]
                _retire(retired, [({"*": e.get("file")}, e.get("at")) for e in events])
                versions = {e["v"]: e for e in events if e["action"] == "publish"}
                name, _, lang = _text(key).removeprefix(HISTORY.split("{")[0]).rpartition("|")
                live = published.get((name, lang))
                if live and live["v"] in versions and versions[live["v"]]["prev"] in versions:
                    keep.add(versions[versions[live["v"]]["prev"]]["file"])     # the rollback target
            slots: dict[str, str | None] = {}
            steps = []
            for e in reversed([_load(x) for x in pipe.lrange(ANN_LOG, 0, -1)]):
                if e["action"] == "superseded":
                    continue
                for line in e.get("lines", []):
                    slots[f"{line}|{e.get('lang')}"] = e.get("file") if e["action"] == "set" else None
                steps.append((dict(slots), e.get("at")))
            _retire(retired, steps)
            for name in files - keep:
                when = retired.get(name) or _mtime(folder / name)
                if when is None or when <= unused_before:
                    due.add(name)
            if due and not dry_run:
                pipe.multi()
                pipe.srem(FILES, *due)
                pipe.incr(REV)

        self.redis.transaction(txn, REV)
        deleted = len(due) if dry_run else sum(_unlink(folder / name) for name in due)
        # Files on disk that nothing names any more.
        if folder.is_dir():
            named = {_text(f) for f in self.redis.smembers(FILES)} | due
            for path in folder.iterdir():
                if AUDIO_NAME.match(path.name) and path.name not in named:
                    when = _mtime(path)
                    if when is not None and when <= unused_before:
                        deleted += 1 if dry_run else _unlink(path)
        return deleted


def _retire(retired: dict[str, datetime], steps: list[tuple[dict, str | None]]) -> None:
    """`steps`: what each slot played after each event, and when. A file is retired when the last slot
    playing it moves on; `retired` keeps the latest such time."""
    playing: set[str] = set()
    for slots, at in steps:
        now = {f for f in slots.values() if f}
        for name in playing - now:
            try:
                when = datetime.fromisoformat(at)
            except (TypeError, ValueError):
                continue
            when = when if when.tzinfo else when.replace(tzinfo=UTC)
            if name not in retired or retired[name] < when:
                retired[name] = when
        playing = now


def _mtime(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except FileNotFoundError:
        return None


def _unlink(path: Path) -> int:
    try:
        path.unlink()
    except FileNotFoundError:
        return 0        # another purge got there first
    return 1


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _check_lines(lines: list[str]) -> list[str]:
    bad = [ln for ln in lines if ln not in ANN_LINES]
    if bad or not lines:
        raise ValueError(f"announcements go on {' and '.join(ANN_LINES)}, not {bad or lines}")
    return list(dict.fromkeys(lines))


def _split(hash_: dict) -> dict[tuple[str, str], dict]:
    out = {}
    for k, v in hash_.items():
        key = k.decode() if isinstance(k, bytes) else k
        name, _, lang = key.rpartition("|")
        try:
            out[(name, lang)] = _load(v)
        except ValueError:
            log.error("unreadable entry %r in the published index", key)
    return out
