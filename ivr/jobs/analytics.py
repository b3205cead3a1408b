"""The worker's call analytics task: fold the call events into hourly figures, close silent calls, trim."""

from __future__ import annotations

import logging

from ivr.domain.callstats import Folder
from ivr.jobs import queue as jobs

log = logging.getLogger("ivr.callstats")


@jobs.periodic
def fold_calls(ctx: jobs.JobContext) -> None:
    """Every worker runs it about once a minute, several at once if need be: the fold's transactions
    (ivr/domain/callstats.py) count each entry once whoever folds it."""
    folded, swept = Folder(ctx.redis, ctx.config).run()
    if folded or swept:
        log.info("call analytics: %d event entries folded, %d silent calls closed", folded, swept)
