"""`GET /audio/<file>`: the system's own copies of staff recordings, fetched by Twilio's <Play>.

Not signed: Twilio fetches <Play> media with a plain GET and no signature. Only files the system
published are served (names listed in Redis), by a name that cannot leave the audio folder.
"""

from __future__ import annotations

import redis
from flask import Blueprint, abort, current_app, send_from_directory

from ivr.domain.published import AUDIO_NAME, audio_dir

bp = Blueprint("audio", __name__)


@bp.get("/audio/<name>")
def play(name: str):
    if not AUDIO_NAME.match(name):
        abort(404)
    library = current_app.extensions["ivr"].services.library
    try:
        if not library.is_published_file(name):
            abort(404)
    except redis.RedisError:
        abort(503)
    # A published file never changes (a new version is a new file), so Twilio may cache it.
    return send_from_directory(audio_dir(current_app.config), name, mimetype="audio/mpeg", max_age=86400)
