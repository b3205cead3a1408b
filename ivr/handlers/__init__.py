"""Named actions the call tree refers to (`handler: name`): the parts of a call that need code.

A handler is `fn(turn, value) -> Outcome`: `value` is what the caller keyed or said at a collect or
record node (None at an action node). It may say things on `turn` and picks the next node.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

REGISTRY: dict[str, Callable] = {}


@dataclass
class Outcome:
    goto: str | None = None               # the next node; None with hangup=False repeats the node
    retry: str | None = None              # a prompt id: count a failed try and ask again
    hangup: bool = False
    fields: dict = field(default_factory=dict)   # values for the retry prompt


def handler(name: str) -> Callable[[Callable], Callable]:
    def register(fn: Callable) -> Callable:
        REGISTRY[name] = fn
        return fn
    return register


def load_all() -> dict[str, Callable]:
    """Import every handler module so that their names are registered."""
    from . import offices  # noqa: F401

    for optional in ("payments", "inmate", "staff"):
        try:
            __import__(f"{__name__}.{optional}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{optional}":
                raise
    return REGISTRY
