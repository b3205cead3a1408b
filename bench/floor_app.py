"""The benchmark's floor: the least a webhook can do, served under the same gunicorn settings.

One endpoint for /voice, /voice/step and /voice/status that does one Redis round trip (a pipeline
that reads and writes a small per-call key with an expiry) and builds a small `VoiceResponse` with a
`<Gather>` and a `<Redirect>`, as every menu of the real system does. No signature check, no call
tree, no prompts: whatever the system costs beyond this is the price of its features.

`create_sdu_app()` is the floor of the payment line: the same, plus one SDU lookup over HTTP per
step (a case summary from the SDU stub, through `requests` as the system's client makes it), the
outside work a payment call does that no call center call does.

`create_state_app()` is not a target's floor, only a figure for the owner's decision on issue 19
(`ivr bench --state-floor`): a webhook that keeps a call's state as any IVR must, reading it before
it can write the next one: two round trips a step (a GET, then a SET with an analytics XADD), where
the minimal floor writes a constant in the same round trip as its read.
"""

from __future__ import annotations

import os

import redis
from flask import Flask, Response, request
from twilio.twiml.voice_response import Gather, VoiceResponse


def create_sdu_app() -> Flask:
    """The floor with one SDU lookup per step (SDU_BASE_URL, SDU_API_KEY)."""
    import requests

    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {os.environ.get('SDU_API_KEY', 'dev-sdu-key')}"
    url = os.environ.get("SDU_BASE_URL", "http://127.0.0.1:5001").rstrip("/") + "/v1/cases/123456789/summary"

    def lookup() -> None:
        session.get(url, params={"role": "payer"}, timeout=(0.5, 2.5)).json()
    return create_app(lookup)


def create_state_app() -> Flask:
    """The floor with the system's Redis round trips: read the call's state, then write it."""
    return create_app(read_first=True)


def create_app(outside=None, read_first: bool = False) -> Flask:  # noqa: ANN001 - a callable or None
    app = Flask("bench.floor")
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                                  socket_connect_timeout=0.5, socket_timeout=1.0)

    def answer() -> Response:
        sid = request.form.get("CallSid", "")[:64]
        key = f"floor:call:{sid}"
        if request.path == "/voice/status":
            client.delete(key)
            return Response(status=204)
        seq = int(request.args.get("s", 0)) + 1
        pipe = client.pipeline(transaction=False)
        if read_first:
            state = client.get(key) or b"-"
            pipe.set(key, state[:16] + request.form.get("Digits", "-").encode(), ex=3600)
            pipe.xadd("floor:events", {"e": f"{seq}"}, maxlen=10_000, approximate=True)
        else:
            pipe.get(key)
            pipe.set(key, request.form.get("Digits", "-"), ex=3600)
        pipe.execute()
        if outside is not None:
            outside()
        response = VoiceResponse()
        gather = Gather(action=f"/voice/step?s={seq}", method="POST", input="dtmf", num_digits=1, timeout=6)
        gather.say("For payments, press 1. For offices, press 5.", voice="Polly.Joanna", language="en-US")
        response.append(gather)
        response.redirect(f"/voice/step?s={seq}", method="POST")
        return Response(str(response), mimetype="text/xml")

    for rule in ("/voice", "/voice/step", "/voice/status"):
        app.add_url_rule(rule, rule, answer, methods=["POST"])
    app.add_url_rule("/health", "health", lambda: {"status": "ok"})
    return app
