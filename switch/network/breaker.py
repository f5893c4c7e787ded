"""Circuit breaker for one network endpoint: closed -> open -> half-open -> closed.

Pure logic with an injectable clock: no asyncio, no I/O. The pool asks `acquire()` before each request
and reports the outcome with `record(permit, outcome)`.

- closed: every request goes through. Outcomes land in a sliding time window of buckets; the breaker
  opens when the window holds at least `volume_min` outcomes and the share of failures reaches
  `error_rate_max`, or at once after `failures_consecutive_max` failures in a row (timeouts, disconnects
  mid-flight, refused connections: an endpoint that has gone silent opens fast, before the window fills).
- open: nothing goes through until `cool_down_s` has passed; the first `acquire()` after that moves
  to half-open.
- half-open: at most `trials_max` trial requests in flight at once. `trial_successes_required`
  successes close the breaker; one failure opens it again for another cool-down.

A permit remembers the state generation it was issued in, so an outcome that arrives after the state
moved on (a slow request started while closed, finishing after the breaker opened) is ignored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, IntEnum


class BreakerState(IntEnum):
    """Values are what the metrics gauge shows: higher is worse."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


class Outcome(Enum):
    SUCCESS = "success"
    FAILURE = "failure"      # Sent, then the connection failed: the endpoint is in trouble.
    TIMEOUT = "timeout"      # Sent, no answer in time.
    NOT_SENT = "not_sent"    # Refused before sending, or the caller gave up: says nothing of the endpoint.


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    window_s: float = 10.0
    window_buckets: int = 10
    volume_min: int = 20
    error_rate_max: float = 0.5
    failures_consecutive_max: int = 5
    cool_down_s: float = 5.0
    trials_max: int = 2
    trial_successes_required: int = 2

    def __post_init__(self) -> None:
        assert self.window_s > 0 and self.window_buckets > 0
        assert self.volume_min > 0 and 0.0 < self.error_rate_max <= 1.0
        assert self.failures_consecutive_max > 0 and self.cool_down_s >= 0
        assert 0 < self.trial_successes_required and 0 < self.trials_max


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to send one request. `trial` permits are the half-open state's bounded probes."""

    trial: bool
    generation: int


StateListener = Callable[[BreakerState, BreakerState], None]


class CircuitBreaker:
    def __init__(
        self,
        config: BreakerConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: StateListener | None = None,
    ) -> None:
        self.config = config or BreakerConfig()
        self._clock = clock
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._normal_permit = Permit(False, 0)
        self._bucket_s = self.config.window_s / self.config.window_buckets
        self._bucket_totals = [0] * self.config.window_buckets
        self._bucket_failures = [0] * self.config.window_buckets
        self._bucket_number = 0
        self._window_total = 0
        self._window_failures = 0
        self._failures_consecutive = 0
        self._open_until = 0.0
        self._trials_in_flight = 0
        self._trial_successes = 0
        self.transitions = 0

    # Observing.

    @property
    def state(self) -> BreakerState:
        return self._state

    def available(self) -> bool:
        """Whether a request could be let through now (without taking a permit)."""
        if self._state is BreakerState.OPEN:
            return self._clock() >= self._open_until
        if self._state is BreakerState.HALF_OPEN:
            return self._trials_in_flight < self.config.trials_max
        return True

    def snapshot(self) -> dict[str, object]:
        return {
            "state": self._state.label,
            "window_total": self._window_total,
            "window_failures": self._window_failures,
            "failures_consecutive": self._failures_consecutive,
            "transitions": self.transitions,
        }

    # Requests.

    def acquire(self) -> Permit | None:
        """A permit to send one request, or None when the breaker refuses it."""
        state = self._state
        if state is BreakerState.CLOSED:
            return self._normal_permit
        if state is BreakerState.OPEN:
            if self._clock() < self._open_until:
                return None
            self._change(BreakerState.HALF_OPEN)
        if self._trials_in_flight >= self.config.trials_max:
            return None
        self._trials_in_flight += 1
        return Permit(True, self._generation)

    def record(self, permit: Permit, outcome: Outcome) -> None:
        """The outcome of a request sent (or not) under `permit`."""
        if permit.generation != self._generation:
            return  # Issued in an earlier state: the endpoint's present is judged by present requests.
        if permit.trial:
            self._record_trial(outcome)
        elif outcome is not Outcome.NOT_SENT:
            self._record_closed(outcome is Outcome.SUCCESS)

    def record_connect_failure(self) -> None:
        """A link could not connect or sign on. Counts while closed; half-open is judged by its trials."""
        if self._state is BreakerState.CLOSED:
            self._record_closed(False)

    # Transitions.

    def _record_trial(self, outcome: Outcome) -> None:
        self._trials_in_flight -= 1
        if outcome is Outcome.NOT_SENT:
            return
        if outcome is not Outcome.SUCCESS:
            self._open()
            return
        self._trial_successes += 1
        if self._trial_successes >= self.config.trial_successes_required:
            self._change(BreakerState.CLOSED)

    def _record_closed(self, success: bool) -> None:
        self._roll_window()
        index = self._bucket_number % self.config.window_buckets
        self._bucket_totals[index] += 1
        self._window_total += 1
        if success:
            self._failures_consecutive = 0
            return
        self._bucket_failures[index] += 1
        self._window_failures += 1
        self._failures_consecutive += 1
        config = self.config
        if self._failures_consecutive >= config.failures_consecutive_max or (
            self._window_total >= config.volume_min
            and self._window_failures >= config.error_rate_max * self._window_total
        ):
            self._open()

    def _roll_window(self) -> None:
        """Empty the buckets that fell out of the window since the last outcome: O(buckets) at worst."""
        number = int(self._clock() / self._bucket_s)
        steps = number - self._bucket_number
        if steps <= 0:
            return
        buckets = self.config.window_buckets
        for step in range(1, min(steps, buckets) + 1):
            index = (self._bucket_number + step) % buckets
            self._window_total -= self._bucket_totals[index]
            self._window_failures -= self._bucket_failures[index]
            self._bucket_totals[index] = 0
            self._bucket_failures[index] = 0
        self._bucket_number = number

    def _open(self) -> None:
        self._open_until = self._clock() + self.config.cool_down_s
        self._change(BreakerState.OPEN)

    def _change(self, state: BreakerState) -> None:
        previous = self._state
        self._state = state
        self._generation += 1
        self._normal_permit = Permit(False, self._generation)
        self._trials_in_flight = 0
        self._trial_successes = 0
        self._failures_consecutive = 0
        self._reset_window()
        self.transitions += 1
        if self._on_change is not None:
            self._on_change(previous, state)

    def _reset_window(self) -> None:
        buckets = self.config.window_buckets
        self._bucket_totals = [0] * buckets
        self._bucket_failures = [0] * buckets
        self._window_total = 0
        self._window_failures = 0
