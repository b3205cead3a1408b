"""Finding the SES office that serves a caller's town, by its name (spoken) or a ZIP code (keyed)."""

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
    return Outcome(event="found")


@handler("route_town", events=("routed", "no_town"))
def route_town(turn, value: str | None) -> Outcome:
    town = turn.vars.get("town")
    if not town or town not in turn.services.directory.towns:
        return Outcome(event="no_town")
    route = turn.services.directory.route(town)
    turn.vars["office"] = route.office.id
    turn.say("town.served_by", town=town, office=route.office.name[turn.lang])
    if not route.confirmed:
        # The district has no SES office of its own; the routing is a best guess (data/README).
        turn.say("town.unconfirmed", number=say_phone(turn.services.lines["callback_number"], turn.lang))
    return Outcome(event="routed")
