"""The call steps of each line: the handlers that config/flows/*.yaml name (`handler: name`)."""

from collections.abc import Callable

from ivr.callflow.handler import REGISTRY


def load_all() -> dict[str, Callable]:
    """Import every line's steps so that their handler names are registered."""
    from ivr.lines import inmate, offices, payments, staff  # noqa: F401

    return REGISTRY
