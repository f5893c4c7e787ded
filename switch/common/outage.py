"""An outage of a dependency, logged once when it starts and once when it ends, with what it refused.

Under load a dead dependency fails thousands of requests a second; one line each would drown the log,
and none would hide the outage. Callers report each failure and each success; both are cheap.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("switch.outage")


class Outage:
    __slots__ = ("name", "since", "refused")

    def __init__(self, name: str) -> None:
        self.name = name
        self.since: float | None = None
        self.refused = 0

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, error: BaseException, refused: int = 1) -> None:
        if self.since is None:
            self.since = time.monotonic()
            self.refused = 0
            log.warning("%s unavailable (%s): refusing requests until it answers again", self.name,
                        error.__class__.__name__)
        self.refused += refused

    def succeeded(self) -> None:
        if self.since is not None:
            log.warning("%s available again after %.1f s; %d requests refused meanwhile", self.name,
                        time.monotonic() - self.since, self.refused)
            self.since = None
