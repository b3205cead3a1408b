"""Which SES office serves a caller, and when people answer: the office for a town, by its name
(spoken) or a ZIP code (keyed); the hours, after a transfer to a person that did not connect."""

from __future__ import annotations

from ivr.callflow.handler import Outcome, handler
from ivr.callflow.speech import say_digits, say_phone


@handler("office_by_town", events=("found",))
def office_by_town(turn, value: str) -> Outcome:
    directory = turn.services.directory
    if value.isdigit():
        town = directory.town_for_zip(value)
        if town is None:
            return Outcome(retry="town.zip_unknown", fields={"zip": say_digits(value)})
        turn.vars["town_how"] = "zip"
    else:
        town = directory.match_town(value)
        if town is None:
            return Outcome(retry="town.not_found")
        turn.vars["town_how"] = "speech"
    turn.vars["town"] = town
    turn.vars["town_name"] = directory.spoken(town, turn.lang)   # "Nueva Londres" in Spanish
    return Outcome(event="found")


@handler("route_town", events=("routed", "no_town"))
def route_town(turn, value: str | None) -> Outcome:
    town = turn.vars.get("town")
    if not town or town not in turn.services.directory.towns:
        return Outcome(event="no_town")
    route = turn.services.directory.route(town)
    turn.vars["office"] = route.office.id
    turn.say("town.served_by", town=turn.services.directory.spoken(town, turn.lang),
             office=route.office.name[turn.lang])
    if not route.confirmed:
        # The district has no SES office of its own; the routing is a best guess (data/README). A
        # caller on the call center's number is not told to call it.
        number = turn.engine.number_to_tell(turn, turn.services.lines["callback_number"])
        if number is None:
            turn.say("town.unconfirmed.here")
        else:
            turn.say("town.unconfirmed", number=say_phone(number, turn.lang))
    return Outcome(event="routed")


@handler("agents_hours", events=())
def agents_hours(turn, value: str | None) -> None:
    """Said before the choices offered when a person could not be reached: when people answer."""
    turn.say("xfer.hours", hours=turn.services.hours.describe(turn.lang))
    return None
