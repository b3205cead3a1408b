"""`ivr staff ...` (staff accounts for the staff line) and `ivr prompts ...` (list, history, rollback).

Bad input prints what is wrong and exits non-zero: 2 for input that can never work, 1 for a state
that does not allow it (an ID that exists already, nothing to roll back).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import datetime

import redis

from ivr import settings, store
from ivr.callflow.prompts import PromptError, Prompts, load_languages
from ivr.callflow.speech import CT_TZ
from ivr.domain.accounts import PASSWORD_MIN, ROLES, Accounts, check_password, password_pepper
from ivr.domain.directory import ANONYMOUS, caller_id
from ivr.domain.published import ANN_LINES, Library, NothingToRollBack, Who
from ivr.domain.staffdb import PIN_MIN, StaffDB, StaffError, check_id, pepper_for
from ivr.redact import mask_phone
from ivr.sealing import Sealer


class CliError(Exception):
    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def add_commands(sub: argparse._SubParsersAction) -> None:
    staff = sub.add_parser("staff", help="staff accounts for the staff recording line")
    ssub = staff.add_subparsers(dest="staff_command", required=True)
    p = ssub.add_parser("add", help="add a staff member (asks for the PIN)")
    p.add_argument("staff_id", metavar="ID", help="the staff ID keyed on the phone: 3 to 10 digits")
    p.add_argument("--name", required=True, help="the staff member's name (said when they sign in)")
    p.add_argument("--role", choices=ROLES, default="caseworker",
                   help="what they may do in the staff console (default: caseworker)")
    p.add_argument("--pin-stdin", action="store_true", help="read the PIN from standard input (scripts)")
    p.set_defaults(func=_run(cmd_staff_add))
    p = ssub.add_parser("set-password", help="set the console password (asks for it); a supervisor's first one "
                                             "also sets up their authenticator app")
    p.add_argument("staff_id", metavar="ID")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from standard input, one line (scripts)")
    p.add_argument("--new-totp", action="store_true",
                   help="a new authenticator secret for a supervisor (a lost phone): shown once")
    p.set_defaults(func=_run(cmd_staff_set_password))
    p = ssub.add_parser("unlock-console", help="end a console account's lock after wrong passwords")
    p.add_argument("staff_id", metavar="ID")
    p.set_defaults(func=_run(cmd_staff_unlock_console))
    p = ssub.add_parser("reset-pin", help="set a new PIN (asks for it); also ends the ID's lock and its phones' locks")
    p.add_argument("staff_id", metavar="ID")
    p.add_argument("--pin-stdin", action="store_true", help="read the PIN from standard input (scripts)")
    p.set_defaults(func=_run(cmd_staff_reset))
    p = ssub.add_parser("disable", help="stop a staff ID from signing in")
    p.add_argument("staff_id", metavar="ID")
    p.set_defaults(func=_run(cmd_staff_disable))
    p = ssub.add_parser("enable", help="let a disabled staff ID sign in again")
    p.add_argument("staff_id", metavar="ID")
    p.set_defaults(func=_run(cmd_staff_enable))
    p = ssub.add_parser("list", help="list staff accounts, with locks and PINs that must be reset")
    p.set_defaults(func=_run(cmd_staff_list))
    p = ssub.add_parser("unlock-phone", help="end the sign-in lock of a caller number")
    p.add_argument("number", help="the caller's number (8605550101, +18605550101), or `withheld` for the "
                                  "bucket all callers without a usable caller ID share")
    p.set_defaults(func=_run(cmd_staff_unlock_phone))

    prompts = sub.add_parser("prompts", help="prompt recordings: codes, version history, rollback")
    psub = prompts.add_subparsers(dest="prompts_command", required=True)
    p = psub.add_parser("list", help="one prompt a line: code, id, first words, recorded languages")
    p.set_defaults(func=_run(cmd_prompts_list))
    p = psub.add_parser("history", help="every version of a prompt: who, when, which audio, which language")
    p.add_argument("prompt", metavar="ID", help="a prompt id (cc.welcome) or its code (201)")
    p.add_argument("--lang", help="one language (en, es ...: the folders of prompts/)")
    p.set_defaults(func=_run(cmd_prompts_history))
    p = psub.add_parser("rollback", help="go back to the version that was live before the current one")
    p.add_argument("prompt", metavar="ID", help="a prompt id (cc.welcome) or its code (201)")
    p.add_argument("--lang", help="needed when more than one language has a recording")
    p.add_argument("--by", help="who is doing this (default: your login name)")
    p.add_argument("--to", type=int, metavar="VERSION", help="go to this version instead (0: computer voice)")
    p.set_defaults(func=_run(cmd_prompts_rollback))
    p = psub.add_parser("announcements", help="the announcements on the public lines, and recent changes")
    p.set_defaults(func=_run(cmd_prompts_announcements))
    p = psub.add_parser("clear-announcement", help="take an announcement off a line now (as staff can by phone)")
    p.add_argument("line", choices=(*ANN_LINES, "all"), help="which line, or all")
    p.add_argument("--lang", default="both", help="which language (default: both, i.e. every language)")
    p.add_argument("--by", help="who is doing this (default: your login name)")
    p.set_defaults(func=_run(cmd_prompts_clear_announcement))


def _run(fn):
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args) or 0
        except (CliError, StaffError) as exc:
            print(f"ivr {args.command}: {exc}", file=sys.stderr)
            return getattr(exc, "code", 2)
    return run


# --- shared ---------------------------------------------------------------------------------------
def _config() -> dict:
    return settings.from_env()


def _redis(config: dict) -> redis.Redis:
    """The real Redis (never the development stand-in: an account kept there would be lost)."""
    try:
        return store.for_command(config["REDIS_URL"])
    except store.Unreachable as exc:
        raise CliError(str(exc), 1) from exc


def _db(config: dict) -> StaffDB:
    """The accounts, with the PIN pepper the server uses (IVR_PIN_PEPPER, or from IVR_SECRET_KEY)."""
    return StaffDB(_redis(config), pepper_for(config))


def _now() -> datetime:
    return datetime.now(CT_TZ)


def _read_pin(args: argparse.Namespace, staff_id: str) -> str:
    if args.pin_stdin:
        return sys.stdin.readline().strip()
    if not sys.stdin.isatty():
        raise CliError("no terminal to ask for the PIN on; use --pin-stdin")
    pin = getpass.getpass(f"PIN for staff ID {staff_id} ({PIN_MIN} to 10 digits): ")
    if getpass.getpass("The same PIN again: ") != pin:
        raise CliError("the two PINs differ; nothing was changed")
    return pin


# --- ivr staff ------------------------------------------------------------------------------------
def cmd_staff_add(args: argparse.Namespace) -> int:
    staff_id = check_id(args.staff_id)
    db = _db(_config())
    if db.get(staff_id) is not None:
        raise CliError(f"staff ID {staff_id} already exists; use `ivr staff reset-pin {staff_id}`", 1)
    staff = db.add(staff_id, args.name, _read_pin(args, staff_id), _now())
    if args.role != "caseworker":
        _accounts(_config()).set_role(staff.id, args.role)
    print(f"added staff ID {staff.id} ({staff.name}, {args.role}); they can sign in on the staff line now, "
          f"and in the console once `ivr staff set-password {staff.id}` has given them a password")
    return 0


def _accounts(config: dict) -> Accounts:
    return Accounts(_redis(config), password_pepper(config), Sealer.from_config(config))


def _read_password(args: argparse.Namespace, staff_id: str) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise CliError("no terminal to ask for the password on; use --password-stdin")
    password = getpass.getpass(f"Console password for staff ID {staff_id} (at least {PASSWORD_MIN} characters): ")
    check_password(password, staff_id)
    if getpass.getpass("The same password again: ") != password:
        raise CliError("the two passwords differ; nothing was changed")
    return password


def cmd_staff_set_password(args: argparse.Namespace) -> int:
    staff_id = check_id(args.staff_id)
    accounts = _accounts(_config())
    account = accounts.get(staff_id)
    if account is None:
        raise CliError(f"there is no staff ID {staff_id}; add it with `ivr staff add`", 1)
    if args.new_totp and not account.supervisor:
        raise CliError(f"staff ID {staff_id} is a caseworker: only supervisors use an authenticator app")
    accounts.set_password(staff_id, _read_password(args, staff_id), _now())
    print(f"console password set for staff ID {staff_id} ({account.name}); any console lock is ended")
    if account.supervisor and (args.new_totp or not account.has_totp):
        secret, uri = accounts.new_totp(staff_id)
        # Shown this once: the person adds it to their authenticator app now (it is kept only sealed).
        print("Supervisors also give a code from an authenticator app. Add this account to theirs now "
              "(it is not shown again):")
        print(f"  secret: {secret}")
        print(f"  or the link (as a QR code): {uri}")
    return 0


def cmd_staff_unlock_console(args: argparse.Namespace) -> int:
    staff_id = check_id(args.staff_id)
    if _accounts(_config()).unlock(staff_id):
        print(f"staff ID {staff_id} can sign in to the console again")
        return 0
    print(f"staff ID {staff_id} was not locked: nothing changed")
    return 1


def cmd_staff_reset(args: argparse.Namespace) -> int:
    staff_id = check_id(args.staff_id)
    db = _db(_config())
    if db.get(staff_id) is None:
        raise CliError(f"there is no staff ID {staff_id}", 1)
    staff = db.reset_pin(staff_id, _read_pin(args, staff_id))
    print(f"new PIN set for staff ID {staff.id} ({staff.name}); any lockout of the ID, and of the phones "
          "it signed in from, is ended")
    return 0


def _set_disabled(args: argparse.Namespace, disabled: bool) -> int:
    staff_id = check_id(args.staff_id)
    db = _db(_config())
    if db.get(staff_id) is None:
        raise CliError(f"there is no staff ID {staff_id}", 1)
    staff = db.set_disabled(staff_id, disabled)
    print(f"staff ID {staff.id} ({staff.name}) is {'disabled' if disabled else 'enabled'}")
    return 0


def cmd_staff_disable(args: argparse.Namespace) -> int:
    return _set_disabled(args, True)


def cmd_staff_enable(args: argparse.Namespace) -> int:
    return _set_disabled(args, False)


def cmd_staff_list(args: argparse.Namespace) -> int:
    config = _config()
    db = _db(config)
    console = _accounts(config)
    now = _now()
    accounts = db.all()
    for s in accounts:
        flags = ["disabled"] if s.disabled else []
        account = console.get(s.id)
        if account is not None and account.supervisor:     # caseworker, the default, goes unsaid
            flags.append("supervisor")
            if account.has_password and not account.has_totp:
                flags.append("no authenticator: `ivr staff set-password --new-totp`")
        if console.locked_until(s.id, now):
            flags.append("console locked: `ivr staff unlock-console`")
        until = db.locked_until(s.id, now)
        if until:
            flags.append(f"locked until {until:%Y-%m-%d %H:%M} for phones it has not signed in from")
        problem = db.pin_problem(s.id)
        if problem:
            flags.append(problem)
        print(f"{s.id:<10}  {s.name}{'  (' + '; '.join(flags) + ')' if flags else ''}")
    if not accounts:
        print("no staff accounts yet: `ivr staff add ID --name NAME`")
    return 0


def cmd_staff_unlock_phone(args: argparse.Namespace) -> int:
    given = args.number.strip()
    caller = ANONYMOUS if given.lower() in ("withheld", ANONYMOUS) else caller_id(given)
    if caller == ANONYMOUS and given.lower() not in ("withheld", ANONYMOUS):
        raise CliError(f"{given!r} is not a phone number; for callers without a caller ID, say `withheld`")
    shown = "the withheld numbers' bucket" if caller == ANONYMOUS else mask_phone(caller)
    if not _db(_config()).unlock_caller(caller):
        print(f"{shown} was not locked and had no wrong PINs counted: nothing changed")
        return 1
    print(f"{shown} can sign in again on the staff line")
    return 0


# --- ivr prompts ----------------------------------------------------------------------------------
def _prompts(config: dict) -> Prompts:
    return Prompts.load(config["PROMPTS_DIR"], config["CONFIG_DIR"] / "lines.yaml")


def _langs(config: dict, chosen: str | None = None) -> list[str]:
    """The languages the system speaks (prompts/<lang>/), or just `chosen` once it is known to be one."""
    try:
        langs = list(load_languages(config["PROMPTS_DIR"], config["CONFIG_DIR"] / "lines.yaml"))
    except PromptError as exc:
        raise CliError(str(exc)) from exc
    if chosen is not None and chosen not in langs:
        raise CliError(f"--lang {chosen!r} is not a language of the system: {', '.join(langs)}")
    return [chosen] if chosen is not None else langs


def _prompt_id(prompts: Prompts, given: str) -> str:
    if given.isascii() and given.isdigit():
        pid = prompts.by_code(given)
        if pid is None:
            raise CliError(f"no prompt has the code {given}; `ivr prompts list` shows them")
        return pid
    if not prompts.has(given, prompts.default):
        raise CliError(f"there is no prompt {given!r}; `ivr prompts list` shows them")
    return given


def _first_words(text: str, n: int = 8) -> str:
    words = text.split()
    return " ".join(words[:n]) + (" ..." if len(words) > n else "")


def cmd_prompts_list(args: argparse.Namespace) -> int:
    config = _config()
    prompts = _prompts(config)
    try:
        published, _ = Library(_redis(config)).snapshot()
    except (CliError, redis.RedisError) as exc:
        print(f"ivr prompts: {exc}; recordings are not shown", file=sys.stderr)
        published = None
    for pid, code in sorted(prompts.codes.items(), key=lambda item: item[1]):
        if not prompts.has(pid, prompts.default):
            continue
        if published is None:
            recorded = "?"
        else:
            recorded = ",".join(lang for lang in prompts.languages if (pid, lang) in published) or "-"
        print(f"{code:<4} {pid:<32} \"{_first_words(prompts.texts[prompts.default][pid])}\"  recorded: {recorded}")
    return 0


def _who_text(event: dict) -> str:
    by, name = event.get("by", ""), event.get("name", "")
    return f"{by} ({name})" if by and name else by or name or "?"


def cmd_prompts_history(args: argparse.Namespace) -> int:
    config = _config()
    pid = _prompt_id(_prompts(config), args.prompt)
    library = Library(_redis(config))
    any_event = False
    for lang in _langs(config, args.lang):
        live = (library.published(pid, lang) or {}).get("v", 0)
        events = library.history(pid, lang)
        for e in events:
            any_event = True
            at = e.get("at", "")[:16].replace("T", " ")
            if e["action"] == "publish":
                what = f"v{e['v']} published  {e['file']}"
            elif e["action"] == "superseded":
                what = f"not published  {e['file']} (the prompt was changed after it was recorded)"
            else:
                to = f"v{e['v']}" if e["v"] else "the computer voice"
                what = f"rolled back v{e.get('from', '?')} -> {to}"
            print(f"{pid}  {lang}  {at}  {what}  by {_who_text(e)}")
        if events or args.lang:
            print(f"{pid}  {lang}  live now: {'v' + str(live) if live else 'the computer voice'}")
    if not any_event and not args.lang:
        print(f"{pid}: no recordings yet; callers hear the computer voice")
    return 0


def cmd_prompts_rollback(args: argparse.Namespace) -> int:
    config = _config()
    pid = _prompt_id(_prompts(config), args.prompt)
    library = Library(_redis(config))
    langs = _langs(config, args.lang)
    lang = args.lang
    if lang is None:
        recorded = [code for code in langs if library.published(pid, code)]
        if not recorded and args.to is None:
            raise CliError(f"{pid} has no recording in any language: nothing to roll back", 1)
        if args.to is not None or len(recorded) != 1:
            raise CliError(f"{pid}: say which language with --lang {' or --lang '.join(langs)}")
        lang = recorded[0]
    if args.to is not None and args.to < 0:
        raise CliError("--to is a version number, 0 or more")
    who = Who("cli", args.by or getpass.getuser())
    try:
        version = library.rollback(pid, lang, who, _now(), to=args.to)
    except NothingToRollBack as exc:
        raise CliError(str(exc), 1) from exc
    now = f"version {version}" if version else "the computer voice"
    print(f"{pid} ({lang}): callers now hear {now}")
    return 0


def cmd_prompts_announcements(args: argparse.Namespace) -> int:
    config = _config()
    library = Library(_redis(config))
    _, anns = library.snapshot()
    today = _now().date()
    for line in ANN_LINES:
        for lang in _langs(config):
            rec = anns.get((line, lang))
            if rec is None:
                state = "none"
            elif rec.get("until") and rec["until"] < today.isoformat():
                state = f"ended {rec['until']} ({rec['file']})"
            else:
                state = f"{rec['file']} until {rec.get('until') or 'cleared'}, by {_who_text(rec)}"
            print(f"{line:<11} {lang}  {state}")
    for e in library.announcement_log(10):
        lines = ",".join(e["lines"])
        what = (f"not put on {lines} {e['lang']} (changed there after it was recorded)"
                if e["action"] == "superseded" else f"{e['action']:<5} {lines} {e['lang']}")
        print(f"  {e.get('at', '')[:16].replace('T', ' ')}  {what}  by {_who_text(e)}")
    return 0


def cmd_prompts_clear_announcement(args: argparse.Namespace) -> int:
    config = _config()
    langs = _langs(config, None if args.lang == "both" else args.lang)
    library = Library(_redis(config))
    lines = list(ANN_LINES) if args.line == "all" else [args.line]
    who = Who("cli", args.by or getpass.getuser())
    cleared = 0
    for lang in langs:
        cleared += library.clear_announcement(lines, lang, who, _now())
    if not cleared:
        print(f"no announcement was on {', '.join(lines)} ({args.lang}): nothing changed")
        return 1
    print(f"cleared {cleared} announcement(s) from {', '.join(lines)} ({args.lang}); callers no longer hear them")
    return 0
