"""What the call steps may use besides the call tree: one typed object, built once by create_app."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from ivr.callflow.prompts import Prompts
from ivr.domain.callbacks import CallbackSettings, CallbackStore
from ivr.domain.closures import Closures
from ivr.domain.directory import Directory
from ivr.domain.facilities import Facilities
from ivr.domain.hours import Hours
from ivr.domain.hours_edits import HoursEdits
from ivr.domain.payline import PaySettings
from ivr.domain.published import Library
from ivr.domain.requests import RequestStore
from ivr.domain.staffdb import StaffDB
from ivr.domain.texts import SmsConfig, TextStore
from ivr.sdu.client import SDUClient
from ivr.sealing import Sealer
from ivr.web.mirror import Mirror


@dataclass
class Services:
    """Everything a step may reach, named and typed: no module adds to it after start-up."""
    config: Mapping[str, Any]     # the settings (ivr/settings.py)
    prompts: Prompts
    directory: Directory          # offices, towns and ZIP codes
    hours: Hours
    lines: Mapping[str, Any]      # config/lines.yaml: numbers, voices, agents, menu timings
    redis: redis.Redis
    sealer: Sealer
    sdu: SDUClient
    facilities: Facilities        # correctional facilities, their caller IDs and request caps
    requests: RequestStore        # the inmate modification requests
    payments: PaySettings         # the payment line's PIN limits
    library: Library              # published prompt recordings and announcements
    published: Mirror             # what callers hear now, refreshed with each call's state
    staffdb: StaffDB              # staff accounts and their sign-in limits
    callbacks: CallbackStore      # the callbacks callers ask for (issue 18)
    callback_settings: CallbackSettings   # config/callbacks.yaml: caps, expiry
    texts: TextStore              # texts callers asked for: consent, opt-outs
    sms: SmsConfig                # IVR_SMS_FROM: texts are offered only when it is set
    closures: Closures            # emergency closures set in the console, obeyed from the next webhook
    hours_edits: HoursEdits       # office hours and holidays edited in the console, applied to `hours`
