"""`ivr`: the one command for people (docs/interface.md): serve, place a simulated call, see the tree,
run the SDU stub, and the staff commands."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Sequence

from ivr.cli import bench, purge
from ivr.cli import callbacks as callbacks_cli
from ivr.cli import report as report_cli
from ivr.cli import requests as requests_cli
from ivr.cli import staff as staff_cli

LINE_NUMBERS = {"callcenter": "+18002285437", "payments": "+18882337223"}


def cmd_call(args: argparse.Namespace) -> int:
    from ivr.callflow.simphone import Phone, Transport

    keys = None if args.keys is None else [k.strip() for k in args.keys.split(",")]
    token = os.environ.get("TWILIO_AUTH_TOKEN")
    stop = None
    if args.url:
        from ivr.settings import DEV_ACCOUNT_SID, DEV_AUTH_TOKEN
        # Behind a proxy the server checks signatures against its public URL, not the one posted to.
        sign_url = args.sign_url if args.sign_url is not None else os.environ.get("PUBLIC_BASE_URL", "")
        transport = Transport(token or DEV_AUTH_TOKEN, base_url=args.url, sign_url=sign_url or None,
                              account_sid=os.environ.get("TWILIO_ACCOUNT_SID") or DEV_ACCOUNT_SID)
    else:
        logging.basicConfig(level=logging.WARNING, format="(log) %(levelname)s %(name)s: %(message)s")
        # The in-process stub's access log would drown the transcript (restored after the call).
        werkzeug_level = logging.getLogger("werkzeug").level
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        os.environ.setdefault("IVR_ENV", "development")
        if not os.environ.get("SDU_BASE_URL"):
            # The embedded defaults: the bundled SDU stub, over real HTTP on a free loopback port.
            from ivr.sdu.stub import serve_in_thread
            base, stop = serve_in_thread()
            os.environ["SDU_BASE_URL"] = base
        from ivr.app import create_app
        app = create_app()
        transport = Transport(app.config["TWILIO_AUTH_TOKEN"], app=app,
                              account_sid=app.config["TWILIO_ACCOUNT_SID"])
    to = LINE_NUMBERS.get(args.to, args.to)
    interactive = keys is None and sys.stdin.isatty()
    phone = Phone(transport=transport, to=to, caller=args.caller, dial_status=args.dial_status, show=print)
    try:
        call = phone.place(keys, ask=input if interactive else None)
    finally:
        if stop:
            stop()
            del os.environ["SDU_BASE_URL"]   # that stub is gone: a next call in this process starts its own
            logging.getLogger("werkzeug").setLevel(werkzeug_level)
    problems = call.unmet(args.expect or (), args.expect_end)
    if problems:
        # One line an operator's monitor can alert on (the transcript above says where it went).
        print(f"ivr call: the call did not go as expected: {'; '.join(problems)}", file=sys.stderr)
        return 1
    if args.expect or args.expect_end:
        print("ivr call: the call went as expected", file=sys.stderr)
    return 0


def _call_end(text: str) -> str:
    if text in ("hangup", "transfer", "keys") or re.fullmatch(r"transfer:\+\d{8,15}", text):
        return text
    raise argparse.ArgumentTypeError("give hangup, transfer, transfer:+1NUMBER or keys")


def cmd_serve(args: argparse.Namespace) -> int:
    from ivr import settings
    from ivr.app import create_app

    settings.check_listen(settings.from_env(), [args.host])
    create_app().run(host=args.host, port=args.port)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from ivr import settings, store
    from ivr.jobs import worker as jobs

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = settings.from_env()
    # Longer than the worker's blocking read, which would otherwise end in a timeout error.
    client = store.connect(config, socket_timeout=jobs.BLOCK_MS / 1000 + 5)
    store.check_persistence(client, config)
    worker = jobs.Worker(jobs.JobContext(config, client))
    if args.once:
        worker.start_up()
        print(f"handled {worker.run_once(block_ms=None) + worker.retry_pending()} job(s)")
        worker.run_periodic()   # the periodic tasks too (the call analytics fold: `ivr report` is current)
        return 0
    worker.run()
    return 0


def cmd_tree(args: argparse.Namespace) -> int:
    from ivr.cli.tree import main as tree_main

    return tree_main(args)


def cmd_sdu_stub(args: argparse.Namespace) -> int:
    from ivr.sdu.stub import main as stub_main

    return stub_main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ivr", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("call", help="place a simulated call and show what the caller hears")
    p.add_argument("--to", default="callcenter",
                   help="the number called: callcenter, payments or an E.164 number (default: callcenter)")
    p.add_argument("--from", dest="caller", default="+18605550199", help="the caller ID")
    p.add_argument("--keys", help="comma-separated answers, one per prompt: digits ('123#'), "
                   "'say words' for speech, '-' for silence, 'dial:busy' for a transfer's result "
                   "(passed over where no transfer is made)")
    p.add_argument("--url", help="a running server's base URL (default: the app in this process)")
    p.add_argument("--sign-url", help="the base URL the server checks signatures against (default: "
                   "$PUBLIC_BASE_URL, else --url): a production server behind a TLS proxy")
    p.add_argument("--dial-status", default="completed",
                   choices=["completed", "busy", "no-answer", "failed", "canceled"])
    p.add_argument("--expect", action="append", metavar="TEXT",
                   help="words the caller must hear, in the order given (repeatable): a synthetic monitoring "
                        "call exits 1 when one is missing")
    p.add_argument("--expect-end", metavar="END", type=_call_end,
                   help="how the call must end: hangup (the system hangs up), transfer or transfer:+1NUMBER "
                        "(a person is dialed), keys (every key of --keys used, the call still waiting); exit 1 "
                        "otherwise")
    p.set_defaults(func=cmd_call)

    p = sub.add_parser("serve", help="run the development web server (use gunicorn for real)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="run background jobs (recording downloads, then deleting Twilio's copies)")
    p.add_argument("--once", action="store_true", help="handle what is queued, run the periodic tasks once, exit")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("tree", help="print a line's call tree and write it as a Mermaid diagram")
    p.add_argument("--line", default=None, help="one line (default: every line)")
    p.add_argument("--mermaid", metavar="FILE", help="write the Mermaid diagrams as Markdown to FILE")
    p.add_argument("--check", metavar="FILE", help="exit 1 if FILE differs from the current diagrams")
    p.add_argument("--node-types", action="store_true", help="print the node types and their fields")
    p.add_argument("--timing", action="store_true",
                   help="print how long each menu and answer takes to say, in every language")
    p.set_defaults(func=cmd_tree)

    p = sub.add_parser("sdu-stub", help="run the stub SDU API server (development)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="options for the stub (--port)")
    p.set_defaults(func=cmd_sdu_stub)

    for module in (requests_cli, callbacks_cli, staff_cli, bench, purge, report_cli):
        module.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # "--keys -,1" starts with a dash, which argparse would take for an option: glue it to its flag.
    for i, arg in enumerate(argv[:-1]):
        if arg == "--keys":
            argv[i:i + 2] = [f"--keys={argv[i + 1]}"]
            break
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "sdu-stub":
        args.rest = extra + args.rest   # argparse's REMAINDER misses options that come first (--port)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a person gets one clear line and a non-zero exit, not a traceback
        if os.environ.get("IVR_DEBUG"):
            raise
        print(f"ivr {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
