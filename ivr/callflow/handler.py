"""Named actions the call tree refers to (`handler: name`): the parts of a call that need code.

A handler is `fn(turn, value) -> Outcome`: `value` is what the caller keyed or said at a collect or
record node (None at an action node). It may say things on `turn`, and it leaves the node by naming
one of the events it declares (`@handler("pay_identify", events=("identified", "locked"))`); the node
maps each event to the next node (`on: {identified: pay_menu, locked: pay_locked}`), and the loader
refuses a node that leaves an event unmapped or maps one the handler does not declare.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

REGISTRY: dict[str, Callable] = {}


@dataclass
class Outcome:
    event: str | None = None              # a declared event: the node's `on` says where it goes
    retry: str | None = None              # a prompt id: count a failed try and ask again
    hangup: bool = False
    fields: dict = field(default_factory=dict)   # values for the retry prompt


def handler(name: str, events: tuple[str, ...]) -> Callable[[Callable], Callable]:
    """Register `fn` under `name`; `events` are the ways out of its node it may name (maybe none)."""
    def register(fn: Callable) -> Callable:
        fn.events = frozenset(events)
        REGISTRY[name] = fn
        return fn
    return register


def events_of(fn: Callable) -> frozenset[str]:
    return getattr(fn, "events", frozenset())
